"""Goods release slips (放行条): admins issue and cancel, guards look up, release, reject."""

from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from edge import audit, slips
from edge.api.deps import Caller, lookup_allowed, lookup_done, roles, service
from edge.api.schemas import CancelIn, RejectIn, ReleaseIn, SlipIn
from edge.errors import DomainError, NotFound
from edge.logs import scrub
from edge.passes import parse_time
from edge.views import slip_view
from sync import qr

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["slips"])


def _shown(svc: Any, slip: dict[str, Any]) -> dict[str, Any]:
    return slip_view(slip, svc.cfg.tz, slips.status_at(slip, svc.clock.now()))


@router.post("/slips", status_code=201)
def issue(request: Request, body: SlipIn, who: Caller = roles("admin")) -> dict[str, Any]:
    svc = service(request)
    tz = svc.cfg.tz
    detail = (
        body.authorisation_detail.model_dump(exclude_none=True) if body.authorisation_detail else {}
    )
    req = slips.SlipRequest(
        unit=body.unit, owner=body.owner, bearer=body.bearer, authorisation=body.authorisation,
        items=[slips.Item(i.name, i.qty, i.hazard) for i in body.items],
        valid_from=parse_time(body.valid_from, tz) if body.valid_from else None,
        valid_until=parse_time(body.valid_until, tz) if body.valid_until else None,
        approver=body.approver, hazard_allowed=body.hazard_allowed, detail=detail,
    )  # fmt: skip

    def job(conn: Any) -> dict[str, Any]:
        number = slips.issue(conn, req, who.name, svc.clock.now(), tz)
        audit.record(conn, who.name, "slip:issue", number, svc.clock.now())
        return slips.get(conn, number)

    return _shown(svc, svc.write(job))


@router.get("/slips/{number}")
def lookup(request: Request, number: str, who: Caller = roles("guard")) -> dict[str, Any]:
    """Everything on the slip, typed or scanned, for checking the goods against it: a
    number typed by hand is limited, audited, and a run of misses alarms (edge.lookups)."""
    svc = service(request)
    lookup_allowed(svc, who)
    try:
        found = svc.read(lambda c: slips.get(c, number))
    except NotFound:
        lookup_done(svc, who, "slip", number[:40], found=False)
        raise
    lookup_done(svc, who, "slip", number, found=True)
    return _shown(svc, found)


def _gate(svc: Any, gate: str | None) -> str | None:
    if gate is None and len(svc.cfg.gates) == 1:
        return str(svc.cfg.gates[0])  # a one-gate node: no need to say which
    return None if gate is None else svc.cfg.known_gate(gate)


@router.post("/slips/{number}/release")
def release(
    request: Request, number: str, body: ReleaseIn | None = None, who: Caller = roles("guard")
) -> dict[str, Any]:
    """Let the goods out. A slip releases once: used, rejected, cancelled or expired → 409."""
    svc = service(request)
    body = body or ReleaseIn()
    gate = _gate(svc, body.gate)
    now = svc.clock.now()
    payload = None
    if body.qr is not None:  # issued at the office, maybe after this gate last synced
        payload = qr.verify(body.qr, list(svc.cfg.qr_keys))
        if payload.get("s") != number:
            raise DomainError(f"qr: this code is for {payload.get('s') or 'a pass'}, not {number}")
        signed = payload
        try:  # not on the strength of a gate clock behind the office's (sync.qr)
            svc.read(lambda c: qr.admit(c, signed, now))
        except qr.QrRefused as e:
            log.warning("QR refused at gate %s: %s", scrub(gate or "-"), scrub(e))
            svc.count(f"refused:qr:{e.what}")
            raise

    def job(c: Any) -> dict[str, Any]:
        if payload is not None:
            slips.adopt(c, payload)
        return slips.release(c, svc.epoch, number, who.name, now, gate, body.notes)

    slip = svc.write(job)
    svc.cameras.snap(gate, "slip", number, now)  # the goods as they went out
    return _shown(svc, slip)


@router.post("/slips/{number}/reject")
def reject(
    request: Request, number: str, body: RejectIn, who: Caller = roles("guard")
) -> dict[str, Any]:
    svc = service(request)
    gate = _gate(svc, body.gate)
    now = svc.clock.now()
    slip = svc.write(lambda c: slips.reject(c, svc.epoch, number, who.name, now, gate, body.reason))
    svc.cameras.snap(gate, "slip", number, now)
    return _shown(svc, slip)


@router.post("/slips/{number}/cancel")
def cancel(
    request: Request, number: str, body: CancelIn, who: Caller = roles("admin")
) -> dict[str, Any]:
    svc = service(request)
    slip = svc.write(
        lambda c: slips.cancel(c, svc.epoch, number, who.name, svc.clock.now(), body.reason)
    )
    return _shown(svc, slip)


@router.get("/reports/slips", response_model=None)
def report(
    request: Request,
    month: str = Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM"),
    format: Literal["json", "csv"] = "json",
    who: Caller = roles("guard"),
) -> dict[str, Any] | Response:
    """The month's slips per unit: issued, released, rejected, cancelled, expired, open."""
    svc = service(request)
    found = svc.read(lambda c: slips.monthly_report(c, month, svc.cfg.tz, svc.clock.now()))
    if format == "csv":
        return PlainTextResponse(slips.report_csv(found), media_type="text/csv")
    return {"month": month, "items": found}
