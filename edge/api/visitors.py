"""Visitors (来访): register, confirm with the host, let out; who is still inside."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request

from edge import audit, visitors
from edge.api.deps import Caller, roles, service
from edge.api.schemas import ConfirmIn, VisitorIn
from edge.api.views import visitor_view
from edge.errors import DomainError

router = APIRouter(prefix="/api/v1/visitors", tags=["visitors"])
VisitorId = Annotated[int, Path(ge=1, le=2**62)]


def _view(svc: Any, v: dict[str, Any], unmask: bool = True) -> dict[str, Any]:
    return visitor_view(v, svc.cfg.tz, unmask, svc.cfg.rules.name_mask)


@router.post("", status_code=201)
def register(request: Request, body: VisitorIn, who: Caller = roles("guard")) -> dict[str, Any]:
    svc = service(request)
    if body.gate is not None and body.gate not in svc.cfg.gates:
        raise DomainError(f"gate: {body.gate!r} is not one of this node's gates")
    req = visitors.VisitorRequest(
        name=body.name, host_unit=body.host_unit, id_number=body.id_number,
        purpose=body.purpose, plate=body.plate, card=body.card, gate=body.gate,
    )  # fmt: skip

    def job(conn: Any) -> dict[str, Any]:
        vid = visitors.register(conn, req, svc.hasher, who.name, time.time())
        return visitors.get(conn, vid)

    return _view(svc, svc.write(job))


@router.get("")
def listing(
    request: Request,
    who: Caller = roles("guard", "control"),
    inside: bool | None = Query(None, description="true: only those still inside"),
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, max_length=20),
    unmask: bool = Query(False, description="admin only; recorded in the audit log"),
) -> dict[str, Any]:
    svc = service(request)
    if unmask and not who.admin:
        raise HTTPException(403, "only an admin may see personal data unmasked")
    if cursor is not None and not cursor.isdigit():
        raise DomainError("cursor: not a cursor this API gave out")
    before = int(cursor) if cursor else None
    found = svc.read(lambda c: visitors.listing(c, inside, limit + 1, before))
    if unmask:
        svc.write(lambda c: audit.record(c, who.name, "unmask:visitors", f"{len(found)} rows"))
    items = [_view(svc, v, unmask) for v in found[:limit]]
    return {"items": items, "next": str(found[limit - 1]["id"]) if len(found) > limit else None}


@router.post("/{visitor_id}/confirm")
def confirm(
    request: Request, visitor_id: VisitorId, body: ConfirmIn, who: Caller = roles("guard")
) -> dict[str, Any]:
    """The host confirmed (by intercom or phone): the visitor is admitted."""
    svc = service(request)
    v = svc.write(
        lambda c: visitors.confirm(c, svc.epoch, visitor_id, body.how, who.name, time.time())
    )
    return _view(svc, v)


@router.post("/{visitor_id}/exit")
def exit_(request: Request, visitor_id: VisitorId, who: Caller = roles("guard")) -> dict[str, Any]:
    svc = service(request)
    return _view(
        svc, svc.write(lambda c: visitors.exit_(c, svc.epoch, visitor_id, who.name, time.time()))
    )
