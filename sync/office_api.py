"""The office server: the clerks' API and the endpoints the gates sync through.

Sync (docs/sync.md): ``POST /sync/v1/push`` takes a batch of a gate's outbox and answers
the contiguous high-water mark; ``GET /sync/v1/pull?since=N`` long-polls the change log.
Both authenticate the gate by its node token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine, Text, cast, func, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge import console, photos
from edge.api.limits import MAX_BODY, CredentialsFirst, PrivateDocs
from edge.api.schemas import CancelIn, PassIn, ReasonIn, RenewIn, SlipIn
from edge.cards import mask_key
from edge.clock import Clock, SystemClock
from edge.config import OfficeCfg
from edge.errors import DomainError
from edge.messages import refusal
from edge.pass_ops import PassRequest
from edge.privacy import IdHasher
from edge.slips import Item as SlipItem
from edge.slips import SlipRequest
from sync import desk, office, wire
from sync import schema as t
from sync.qr import Signer, pass_payload, slip_payload

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False)
LONG_POLL_MAX_S = 25.0
LONG_POLL_LOOK_S = 0.1  # how often the office looks at its change log for waiting gates
PUSH_MAX_BODY = 64 * 1024 * 1024  # push_batch is at most 10,000 rows of a few KB


def create_office_app(cfg: OfficeCfg, eng: Engine, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    app = FastAPIOffline(title="Gatehouse office", version="0.1.0",  # docs without a CDN
                         max_body_size=MAX_BODY)  # fmt: skip
    app.add_middleware(CredentialsFirst)
    app.add_middleware(PrivateDocs)
    hasher = IdHasher.from_data_dir(cfg.data_dir)
    signer = Signer.from_data_dir(cfg.data_dir)

    app.state.cfg, app.state.eng, app.state.signer = cfg, eng, signer
    app.state.clock = clock
    accounts = app.state.accounts = desk.OfficeAccounts(eng, clock)

    def wrong_token(request: Request) -> None:
        """A wrong token: counted per address; past the limit, 429 (never for a valid one)."""
        client = request.client.host if request.client else "?"
        now = clock.monotonic()
        if accounts.throttle.wrong(client, now):
            accounts.count("refused:throttled")
            raise HTTPException(429, "too many bad tokens from this address; wait a minute")
        accounts.count("refused:token")

    def node(request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        if cred is not None:
            with eng.connect() as c:
                found = office.node_of(c, cred.credentials)
            if found:
                return found
            wrong_token(request)
        raise HTTPException(401, "a valid node token is required", {"WWW-Authenticate": "Bearer"})

    app.include_router(console.router)  # the desk's pages: each checks its session itself
    app.include_router(desk.router)
    app.mount("/static", console.static, name="static")

    def clerk(
        request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> str:
        if cred is not None:
            with eng.connect() as c:
                found = office.user_of(c, cred.credentials)
            if found:
                return found[0]
            wrong_token(request)
        elif (s := console.session(request, *desk.ROLES)) is not None:
            changes = request.method not in ("GET", "HEAD", "OPTIONS")
            if changes and not s.csrf_ok(request.headers.get("x-csrf-token")):
                raise HTTPException(403, "this change needs the page's CSRF token")
            return s.name
        raise HTTPException(
            401,
            "a valid bearer token (or a desk login) is required",
            {"WWW-Authenticate": "Bearer"},
        )

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
    async def _http(_r: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(refusal(exc.detail), exc.status_code, headers=exc.headers)

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
        node_id: str = Depends(node),
        epoch: int = Query(ge=0, le=wire.SEQ_MAX),  # bigint columns: beyond, PostgreSQL fails
        base: int = Query(ge=1, le=wire.SEQ_MAX, description="the epoch's first seq"),
    ) -> dict[str, Any]:
        """A batch of a gate's outbox, one row a line (sync.wire): fed to COPY as it comes."""
        try:
            batch = wire.decode((await request.body()).decode())
        except (ValueError, UnicodeDecodeError) as e:
            raise DomainError(f"push: not a batch of the sync protocol ({e})") from None

        def apply() -> dict[str, Any]:
            with eng.begin() as c:
                return office.apply_push(c, node_id, epoch, base, batch, clock.now())

        return await run_in_threadpool(apply)

    def latest_change() -> int:
        with eng.connect() as c:
            return int(c.execute(select(func.coalesce(func.max(t.change_log.c.change_id), 0)))
                       .scalar_one())  # fmt: skip

    polls = app.state.polls = LongPolls(latest_change, LONG_POLL_LOOK_S)

    @app.get("/sync/v1/pull")
    async def pull(
        node_id: str = Depends(node),
        since: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=5000),
        wait: float = Query(0.0, ge=0, le=LONG_POLL_MAX_S),
    ) -> dict[str, Any]:
        """Changes after ``since`` in commit order; waits up to ``wait`` s for the first.
        The wait holds no thread (a sleeping thread each was the threadpool's 40, and the
        clerks' requests queued behind them); and a node has one waiting poll: a newer one
        answers its older one at once (``superseded``), as a gate that polls again has
        given up on the older connection."""

        def page() -> list[dict[str, Any]]:
            with eng.connect() as c:
                return office.changes_after(c, since, limit + 1)

        changes = await run_in_threadpool(page)
        superseded = False
        if not changes and wait > 0:
            ended = await polls.wait(node_id, since, wait)
            superseded = ended == "superseded"
            if ended == "changed" or ended == "timeout":  # superseded: the page it has
                changes = await run_in_threadpool(page)
        more = len(changes) > limit
        changes = changes[:limit]
        return {
            "changes": changes,
            "next": changes[-1]["change_id"] if changes else since,
            "has_more": more,
        } | ({"superseded": True} if superseded else {})

    @app.get("/sync/v1/photos/{sha}")
    def sync_photo(sha: str, node_id: str = Depends(node)) -> Response:
        """A photo a pulled pass names; the gate checks its SHA-256 before keeping it."""
        return _jpeg(sha)

    # -- the clerks' API ------------------------------------------------------------------

    @app.post("/api/v1/passes", status_code=201)
    def issue(body: PassIn, who: str = Depends(clerk)) -> dict[str, Any]:
        req = PassRequest(
            kind=body.kind, card=body.card, name=body.name, unit=body.unit,
            id_number=body.id_number, valid_from=body.valid_from, valid_until=body.valid_until,
            gates=",".join(body.gates) if body.gates else None, daily_window=body.daily_window,
            permit_no=body.permit_no, photo=body.photo,
        )  # fmt: skip
        with eng.begin() as c:
            record = office.issue_pass(c, req, hasher, cfg.tz, who, clock.now())
        shown = _pass_view(record)
        if record["kind"] == "temporary":  # printed as a QR code the gates verify offline
            shown["qr"] = signer.sign(pass_payload(record))
        return shown

    @app.post("/api/v1/passes/{pass_id}/revoke")
    def revoke(pass_id: str, body: ReasonIn | None = None, who: str = Depends(clerk)) -> dict:
        with eng.begin() as c:
            reason = body.reason if body else None
            record = office.revoke_pass(c, pass_id, reason, who, clock.now())
        return _pass_view(record)

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
        return shown

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

    def _jpeg(sha: str) -> Response:
        if not photos.SHA256.match(sha):
            raise DomainError(f"photo: {sha!r} is not a photo's SHA-256")
        with eng.connect() as c:
            data = office.get_photo(c, sha)
        # named by its content: it can never change, so a gate or browser keeps it
        forever = {"Cache-Control": "private, max-age=31536000, immutable"}
        return Response(data, media_type="image/jpeg", headers=forever)

    @app.post("/api/v1/slips", status_code=201)
    def issue_slip(body: SlipIn, who: str = Depends(clerk)) -> dict[str, Any]:
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
            record = office.issue_slip(c, req, who, clock.now(), cfg.tz)
        return record | {"qr": signer.sign(slip_payload(record))}

    @app.post("/api/v1/slips/{number}/cancel")
    def cancel_slip(number: str, body: CancelIn, who: str = Depends(clerk)) -> dict[str, Any]:
        with eng.begin() as c:
            return office.cancel_slip(c, number, body.reason, who, clock.now())

    @app.get("/api/v1/reports/monthly")
    def monthly(
        month: str = Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM"),
        who: str = Depends(clerk),
    ) -> dict[str, Any]:
        """Slips, confiscations, alarms by type and by shift, decisions: every gate's month."""
        with eng.connect() as c:
            return office.monthly_report(c, month, cfg.tz)

    @app.get("/api/v1/anomalies")
    def anomalies(who: str = Depends(clerk)) -> dict[str, Any]:
        """Integrity problems and exceptions for a person: used after revocation, released
        after cancellation, a record sent again with other content."""
        with eng.connect() as c:
            rows = c.execute(select(t.anomalies).order_by(t.anomalies.c.id.desc()).limit(500))
            return {"items": [dict(r) for r in rows.mappings()], "next": None}

    @app.get("/api/v1/events")
    def events(
        who: str = Depends(clerk),
        node_id: str | None = Query(None, alias="node", max_length=64),
        kind: str | None = Query(None, max_length=40),
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = Query(None, max_length=40, pattern=r"^\d+$"),
    ) -> dict[str, Any]:
        """Everything the gates recorded, newest first; each carries its ``node``."""
        e = t.edge_events.c
        # the payload as text, parsed here: a row stored before the push's checks (1e400,
        # an array) must not fail the whole page
        q = select(e.node_id, e.kind, e.seq, e.epoch, cast(e.payload, Text).label("payload"))
        q = q.order_by(e.received_at.desc(), e.seq.desc())
        if node_id:
            q = q.where(t.edge_events.c.node_id == node_id)
        if kind:
            q = q.where(t.edge_events.c.kind == kind)
        offset = int(cursor) if cursor else 0
        with eng.connect() as c:
            rows = [dict(r) for r in c.execute(q.offset(offset).limit(limit + 1)).mappings()]
        items = [_as_object(office.stored_payload(r["payload"]))
                 | {"node": r["node_id"], "kind": r["kind"], "seq": r["seq"], "epoch": r["epoch"]}
                 for r in rows[:limit]]  # fmt: skip
        return {"items": items, "next": str(offset + limit) if len(rows) > limit else None}

    @app.get("/api/v1/nodes")
    def nodes(who: str = Depends(clerk)) -> dict[str, Any]:
        """Each gate: last seen, and per epoch how far its records have arrived."""
        with eng.connect() as c:
            seen = {
                r[0]: r[1] for r in c.execute(select(t.nodes.c.node_id, t.nodes.c.last_seen_at))
            }
            cursors = [dict(r) for r in c.execute(select(t.edge_cursors)).mappings()]
            anomalies = c.execute(select(func.count()).select_from(t.anomalies)).scalar_one()
        return {
            "items": [{"node": n, "last_seen_at": s,
                       "epochs": [x for x in cursors if x["node_id"] == n],
                       "polling": polls.polling(n)}  # a long poll open now: connected
                      for n, s in sorted(seen.items())],
            "anomalies": anomalies,
        }  # fmt: skip

    return app


def _as_object(payload: Any) -> dict[str, Any]:
    return payload if isinstance(payload, dict) else {"payload": payload}


class LongPolls:
    """The gates' long polls, waiting on the event loop rather than in a thread each: one
    look at the change log every ``every`` s for all of them (not one per gate), and at
    most one waiting poll per node."""

    def __init__(self, latest: Callable[[], int], every: float) -> None:
        self._latest = latest  # the highest change_id committed (blocking: a thread's job)
        self.every = every
        self.seen = 0  # the highest change_id at the last look
        self.looks = 0
        self._waiting: dict[str, asyncio.Event] = {}  # node → its waiting poll's wake-up
        self._watcher: asyncio.Task[None] | None = None
        self._failing = False  # said once in the log, not every look

    def polling(self, node_id: str) -> bool:
        return node_id in self._waiting

    async def wait(self, node_id: str, since: int, timeout: float) -> str:
        """Until a change after ``since`` is committed ("changed"), ``timeout`` s pass
        ("timeout") or a newer poll of the same node takes over ("superseded")."""
        older = self._waiting.get(node_id)
        if older is not None:
            older.set()  # it sees it is no longer this node's waiting poll, and answers
        wake = self._waiting[node_id] = asyncio.Event()
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # a change counts once a look made after this poll began saw it: ``seen`` may be
        # from before (the log can shrink when the office is restored from a dump)
        first_look = self.looks + 1
        try:
            while True:
                if self.looks >= first_look and self.seen > since:
                    return "changed"
                if self._waiting.get(node_id) is not wake:
                    return "superseded"
                left = deadline - loop.time()
                if left <= 0:
                    return "timeout"
                wake.clear()  # no await since the checks: nothing was missed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), left)
        finally:
            if self._waiting.get(node_id) is wake:
                del self._waiting[node_id]

    async def _watch(self) -> None:
        """Look at the change log while any poll waits, and wake them all after each look."""
        while self._waiting:
            try:
                self.seen = await run_in_threadpool(self._latest)
                self.looks += 1  # (only a look that saw the log counts)
                self._failing = False
            except Exception as e:  # the database away: the polls time out and find out
                if not self._failing:
                    log.warning("long polls: cannot read the change log: %s", e)
                self._failing = True
            for wake in self._waiting.values():
                wake.set()
            await asyncio.sleep(self.every)


def _pass_view(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "kind", "name", "unit", "id_last4", "valid_from", "valid_until", "status",
            "version")  # fmt: skip
    return {k: r[k] for k in keys} | {"card": mask_key(r["card_key"])}
