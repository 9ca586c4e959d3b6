"""Visitors (来访): register, confirm with the host, let out; who is still inside."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from edge import notify, visitors
from edge.api.deps import (
    CURSOR,
    UNMASK,
    Caller,
    lookup_allowed,
    lookup_done,
    page,
    roles,
    service,
    unmasked,
)
from edge.api.schemas import ArriveIn, ConfirmIn, VisitorIn
from edge.errors import NotFound
from edge.privacy import mask_name
from edge.shape import shaped
from edge.views import visitor_view

router = APIRouter(prefix="/api/v1/visitors", tags=["visitors"])
VisitorId = Annotated[int, Path(ge=1, le=2**62)]


def _view(svc: Any, v: dict[str, Any], unmask: bool = True) -> dict[str, Any]:
    return visitor_view(v, svc.cfg.tz, unmask, svc.cfg.rules.name_mask)


@router.post("", status_code=201)
def register(request: Request, body: VisitorIn, who: Caller = roles("guard")) -> dict[str, Any]:
    svc = service(request)
    if body.gate is not None:
        svc.cfg.known_gate(body.gate)
    req = visitors.VisitorRequest(
        name=body.name, host_unit=body.host_unit, id_number=body.id_number,
        purpose=body.purpose, plate=body.plate, card=body.card, gate=body.gate,
    )  # fmt: skip

    def job(conn: Any) -> dict[str, Any]:
        vid = visitors.register(conn, req, svc.hasher, who.name, svc.clock.now())
        return visitors.get(conn, vid)

    return _view(svc, svc.write(job))


@router.get("/expected")
def expected(request: Request, who: Caller = roles("guard", "control")) -> dict[str, Any]:
    """Today's announced visitors (预约访客), names masked, each with its state: waiting,
    inside, overstaying, left, cancelled. The codes are not shown: the visitor brings it."""
    svc = service(request)
    now, tz = svc.clock.now(), svc.cfg.tz
    found = svc.read(lambda c: visitors.expected_today(c, now, tz))
    mask = svc.cfg.rules.name_mask
    items = [{k: e[k] for k in ("id", "host_unit", "category", "valid_from", "valid_until",
                                "entries", "used", "state")} | {"name": mask_name(e["name"], mask)}
             for e in found]  # fmt: skip
    return {"items": shaped(items, tz), "next": None}


@router.post("/arrive", status_code=201)
def arrive(request: Request, body: ArriveIn, who: Caller = roles("guard")) -> dict[str, Any]:
    """An announced visitor's code: admitted inside its window while entries are left. A
    code typed by hand is counted and rate-limited like a card number: a code is a key."""
    svc = service(request)
    lookup_allowed(svc, who)
    if body.gate is not None:
        svc.cfg.known_gate(body.gate)

    def admit(c: Any) -> dict[str, Any]:  # the host is told in the same transaction
        now = svc.clock.now()
        v = visitors.arrive(c, svc.epoch, body.code, body.gate, who.name, now)
        notify.visitor_arrived(c, svc.cfg.notify, v, now, svc.cfg.tz)
        return v

    try:
        v = svc.write(admit)
    except NotFound:
        lookup_done(svc, who, "visitor_code", f"****{body.code[-2:]}", False)
        raise
    lookup_done(svc, who, "visitor_code", f"****{body.code[-2:]}", True)
    return _view(svc, v, unmask=False)


@router.get("/units")
def units(request: Request, who: Caller = roles("guard", "control")) -> dict[str, Any]:
    """The estate's units as the office lists them (empty: no list, any unit is taken)."""
    svc = service(request)
    return {"items": svc.read(visitors.units), "next": None}


@router.get("")
def listing(
    request: Request,
    who: Caller = roles("guard", "control"),
    inside: bool | None = Query(None, description="true: only those still inside"),
    limit: int = Query(50, ge=1, le=500),
    cursor: int | None = CURSOR,
    unmask: bool = UNMASK,
) -> dict[str, Any]:
    svc = service(request)
    found = svc.read(lambda c: visitors.listing(c, inside, limit + 1, cursor))
    whole = unmasked(svc, who, unmask, "visitors", len(found))
    shown, after = page(found, limit)
    return {"items": [_view(svc, v, whole) for v in shown], "next": after}


@router.post("/{visitor_id}/confirm")
def confirm(
    request: Request, visitor_id: VisitorId, body: ConfirmIn, who: Caller = roles("guard")
) -> dict[str, Any]:
    """The host confirmed (by intercom or phone): the visitor is admitted. The answer names
    the visitor masked: an id is a number anyone can count through (the list shows them)."""
    svc = service(request)
    v = svc.write(
        lambda c: visitors.confirm(c, svc.epoch, visitor_id, body.how, who.name, svc.clock.now())
    )
    return _view(svc, v, unmask=False)


@router.post("/{visitor_id}/exit")
def exit_(request: Request, visitor_id: VisitorId, who: Caller = roles("guard")) -> dict[str, Any]:
    svc = service(request)
    return _view(
        svc,
        svc.write(lambda c: visitors.exit_(c, svc.epoch, visitor_id, who.name, svc.clock.now())),
        unmask=False,  # as confirm: by a countable id, so masked
    )
