"""The office server: the clerks' API and the endpoints the gates sync through.

Sync (docs/sync.md): ``POST /sync/v1/push`` takes a batch of a gate's outbox and answers
the contiguous high-water mark; ``GET /sync/v1/pull?since=N`` long-polls the change log.
Both authenticate the gate by its node token.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi_offline import FastAPIOffline
from sqlalchemy import Engine, func, select
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
from edge.passes import parse_time
from edge.privacy import IdHasher
from edge.slips import Item as SlipItem
from edge.slips import SlipRequest
from sync import desk, office, wire
from sync import schema as t
from sync.qr import Signer, pass_payload, slip_payload

log = logging.getLogger(__name__)
_bearer = HTTPBearer(auto_error=False)
LONG_POLL_MAX_S = 25.0
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
        if accounts.throttle.blocked(client, now):
            accounts.count("refused:throttled")
            raise HTTPException(429, "too many bad tokens from this address; wait a minute")
        accounts.throttle.fail(client, now)
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
        epoch: int = Query(ge=0),
        base: int = Query(ge=1, description="the epoch's first seq"),
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

    @app.get("/sync/v1/pull")
    def pull(
        node_id: str = Depends(node),
        since: int = Query(0, ge=0),
        limit: int = Query(1000, ge=1, le=5000),
        wait: float = Query(0.0, ge=0, le=LONG_POLL_MAX_S),
    ) -> dict[str, Any]:
        """Changes after ``since`` in commit order; waits up to ``wait`` s for the first."""
        deadline = time.monotonic() + wait
        while True:
            with eng.connect() as c:
                changes = office.changes_after(c, since, limit + 1)
            if changes or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        more = len(changes) > limit
        changes = changes[:limit]
        return {
            "changes": changes,
            "next": changes[-1]["change_id"] if changes else since,
            "has_more": more,
        }

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
        until = parse_time(body.valid_until, cfg.tz) if body.valid_until else None
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
        req = SlipRequest(
            unit=body.unit, owner=body.owner, bearer=body.bearer,
            authorisation=body.authorisation,
            items=[SlipItem(i.name, i.qty, i.hazard) for i in body.items],
            valid_from=parse_time(body.valid_from, cfg.tz) if body.valid_from else None,
            valid_until=parse_time(body.valid_until, cfg.tz) if body.valid_until else None,
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
        q = select(t.edge_events).order_by(t.edge_events.c.received_at.desc(),
                                           t.edge_events.c.seq.desc())  # fmt: skip
        if node_id:
            q = q.where(t.edge_events.c.node_id == node_id)
        if kind:
            q = q.where(t.edge_events.c.kind == kind)
        offset = int(cursor) if cursor else 0
        with eng.connect() as c:
            rows = [dict(r) for r in c.execute(q.offset(offset).limit(limit + 1)).mappings()]
        items = [r["payload"] | {"node": r["node_id"], "kind": r["kind"], "seq": r["seq"],
                                 "epoch": r["epoch"]} for r in rows[:limit]]  # fmt: skip
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
                       "epochs": [x for x in cursors if x["node_id"] == n]}
                      for n, s in sorted(seen.items())],
            "anomalies": anomalies,
        }  # fmt: skip

    return app


def _pass_view(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "kind", "name", "unit", "id_last4", "valid_from", "valid_until", "status",
            "version")  # fmt: skip
    return {k: r[k] for k in keys} | {"card": mask_key(r["card_key"])}
