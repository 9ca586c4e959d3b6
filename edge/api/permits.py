"""Renovation at the gate: the permits held, rectification notices, workers still inside."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from edge import permits
from edge.api.deps import Caller, roles, service
from edge.api.schemas import NoticeCloseIn, NoticeIn
from edge.clock import iso
from edge.errors import DomainError
from edge.passes import PassError, parse_time
from edge.shape import shaped

router = APIRouter(tags=["permits"])
NoticeId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/api/v1/permits")
def held(request: Request, who: Caller = roles("guard", "control")) -> dict[str, Any]:
    """The renovation permits this gate holds (from the office), with their status."""
    svc = service(request)
    return shaped({"items": svc.read(permits.permits), "next": None}, svc.cfg.tz)


@router.get("/api/v1/workers/inside")
def inside(request: Request, who: Caller = roles("guard", "control")) -> dict[str, Any]:
    """The workers let in today who have not gone out (names masked), and the end of the
    working day (``[permits] work_ends``)."""
    svc = service(request)
    now, tz = svc.clock.now(), svc.cfg.tz
    found = svc.read(lambda c: permits.workers_inside(c, now, tz, svc.cfg.rules.name_mask))
    return {"items": shaped(found, tz), "work_ends": svc.cfg.permits.work_ends.strftime("%H:%M"),
            "next": None}  # fmt: skip


@router.post("/api/v1/rectifications", status_code=201)
def issue(request: Request, body: NoticeIn, who: Caller = roles("guard")) -> dict[str, Any]:
    """整改通知单: what is to be put right at a unit, by when."""
    svc = service(request)
    try:
        deadline = parse_time(body.deadline, svc.cfg.tz)
    except PassError:
        raise DomainError(f"deadline: {body.deadline!r} is not an ISO 8601 time") from None
    fields = body.model_dump() | {"deadline": deadline}
    notice = svc.write(lambda c: permits.issue_notice(c, svc.epoch, fields, who.name,
                                                      svc.clock.now(), svc.cfg.tz))  # fmt: skip
    return _view(svc, notice)


@router.get("/api/v1/rectifications")
def notices(
    request: Request,
    who: Caller = roles("guard", "control"),
    open_only: bool = Query(False, alias="open"),
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    svc = service(request)
    found = svc.read(lambda c: permits.notices(c, open_only, limit))
    return {"items": [_view(svc, n) for n in found], "next": None}


@router.post("/api/v1/rectifications/{notice_id}/close")
def close(request: Request, notice_id: NoticeId, body: NoticeCloseIn,
          who: Caller = roles("guard")) -> dict[str, Any]:  # fmt: skip
    """Re-inspected and found in order."""
    svc = service(request)
    now = svc.clock.now()
    notice = svc.write(lambda c: permits.close_notice(c, svc.epoch, notice_id, body.inspected_by,
                                                      body.notes, who.name, now))  # fmt: skip
    return _view(svc, notice)


def _view(svc: Any, n: dict[str, Any]) -> dict[str, Any]:
    now = svc.clock.now()
    state = "closed" if n["closed_at"] else ("overdue" if now > n["deadline"] else "open")
    return shaped(n, svc.cfg.tz) | {"deadline": iso(n["deadline"], svc.cfg.tz), "state": state}
