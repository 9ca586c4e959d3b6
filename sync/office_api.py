"""The office server: the clerks' API and the endpoints the gates sync through.

Sync (docs/sync.md): ``POST /sync/v1/push`` takes a batch of a gate's outbox and answers
the contiguous high-water mark; ``GET /sync/v1/pull?since=N`` long-polls the change log.
Both authenticate the gate by its node token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine, Text, cast, func, select, text, tuple_
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge import console, photos
from edge.api.limits import (
    MAX_BODY,
    CredentialsFirst,
    PrivateDocs,
    answer_large_bodies_in_json,
    too_large,
    trusted_peer,
)
from edge.api.schemas import CancelIn, PassIn, ReasonIn, RenewIn, SlipIn
from edge.cards import mask_key
from edge.clock import Clock, SystemClock
from edge.config import OfficeCfg
from edge.errors import DomainError, NotFound
from edge.logs import scrub
from edge.messages import refusal
from edge.metrics import CONTENT_TYPE, OfficeMetrics
from edge.pass_ops import PassRequest
from edge.privacy import IdHasher
from edge.shape import shaped
from edge.slips import Item as SlipItem
from edge.slips import SlipRequest
from sync import (
    desk,
    expected,
    notify,
    office,
    partitions,
    permits,
    recovery,
    snapshots,
    units,
    wire,
)
from sync import schema as t
from sync.qr import Signer, pass_payload, slip_payload

log = logging.getLogger(__name__)
T = TypeVar("T")
_bearer = HTTPBearer(auto_error=False)
LONG_POLL_MAX_S = 25.0
# while the process's change listener is not listening (sync.notify: the database away,
# or the listener reconnecting), how often it looks at the change log for waiting gates
LONG_POLL_LOOK_S = 0.1
PUSH_MAX_BODY = 64 * 1024 * 1024  # push_batch is at most 10,000 rows of a few KB
MAX_KEEP_DAYS = snapshots.MAX_KEEP_DAYS
PURGE_EVERY_S = 3600.0  # camera pictures past their days (sync.snapshots)
READY_TIMEOUT_S = 3.0  # a database that does not answer within this is not ready
# answered often and uneventfully: logged at DEBUG (an idle gate's poll every 25 s, a
# scraper, a load balancer), unless they fail
QUIET_ROUTES = ("/sync/v1/pull", "/health/live", "/health/ready", "/metrics", "/static")


def create_office_app(cfg: OfficeCfg, eng: Engine, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    app = FastAPIOffline(title="Gatehouse office", version="0.1.0",  # docs without a CDN
                         max_body_size=MAX_BODY, lifespan=_lifespan)  # fmt: skip
    app.add_middleware(CredentialsFirst)
    app.add_middleware(PrivateDocs)
    answer_large_bodies_in_json(app)  # a 413 in JSON like every refusal
    hasher = IdHasher.from_data_dir(cfg.data_dir, create=False)
    signer = Signer.from_data_dir(cfg.data_dir)

    app.state.cfg, app.state.eng, app.state.signer = cfg, eng, signer
    app.state.clock = clock
    months = partitions.Months()
    pictures = snapshots.Policies(cfg.snapshot_max_bytes, clock.monotonic)
    accounts = app.state.accounts = desk.OfficeAccounts(eng, clock)

    def wrong_token(request: Request, token: str) -> None:
        """A wrong token: counted per address and token prefix (edge.api.deps.Throttle);
        past the limit, 429 (never for a valid one)."""
        client = request.client.host if request.client else "?"
        now = clock.monotonic()
        if accounts.throttle.wrong_token(client, token, now):
            accounts.count("refused:throttled")
            raise HTTPException(429, "too many bad tokens from this address; wait a minute")
        accounts.count("refused:token")

    def node(
        request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> office.Node:
        """The gate node, by its token (revoked or rotated away: 401 at once)."""
        if cred is not None:
            with eng.connect() as c:
                found = office.node_of(c, cred.credentials)
            if found:
                return found
            wrong_token(request, cred.credentials)
        raise HTTPException(401, "a valid node token is required", {"WWW-Authenticate": "Bearer"})

    app.include_router(console.router)  # the desk's pages: each checks its session itself
    app.include_router(desk.router)
    app.mount("/static", console.static, name="static")

    def person(request: Request, cred: HTTPAuthorizationCredentials | None) -> tuple[str, str]:
        """(name, role) of the office user, by bearer token or desk login."""
        if cred is not None:
            with eng.connect() as c:
                found = office.user_of(c, cred.credentials)
            if found:
                return found
            wrong_token(request, cred.credentials)
        elif (s := console.session(request, *desk.ROLES)) is not None:
            changes = request.method not in ("GET", "HEAD", "OPTIONS")
            if changes and not s.csrf_ok(request.headers.get("x-csrf-token")):
                raise HTTPException(403, "this change needs the page's CSRF token")
            return s.name, s.role
        raise HTTPException(
            401,
            "a valid bearer token (or a desk login) is required",
            {"WWW-Authenticate": "Bearer"},
        )

    def clerk(
        request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> str:
        """A clerk or an admin: issues and revokes passes and slips, reads the records."""
        name, role = person(request, cred)
        if role not in desk.ROLES:
            raise HTTPException(403, "this needs the clerk or admin role")
        return name

    def announcer(
        request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> expected.Announcer:
        """A clerk or an admin (any unit), or a host (their own unit's visitors only)."""
        name, role = person(request, cred)
        if role != "host":
            return expected.Announcer(name)
        with eng.connect() as c:
            found = office.host_of(c, name)
        if found is None:  # the role changed under the token: not a host any more
            raise HTTPException(403, "this needs the clerk, admin or host role")
        return expected.Announcer(name, *found)

    def admin(
        request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> str:
        """An admin: also the gate nodes, the anomalies and the audit log."""
        name, role = person(request, cred)
        if role != "admin":
            raise HTTPException(403, "this needs the admin role")
        return name

    @app.exception_handler(RequestValidationError)
    async def _bad(_r: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse(refusal(detail or "bad request", exc.errors()), 422)

    @app.exception_handler(DomainError)
    async def _refused(_r: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse(refusal(str(exc)), exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(r: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = too_large(r.scope) if exc.status_code == 413 else exc.detail
        return JSONResponse(refusal(detail), exc.status_code, headers=exc.headers)

    @app.exception_handler(SQLAlchemyError)
    async def _db(_r: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("database: %s", exc)
        return JSONResponse(refusal("the office database is unavailable; try again"), 503)

    @app.get("/health/live")
    def live() -> dict[str, str]:
        return {"status": "live"}

    # -- sync ---------------------------------------------------------------------------

    @app.post("/sync/v1/push", max_body_size=PUSH_MAX_BODY)
    async def push(
        request: Request,
        gate: office.Node = Depends(node),
        epoch: int = Query(ge=0, le=wire.SEQ_MAX),  # bigint columns: beyond, PostgreSQL fails
        base: int = Query(ge=1, le=wire.SEQ_MAX, description="the epoch's first seq"),
        gate_now: float | None = Query(None, alias="now", description="the gate's clock"),
        skip_to: int | None = Query(
            None, ge=1, le=wire.SEQ_MAX, description="the gate has no seq before this one"
        ),
    ) -> dict[str, Any]:
        """A batch of a gate's outbox, one row a line (sync.wire): fed to COPY as it comes.
        The answer's ``closed_from`` tells the gate to send that seq on under a new epoch."""
        try:
            batch = wire.decode((await request.body()).decode())
        except (ValueError, UnicodeDecodeError) as e:
            raise DomainError(f"push: not a batch of the sync protocol ({e})") from None

        def apply() -> dict[str, Any]:
            months.ensure(eng, clock.now())  # its month's partition, before the batch's lock
            with eng.begin() as c:
                return office.apply_push(c, gate.node_id, epoch, base, batch, clock.now(),
                                         gate_now, skip_to)  # fmt: skip

        took = await run_in_threadpool(apply)
        log.info("push: %s epoch %d: %d records, acknowledged through %s", gate.node_id, epoch,
                 len(batch), took.get("acked_through"))  # fmt: skip
        return took

    def latest_change() -> int:
        with eng.connect() as c:
            return int(c.execute(select(func.coalesce(func.max(t.change_log.c.change_id), 0)))
                       .scalar_one())  # fmt: skip

    # the listener's own connection, opened as the engine opens its (the office's engine is
    # psycopg2's; any other has no listener, and the polls look at the log instead)
    listen = (notify.connector(eng.dialect.create_connect_args(eng.url)[1])
              if eng.dialect.driver == "psycopg2" else None)  # fmt: skip
    polls = app.state.polls = LongPolls(latest_change, LONG_POLL_LOOK_S, listen)

    def readiness() -> tuple[bool, dict[str, Any]]:
        """The database answers now, and the change listener listens (without it a gate
        hears of a revocation only at its poll's next look, up to a few seconds late)."""
        try:
            with eng.connect() as c:
                c.execute(text("SELECT 1"))
            database: dict[str, Any] = {"ok": True, "error": None}
        except Exception as e:  # down, refusing, or the network: said, not raised
            database = {"ok": False, "error": str(e).strip().splitlines()[0][:200]}
        listener = {"configured": listen is not None, "listening": polls.listening}
        ok = database["ok"] and (listen is None or polls.listening)
        return ok, {"ready": ok, "database": database, "listener": listener,
                    "polls_waiting": polls.waiting, "counts": dict(accounts.counts)}  # fmt: skip

    @app.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        """503 while the database does not answer (within a few seconds) or the change
        listener does not listen. The whole report for this machine or a person logged
        in; anyone else learns only ``{"ready": …}``."""
        try:
            ok, body = await asyncio.wait_for(run_in_threadpool(readiness), READY_TIMEOUT_S)
        except TimeoutError:
            ok, body = False, {"ready": False, "database": {
                "ok": False, "error": f"no answer within {READY_TIMEOUT_S:g} s"}}  # fmt: skip
        if not trusted_peer(request.scope):
            body = {"ready": ok}
        return JSONResponse(body, 200 if ok else 503)

    metrics = app.state.metrics = OfficeMetrics(readiness)
    app.add_middleware(RequestLog, metrics=metrics)

    @app.get("/metrics")
    def prometheus(request: Request) -> Response:
        """Prometheus metrics: for this machine or a person logged in (a scraper elsewhere
        goes through the reverse proxy, or is allowed by it)."""
        if not trusted_peer(request.scope):
            raise HTTPException(403, "the metrics are for this machine")
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/sync/v1/pull")
    async def pull(
        request: Request,
        gate: office.Node = Depends(node),
        cred: HTTPAuthorizationCredentials | None = Depends(_bearer),
        since: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=5000),
        wait: float = Query(0.0, ge=0, le=LONG_POLL_MAX_S),
        log: str | None = Query(None, max_length=64, description="the log the cursor is in"),
        stamp: str | None = Query(None, max_length=64, description="change ``since``'s stamp"),
        scope: str | None = Query(None, max_length=64, description="the scope the gate holds"),
    ) -> dict[str, Any]:
        """Changes after ``since`` in commit order; waits up to ``wait`` s for the first.
        The wait holds no thread (a sleeping thread each was the threadpool's 40, and the
        clerks' requests queued behind them); and a node has one waiting poll: a newer one
        answers its older one at once (``superseded``), as a gate that polls again has
        given up on the older connection."""

        def check() -> tuple[str, bool, dict[str, Any]]:
            with eng.begin() as c:
                current = recovery.log_id(c)
                return (current, recovery.must_reset(c, current, since, log, stamp),
                        pictures.of(c, gate.site))  # fmt: skip

        current, reset, wanted = await run_in_threadpool(check)
        if reset:  # another change log than the cursor's: from the start (sync.recovery)
            return {"changes": [], "next": 0, "has_more": True, "reset": True, "log": current}
        if scope is not None and scope != gate.scope:  # it holds another scope: it drops
            # what is not its own and pulls again (a client that names none holds none)
            return {"changes": [], "next": since, "has_more": True, "rescope": gate.scope,
                    "log": current}  # fmt: skip

        def page() -> dict[str, Any]:
            with eng.connect() as c:
                return office.changes_after(c, since, limit, gate)

        mark = polls.mark()  # before the page: a commit the page misses is heard after it
        key = (since, limit, gate.scope)  # the gates of one scope at one cursor read once
        found = await polls.read(key, page, mark)
        superseded = False
        if not found["changes"] and wait > 0:
            ended = await polls.wait(gate.node_id, since, wait, mark)
            if ended == "ended":  # its token revoked or replaced meanwhile: 401 now
                await run_in_threadpool(node, request, cred)
            superseded = ended in ("superseded", "ended")
            # superseded: the page it has; a timeout while the listener heard every commit
            # since the mark: still that empty page (an idle gate costs no second read)
            if ended == "changed" or (ended == "timeout" and not polls.heard_all_since(mark)):
                found = await polls.read(key, page, polls.mark())
        # which camera pictures the site wants (sync.snapshots), told with every answer
        told = {"log": current, "snapshots": wanted}
        return found | told | ({"superseded": True} if superseded else {})

    @app.get("/sync/v1/scope")
    def scoped(gate: office.Node = Depends(node)) -> dict[str, Any]:
        """Every office pass and slip the node may hold, by id: a gate that held another
        scope (its gates changed, or it synced before sites) drops the rest, then pulls
        from the start. Ids only: a few hundred KB for a large estate."""
        with eng.connect() as c:
            return office.in_scope(c, gate) | {"scope": gate.scope, "site": gate.site}

    @app.get("/sync/v1/id-key")
    def id_key(gate: office.Node = Depends(node)) -> dict[str, Any]:
        """The key the node's estate hashes ID numbers with (derived from the office's, per
        site): a number hashed at any of its gates, or here, matches. Over TLS only, like
        every route a token reaches beyond this machine."""
        return {"site": gate.site, "key": hasher.for_site(gate.site).key.hex()}

    @app.put("/sync/v1/snapshots/{sha}", status_code=201, max_body_size=cfg.snapshot_max_bytes)
    async def sync_snapshot(
        sha: str,
        request: Request,
        gate: office.Node = Depends(node),
        snapshot_id: str = Query(..., max_length=64, description="the gate's record id"),
        ref_kind: str = Query(..., pattern="^(event|alarm|slip|request)$"),
        reduced: bool = Query(False, description="reduced at the gate to fit max_bytes"),
    ) -> dict[str, Any]:
        """A picture the node's site takes, under the SHA-256 its snapshot record names
        (of the picture as taken; ``reduced``: made smaller to fit, so not of these
        bytes). Sent again, it is kept once."""
        if not photos.SHA256.match(sha):
            raise DomainError(f"snapshot: {sha!r} is not a picture's SHA-256")
        data = await request.body()

        def keep() -> dict[str, Any]:
            with eng.begin() as c:
                return snapshots.put(c, gate.site, gate.node_id, sha, data, reduced,
                                     snapshot_id, ref_kind, cfg.snapshot_max_bytes,
                                     clock.now())  # fmt: skip

        return await run_in_threadpool(keep)

    @app.post("/sync/v1/holdings", max_body_size=PUSH_MAX_BODY)
    def holdings(body: recovery.Holdings, gate: office.Node = Depends(node)) -> dict[str, Any]:
        """What a gate holds of the office's passes and slips, sent when its pull was
        ``reset``: the office takes back what a restore lost (sync.recovery)."""
        with eng.begin() as c:
            took = recovery.relearn(c, gate.node_id, body, clock.now())
        if any(took.values()):
            log.warning("sync: took back from %s what the office had lost: %s", gate.node_id,
                        took)  # fmt: skip
        return took

    @app.get("/sync/v1/photos/{sha}")
    def sync_photo(sha: str, gate: office.Node = Depends(node)) -> Response:
        """A photo a pass in the node's scope names (another estate's holders' faces are
        not its to fetch); the gate checks its SHA-256 before keeping it."""
        if photos.SHA256.match(sha):
            with eng.connect() as c:
                if not office.photo_in_scope(c, gate, sha):
                    raise NotFound(f"photo {sha}: not a photo of a pass this gate holds")
        return _jpeg(sha)

    # -- the clerks' API ------------------------------------------------------------------

    @app.post("/api/v1/passes", status_code=201)
    def issue(body: OfficePassIn, who: str = Depends(clerk)) -> dict[str, Any]:
        req = PassRequest(
            kind=body.kind, card=body.card, name=body.name, unit=body.unit,
            id_number=body.id_number, valid_from=body.valid_from, valid_until=body.valid_until,
            gates=",".join(body.gates) if body.gates else None, daily_window=body.daily_window,
            permit_no=body.permit_no, photo=body.photo,
        )  # fmt: skip
        with eng.begin() as c:
            record = office.issue_pass(c, req, hasher, cfg.tz, who, clock.now(), body.site,
                                       replace=body.replace)  # fmt: skip
        shown = _pass_view(record)
        if record["kind"] == "temporary":  # printed as a QR code the gates verify offline
            shown["qr"] = signer.sign(pass_payload(record))
        return shaped(shown, cfg.tz)

    @app.post("/api/v1/passes/{pass_id}/revoke")
    def revoke(pass_id: str, body: ReasonIn | None = None, who: str = Depends(clerk)) -> dict:
        with eng.begin() as c:
            reason = body.reason if body else None
            record = office.revoke_pass(c, pass_id, reason, who, clock.now())
        return shaped(_pass_view(record), cfg.tz)

    @app.post("/api/v1/passes/{pass_id}/renew")
    def renew(pass_id: str, body: RenewIn, who: str = Depends(clerk)) -> dict[str, Any]:
        """A new period from now for an active pass (default: its kind's longest); the
        gates pull it like any change, and a temporary pass comes back with its new ``qr``."""
        until = (
            office.parse_field_time("valid_until", body.valid_until, cfg.tz)
            if body.valid_until
            else None
        )
        with eng.begin() as c:
            record = office.renew_pass(c, pass_id, until, cfg.tz, who, clock.now())
        shown = _pass_view(record)
        if record["kind"] == "temporary":
            shown["qr"] = signer.sign(pass_payload(record))
        return shaped(shown, cfg.tz)

    @app.post("/api/v1/photos", status_code=201, max_body_size=photos.MAX_UPLOAD)
    async def upload_photo(request: Request, who: str = Depends(clerk)) -> dict[str, Any]:
        """The body is the picture itself (JPEG or PNG, at most 8 MiB), taken at the desk
        or uploaded; kept upright, at most 640 px, without its metadata. A pass names it by
        the ``photo`` answered."""
        data = await request.body()

        def keep() -> str:
            with eng.begin() as c:
                return office.put_photo(c, data, who, clock.now())

        return {"photo": await run_in_threadpool(keep)}

    @app.get("/api/v1/photos/{sha}")
    def photo(sha: str, who: str = Depends(clerk)) -> Response:
        return _jpeg(sha)

    @app.get("/api/v1/snapshots/{sha}")
    def snapshot(sha: str, who: str = Depends(clerk)) -> Response:
        """A camera picture a gate sent (its site's ``snapshots`` setting), by the SHA-256
        its record names; ``X-Reduced: true`` when the gate made it smaller to send it."""
        if not photos.SHA256.match(sha):
            raise DomainError(f"snapshot: {sha!r} is not a picture's SHA-256")
        with eng.connect() as c:
            found = snapshots.get(c, sha)
        headers = {"Cache-Control": "private, max-age=31536000, immutable",
                   "X-SHA256": found["stored_sha256"],
                   "X-Reduced": "true" if found["reduced"] else "false"}  # fmt: skip
        return Response(found["jpeg"], media_type="image/jpeg", headers=headers)

    def _jpeg(sha: str) -> Response:
        if not photos.SHA256.match(sha):
            raise DomainError(f"photo: {sha!r} is not a photo's SHA-256")
        with eng.connect() as c:
            data = office.get_photo(c, sha)
        # named by its content: it can never change, so a gate or browser keeps it
        forever = {"Cache-Control": "private, max-age=31536000, immutable"}
        return Response(data, media_type="image/jpeg", headers=forever)

    @app.post("/api/v1/slips", status_code=201)
    def issue_slip(body: OfficeSlipIn, who: str = Depends(clerk)) -> dict[str, Any]:
        """A goods release slip (放行条); comes back with ``qr`` to print on the mover's copy."""
        detail = (
            body.authorisation_detail.model_dump(exclude_none=True)
            if body.authorisation_detail
            else {}
        )
        times = {field: office.parse_field_time(field, value, cfg.tz) if value else None
                 for field, value in (("valid_from", body.valid_from),
                                      ("valid_until", body.valid_until))}  # fmt: skip
        req = SlipRequest(
            unit=body.unit, owner=body.owner, bearer=body.bearer,
            authorisation=body.authorisation,
            items=[SlipItem(i.name, i.qty, i.hazard) for i in body.items],
            valid_from=times["valid_from"], valid_until=times["valid_until"],
            approver=body.approver, hazard_allowed=body.hazard_allowed, detail=detail,
        )  # fmt: skip
        with eng.begin() as c:
            record = office.issue_slip(c, req, who, clock.now(), cfg.tz, body.site)
        return shaped(record | {"qr": signer.sign(slip_payload(record))}, cfg.tz)

    @app.post("/api/v1/slips/{number}/cancel")
    def cancel_slip(number: str, body: CancelIn, who: str = Depends(clerk)) -> dict[str, Any]:
        with eng.begin() as c:
            return shaped(office.cancel_slip(c, number, body.reason, who, clock.now()), cfg.tz)

    @app.get("/api/v1/reports/monthly")
    def monthly(
        month: str = Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM"),
        who: str = Depends(clerk),
    ) -> dict[str, Any]:
        """Slips, confiscations, alarms by type and by shift, decisions: every gate's month."""
        with eng.connect() as c:
            return office.monthly_report(c, month, cfg.tz, clock.now())

    @app.get("/api/v1/anomalies")
    def anomalies(who: str = Depends(admin)) -> dict[str, Any]:
        """Integrity problems and exceptions for a person: used after revocation, released
        after cancellation, a record sent again with other content."""
        with eng.connect() as c:
            rows = c.execute(select(t.anomalies).order_by(t.anomalies.c.id.desc()).limit(500))
            return shaped({"items": [dict(r) for r in rows.mappings()], "next": None}, cfg.tz)

    @app.get("/api/v1/events")
    def events(
        who: str = Depends(clerk),
        node_id: str | None = Query(None, alias="node", max_length=64),
        kind: str | None = Query(None, max_length=40),
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = Query(None, max_length=CURSOR_MAX),
    ) -> dict[str, Any]:
        """Everything the gates recorded, newest first; each carries its ``node``. Pages
        by keyset: ``next`` names the page's last row, and the next page starts after it,
        so rows arriving in between neither shift a page nor repeat one."""
        e = t.edge_events.c
        # the payload as text, parsed here: a row stored before the push's checks (1e400,
        # an array) must not fail the whole page
        q = select(e.node_id, e.kind, e.seq, e.epoch, e.received_at,
                   cast(e.payload, Text).label("payload"))  # fmt: skip
        # a total order (the primary key breaks ties in received_at), read backwards along
        # ix_edge_events_newest
        key = (e.received_at, e.node_id, e.epoch, e.seq)
        q = q.order_by(*(k.desc() for k in key))
        if node_id:
            q = q.where(t.edge_events.c.node_id == node_id)
        if kind:
            q = q.where(t.edge_events.c.kind == kind)
        if cursor:
            q = q.where(tuple_(*key) < tuple_(*read_event_cursor(cursor)))
        with eng.connect() as c:
            rows = [dict(r) for r in c.execute(q.limit(limit + 1)).mappings()]
            items = [_as_object(office.stored_payload(r["payload"]))
                     | {"node": r["node_id"], "kind": r["kind"], "seq": r["seq"],
                        "epoch": r["epoch"]}
                     for r in rows[:limit]]  # fmt: skip
            _link_pictures(c, items)
        items = shaped(items, cfg.tz)
        if len(rows) <= limit:
            return {"items": items, "next": None}
        last = rows[limit - 1]
        return {"items": items, "next": event_cursor(last["received_at"], last["node_id"],
                                                     last["epoch"], last["seq"])}  # fmt: skip

    @app.get("/api/v1/nodes")
    def nodes(who: str = Depends(admin)) -> dict[str, Any]:
        """Each gate node: its site and gates, last seen, revoked, and per epoch how far
        its records have arrived."""
        with eng.connect() as c:
            found = office.list_nodes(c)
            cursors = [dict(r) for r in c.execute(select(t.edge_cursors)).mappings()]
            anomalies = c.execute(select(func.count()).select_from(t.anomalies)).scalar_one()
        return shaped({
            "items": [{"node": (name := n.pop("node_id")), **n,
                       "epochs": [x for x in cursors if x["node_id"] == name],
                       "polling": polls.polling(name)}  # a long poll open now: connected
                      for n in found],
            "anomalies": anomalies,
        }, cfg.tz)  # fmt: skip

    @app.get("/api/v1/sites")
    def sites(who: str = Depends(clerk)) -> dict[str, Any]:
        """The estates a pass or slip may be for, with their gates."""
        with eng.connect() as c:
            return shaped({"items": office.list_sites(c), "next": None}, cfg.tz)

    @app.post("/api/v1/expected-visitors", status_code=201)
    def announce(body: ExpectedIn, who: expected.Announcer = Depends(announcer)) -> dict:
        """A visitor announced for a host's unit (预约访客): the answer's ``code`` admits
        them at the estate's gates inside the window, ``entries`` times. A host announces
        for their own unit (``host_unit`` and ``site`` may be left out), at most 20 at a
        time."""
        fields = body.model_dump()
        for key in ("valid_from", "valid_until"):
            if fields[key]:
                fields[key] = office.parse_field_time(key, fields[key], cfg.tz)
        with eng.begin() as c:
            return shaped(expected.announce(c, fields, who, clock.now()), cfg.tz)

    @app.get("/api/v1/expected-visitors")
    def announced(
        who: expected.Announcer = Depends(announcer),
        site: str | None = Query(None, max_length=64),
    ) -> dict[str, Any]:
        """The announced visitors; a host's own unit's only."""
        with eng.connect() as c:
            return shaped({"items": expected.listing(c, site, who), "next": None}, cfg.tz)

    @app.post("/api/v1/expected-visitors/{visitor_id}/cancel")
    def unannounce(visitor_id: str, who: expected.Announcer = Depends(announcer)) -> dict[str, Any]:
        with eng.begin() as c:
            return shaped(expected.cancel(c, visitor_id, who, clock.now()), cfg.tz)

    @app.post("/api/v1/units", status_code=201)
    def add_units(body: UnitsIn, who: str = Depends(clerk)) -> dict[str, Any]:
        """Units (房号) on a site's list; the gates refuse a visitor for a unit not on it."""
        with eng.begin() as c:
            return units.add(c, body.site, body.units, who, clock.now())

    @app.get("/api/v1/units")
    def list_units(
        who: str = Depends(clerk), site: str | None = Query(None, max_length=64)
    ) -> dict[str, Any]:
        with eng.connect() as c:
            return {"items": units.listing(c, site), "next": None}

    @app.delete("/api/v1/units/{unit}")
    def remove_unit(
        unit: str, who: str = Depends(clerk), site: str | None = Query(None, max_length=64)
    ) -> dict[str, Any]:
        with eng.begin() as c:
            units.remove(c, site, unit, who, clock.now())
        return {"unit": unit, "removed": True}

    @app.post("/api/v1/permits", status_code=201)
    def issue_permit(body: PermitIn, who: str = Depends(clerk)) -> dict[str, Any]:
        """A unit's renovation permit (装修许可证); worker passes name it (``permit_no``)."""
        fields = body.model_dump()
        for key in ("valid_from", "valid_until"):
            if fields[key]:
                fields[key] = office.parse_field_time(key, fields[key], cfg.tz)
        with eng.begin() as c:
            return shaped(permits.issue(c, fields, who, clock.now()), cfg.tz)

    @app.get("/api/v1/permits")
    def list_permits(
        who: str = Depends(clerk),
        site: str | None = Query(None, max_length=64),
        status: str | None = Query(None, pattern="^(active|suspended|closed)$"),
    ) -> dict[str, Any]:
        with eng.connect() as c:
            return shaped({"items": permits.listing(c, site, status), "next": None}, cfg.tz)

    @app.post("/api/v1/permits/{permit_no}/{action}")
    def move_permit(
        permit_no: str,
        action: Literal["suspend", "resume", "close"],
        body: ReasonIn,
        who: str = Depends(clerk),
    ) -> dict[str, Any]:
        """``suspend``: a stop-work order (停工整顿), its cause as ``reason``: the unit's
        workers are denied at the gates until ``resume`` (re-inspection passed); ``close``:
        the works are complete (the locks are changed), and the workers' passes stop."""
        with eng.begin() as c:
            return shaped(permits.move(c, permit_no, action, body.reason, who, clock.now()),
                          cfg.tz)  # fmt: skip

    @app.patch("/api/v1/sites/{site_id}")
    def site_set(site_id: str, body: SiteSetIn, who: str = Depends(admin)) -> dict[str, Any]:
        """Which camera pictures a site's gates send here, and how long they are kept."""
        with eng.begin() as c:
            site = snapshots.set_site(c, site_id, body.snapshots, body.snapshot_days, who,
                                      clock.now())  # fmt: skip
        return shaped(site, cfg.tz)

    @app.get("/api/v1/audit")
    def audit(
        who: str = Depends(admin),
        limit: int = Query(100, ge=1, le=1000),
        before: int | None = Query(None, ge=1, le=_BIGINT - 1, description="older than this id"),
    ) -> dict[str, Any]:
        """Every write at the office, newest first: who, what, to which record, when."""
        q = select(t.audit).order_by(t.audit.c.id.desc()).limit(limit + 1)
        if before is not None:
            q = q.where(t.audit.c.id < before)
        with eng.connect() as c:
            rows = [dict(r) for r in c.execute(q).mappings()]
        more = len(rows) > limit
        shown = {"items": rows[:limit], "next": rows[limit - 1]["id"] if more else None}
        return shaped(shown, cfg.tz)

    return app


class OfficePassIn(PassIn):
    site: str | None = Field(None, max_length=64, description="the estate; default: the only one")


class ExpectedIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    # required, except from a host: theirs
    host_unit: str | None = Field(None, min_length=1, max_length=50)
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=40, description="guest, delivery, tutor, …")
    valid_from: str | None = Field(None, max_length=40, description="ISO 8601; default now")
    valid_until: str = Field(min_length=1, max_length=40, description="ISO 8601")
    entries: int = Field(1, ge=1, le=20)
    site: str | None = Field(None, max_length=64, description="the estate; default: the only one")


class UnitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    units: list[str] = Field(min_length=1, max_length=10000)
    site: str | None = Field(None, max_length=64, description="the estate; default: the only one")


class PermitIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    permit_no: str = Field(min_length=1, max_length=64)
    unit: str = Field(min_length=1, max_length=50)
    company: str = Field(min_length=1, max_length=200)
    scope: str | None = Field(None, max_length=1000, description="the works the permit allows")
    valid_from: str | None = Field(None, max_length=40, description="ISO 8601; default now")
    valid_until: str | None = Field(None, max_length=40, description="ISO 8601")
    site: str | None = Field(None, max_length=64, description="the estate; default: the only one")


class SiteSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    snapshots: Literal["off", "alarms", "all"] | None = None
    snapshot_days: int | None = Field(None, ge=1, le=MAX_KEEP_DAYS)


class OfficeSlipIn(SlipIn):
    site: str | None = Field(None, max_length=64, description="the estate; default: the only one")


def _as_object(payload: Any) -> dict[str, Any]:
    return payload if isinstance(payload, dict) else {"payload": payload}


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The change listener from startup (the first gate's poll finds it listening) until
    shutdown, which closes its connection."""
    app.state.polls.listen()
    purging = asyncio.get_running_loop().create_task(_purge_pictures(app))
    try:
        yield
    finally:
        purging.cancel()
        await app.state.polls.close()


async def _purge_pictures(app: FastAPI) -> None:
    """Camera pictures past their site's ``snapshot_days``: at start, then hourly. A
    failure (the database away) is logged and tried at the next turn."""
    while True:
        try:
            await run_in_threadpool(_purge_once, app.state.eng, app.state.clock.now())
        except Exception as e:  # the next turn tries again
            log.warning("snapshots: the hourly purge failed: %s", e)
        await asyncio.sleep(PURGE_EVERY_S)


def _purge_once(eng: Engine, now: float) -> int:
    with eng.begin() as c:
        n = snapshots.purge(c, now)
        if n:
            office.audit(c, "office", "purge:snapshots", "snapshots", now, removed=n)
    return n


def _link_pictures(conn: Any, items: list[dict[str, Any]]) -> None:
    """``office_url`` on each snapshot record (a ``snapshot`` record, or one an event or
    alarm carries) whose picture the office holds: ``url`` is the gate's address."""
    records = [i if i["kind"] == "snapshot" else i.get("snapshot") for i in items]
    found = [r for r in records if isinstance(r, dict) and isinstance(r.get("sha256"), str)]
    here = snapshots.held(conn, {r["sha256"] for r in found})
    for r in found:
        if r["sha256"] in here:
            r["office_url"] = f"/api/v1/snapshots/{r['sha256']}"


# -- the event list's cursor: the last row's key, opaque to the clerk's program -------------

# base64 of the key: ~150 characters with a gate's id (64 at most); the office's
# ``node add`` takes longer ones, which still page
CURSOR_MAX = 1000
_BIGINT = 2**63


def event_cursor(received_at: float, node_id: str, epoch: int, seq: int) -> str:
    """``next`` of ``GET /api/v1/events``: the key of a page's last row as base64url JSON
    (a float's repr comes back exactly, so the next page starts right after the row)."""
    key = json.dumps([received_at, node_id, epoch, seq], ensure_ascii=False)
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def read_event_cursor(cursor: str) -> tuple[float, str, int, int]:
    """The key a cursor names, or DomainError (422) naming the cursor: a cursor is the
    client's to send back as it was given, and anything else must not reach the query."""
    bad = DomainError("cursor: not a cursor this office gave (send back `next` as it came)")
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, RecursionError):  # not base64, not UTF-8, not JSON
        raise bad from None
    if not (isinstance(key, list) and len(key) == 4):
        raise bad
    received_at, node_id, epoch, seq = key
    # what PostgreSQL or its driver would refuse, as a 500: NUL or a lone surrogate in
    # text, a number past float8 or bigint (NaN and infinity are float8's own: a row whose
    # received_at is one still pages)
    if not (_is_float(received_at) and isinstance(node_id, str) and _is_text(node_id)
            and all(isinstance(n, int) and not isinstance(n, bool) and -_BIGINT <= n < _BIGINT
                    for n in (epoch, seq))):  # fmt: skip
        raise bad
    return float(received_at), node_id, epoch, seq


def _is_float(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, float | int):
        return False
    try:
        float(value)
    except OverflowError:  # an int past any float
        return False
    return True


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\x00" not in value


class LongPolls:
    """The gates' long polls, waiting on the event loop rather than in a thread each, and at
    most one waiting poll per node. The process's change listener (sync.notify: PostgreSQL
    NOTIFY at each commit, from whichever office process made it) wakes them; while it does
    not listen, one look at the change log every ``every`` s for all of them does (not one
    per gate)."""

    def __init__(
        self, latest: Callable[[], int], every: float, listen: notify.Connect | None = None
    ) -> None:
        self._latest = latest  # the highest change_id committed (blocking: a thread's job)
        self.every = every
        self.seen = 0  # the highest change_id at the last look or notification
        self.looks = 0  # looks, and notifications heard: each tells ``seen`` afresh
        self._notices = 0  # notifications heard
        self._waiting: dict[str, asyncio.Event] = {}  # node → its waiting poll's wake-up
        self._ended: set[str] = set()  # waiting nodes whose token was revoked or replaced
        self._watcher: asyncio.Task[None] | None = None
        self._failing = False  # said once in the log, not every look
        self._listener = (
            notify.ChangeListener(listen, self.heard, self._listening, self._deaf, self.ended)
            if listen is not None
            else None
        )
        self._heard_from: int | None = None  # ``looks`` when the listener began listening
        self._reads: dict[Hashable, tuple[int, asyncio.Future[Any]]] = {}  # key → (looks, read)

    @property
    def listening(self) -> bool:
        return self._heard_from is not None

    def polling(self, node_id: str) -> bool:
        return node_id in self._waiting

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def listen(self) -> None:
        """Start the change listener (on the running loop; again if it ever ended)."""
        if self._listener is not None:
            self._listener.start()

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close()
        self._heard_from = None

    async def read(self, key: Hashable, read: Callable[[], T], fresh: int) -> T:
        """``read()`` in a thread; or the answer of a read of the same ``key`` begun at look
        ``fresh`` or later, which saw every commit a look before it saw. The polls one commit
        wakes (every caught-up gate: the same ``since``) read their page once, not once each."""
        current = self._reads.get(key)
        if current is None or current[0] < fresh:
            current = (self.looks, asyncio.ensure_future(run_in_threadpool(read)))
            self._reads[key] = current
            current[1].add_done_callback(
                lambda _f, k=key, c=current: self._reads.pop(k) if self._reads.get(k) is c else None
            )
        # (shielded: a poll that is cancelled does not cancel the others' read)
        return await asyncio.shield(current[1])

    def mark(self) -> int:
        """Where a poll begins, taken before it reads its first page: a change that page
        missed is seen by a look or notification after the mark."""
        return self.looks

    def heard_all_since(self, mark: int) -> bool:
        """The listener has listened all along since ``mark``: each commit since was heard."""
        return self._heard_from is not None and mark >= self._heard_from

    async def wait(self, node_id: str, since: int, timeout: float, mark: int | None = None) -> str:
        """Until a change after ``since`` is committed ("changed"), ``timeout`` s pass
        ("timeout") or a newer poll of the same node takes over ("superseded")."""
        older = self._waiting.get(node_id)
        if older is not None:
            older.set()  # it sees it is no longer this node's waiting poll, and answers
        wake = self._waiting[node_id] = asyncio.Event()
        self.listen()  # (started with the app already; here too for an app run without)
        if not self.listening:
            self._watch_meanwhile()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # a change counts once a look or notification after this poll began saw it: ``seen``
        # may be from before (the log can shrink when the office is restored from a dump)
        first_look = (self.looks if mark is None else mark) + 1
        try:
            while True:
                if self.looks >= first_look and self.seen > since:
                    return "changed"
                if self._waiting.get(node_id) is not wake:
                    return "superseded"
                if node_id in self._ended:
                    return "ended"
                left = deadline - loop.time()
                if left <= 0:
                    return "timeout"
                wake.clear()  # no await since the checks: nothing was missed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), left)
        finally:
            if self._waiting.get(node_id) is wake:
                del self._waiting[node_id]
                self._ended.discard(node_id)

    def ended(self, node_id: str) -> None:
        """The node's token was revoked or replaced: its waiting poll checks it now."""
        if (wake := self._waiting.get(node_id)) is not None:
            self._ended.add(node_id)
            wake.set()

    def heard(self, change_id: int) -> None:
        """A notification: ``change_id`` is the newest commit."""
        self.seen = change_id
        self.looks += 1
        self._notices += 1
        self._wake_all()

    async def _listening(self) -> None:
        """The listener listens (again): one look, for what was committed while nobody
        listened, and the looks stop."""
        await self._look()
        self._heard_from = self.looks
        self._wake_all()

    def _deaf(self) -> None:
        self._heard_from = None
        self._watch_meanwhile()

    def _watch_meanwhile(self) -> None:
        if self._waiting and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _look(self) -> None:
        """``seen`` afresh from the log (a blocking read: in a thread)."""
        notices = self._notices
        latest = await run_in_threadpool(self._latest)
        # a notification heard during the read may be of a later commit than it saw
        self.seen = latest if self._notices == notices else max(latest, self.seen)
        self.looks += 1  # (only a look that saw the log counts)

    async def _watch(self) -> None:
        """While any poll waits and the listener does not listen, look at the change log
        and wake them all after each look."""
        while self._waiting and not self.listening:
            try:
                await self._look()
                self._failing = False
            except Exception as e:  # the database away: the polls time out and find out
                if not self._failing:
                    log.warning("long polls: cannot read the change log: %s", e)
                self._failing = True
            self._wake_all()
            await asyncio.sleep(self.every)

    def _wake_all(self) -> None:
        for wake in self._waiting.values():
            wake.set()


class RequestLog:
    """Each request: one log line (method, path, status, time, peer; no query string, which
    may hold a card number) and its count and duration by route for the metrics."""

    def __init__(self, app: Any, metrics: OfficeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began, status = time.monotonic(), 500

        async def sent(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            took = time.monotonic() - began
            route = scope.get("route")
            # the route's template bounds the metrics' labels; a path no route has is one
            label = getattr(route, "path", None) or "(no route)"
            self.metrics.requests.labels(label, str(status)).inc()
            self.metrics.seconds.labels(label).observe(took)
            path = scope["path"]
            quiet = status < 400 and path.startswith(QUIET_ROUTES)
            client = scope.get("client") or ("?",)
            log.log(logging.DEBUG if quiet else logging.INFO, "%s %s %d %.1f ms %s",
                    scope["method"], scrub(path), status, took * 1000, client[0])  # fmt: skip


def _pass_view(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "kind", "name", "unit", "id_last4", "valid_from", "valid_until", "status",
            "version")  # fmt: skip
    return {k: r[k] for k in keys} | {"card": mask_key(r["card_key"])}
