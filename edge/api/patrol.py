"""巡查 Patrol: tag reads from a handheld app or a patrol wand's download, and the rounds."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from drivers import patrol_wand
from edge import patrol
from edge.api.deps import Caller, keep_picture, local_day, roles, service
from edge.api.schemas import FaultCloseIn, FaultIn, PatrolReadsIn
from edge.errors import DomainError
from edge.photos import MAX_UPLOAD
from edge.shape import shaped

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/patrol", tags=["patrol"])
FaultId = Annotated[int, Path(ge=1, le=2**62)]


@router.post("/reads", status_code=201)
def reads(request: Request, body: PatrolReadsIn, who: Caller = roles("guard")) -> dict:
    """Tag reads a handheld stored (``at``: when each was read; default now), by the guard
    logged in."""
    svc = service(request)
    now = svc.clock.now()
    got = [patrol.Read(r.tag, min(r.at or now, now), who.name, body.device) for r in body.reads]
    return svc.write(lambda c: patrol.record(c, svc.cfg, got, "api", now))


@router.post("/upload", status_code=201, max_body_size=patrol_wand.MAX_BYTES)
async def upload(request: Request, who: Caller = roles("guard"),
                 device: str | None = Query(None, max_length=64)) -> dict:  # fmt: skip
    """A patrol wand's download as its software saved it (``seq,tag,time`` lines, the
    wand's local time): every read kept, or none, with each bad line named. The reads are
    the guard's who read his own staff card on the wand before them, else the uploader's;
    a round judged before that the reads complete is judged again."""
    svc = service(request)
    data = await request.body()
    try:
        found = await run_in_threadpool(patrol_wand.parse, data)
    except patrol_wand.WandError as e:  # every bad line is in the log; the first is said
        log.warning("patrol upload by %s refused: %s", who.name, "; ".join(e.problems))
        raise DomainError(f"upload: the wand's download has {len(e.problems)} bad lines; "
                          f"the first: {e.problems[0]}") from None  # fmt: skip
    now, tz = svc.clock.now(), svc.cfg.tz
    got = [patrol.Read(r.tag, min(r.at.replace(tzinfo=tz).timestamp(), now), None, device)
           for r in found]  # fmt: skip
    return svc.write(lambda c: patrol.record(c, svc.cfg, got, "wand", now, who.name))


@router.get("/rounds")
def rounds(
    request: Request,
    who: Caller = roles("guard", "control"),
    day: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="default today"),
) -> dict[str, Any]:
    """A day's rounds as judged (each: route, planned time, status, checkpoints read and
    missing, by whom), and the routes' plans still to come today."""
    svc = service(request)
    tz = svc.cfg.tz
    start = local_day(day, tz, svc.clock.now())
    end = start + timedelta(days=1)
    found = svc.read(lambda c: patrol.rounds_between(c, start.timestamp(), end.timestamp()))
    return {"items": shaped(found, tz), "next": None}


@router.get("/reads")
def recent(request: Request, who: Caller = roles("guard", "control"),
           limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:  # fmt: skip
    """The latest tag reads, newest first (a tag of no checkpoint has ``checkpoint`` null)."""
    svc = service(request)
    now = svc.clock.now()
    found = svc.read(lambda c: patrol.reads_between(c, 0, now + 1, limit))
    return {"items": shaped(found, svc.cfg.tz), "next": None}


@router.post("/photos", status_code=201, max_body_size=MAX_UPLOAD)
async def photo(request: Request, who: Caller = roles("guard", "control")) -> dict[str, Any]:
    """A picture of a fault (JPEG or PNG), kept like a photo; a notice names it."""
    return {"photo": await keep_picture(request, who, "fault_photo")}


@router.post("/faults", status_code=201)
def report(request: Request, body: FaultIn, who: Caller = roles("guard", "control")) -> dict:
    """故障通知单: a fault found, where and what (``category``: fire, lift, lighting, water,
    access, cleaning, other), with a picture and the round it was found on, if any."""
    svc = service(request)
    fields = body.model_dump()
    return shaped(svc.write(lambda c: patrol.report_fault(c, fields, svc.photos.has, who.name,
                                                          svc.clock.now(), svc.cfg.tz)),
                  svc.cfg.tz)  # fmt: skip


@router.get("/faults")
def fault_list(request: Request, who: Caller = roles("guard", "control"),
               open_only: bool = Query(False, alias="open"),
               limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:  # fmt: skip
    svc = service(request)
    found = svc.read(lambda c: patrol.faults(c, open_only, limit))
    return {"items": shaped(found, svc.cfg.tz), "next": None}


@router.post("/faults/{fault_id}/receive")
def receive(request: Request, fault_id: FaultId, who: Caller = roles("control")) -> dict:
    """The duty officer received the notice."""
    svc = service(request)
    now = svc.clock.now()
    return shaped(svc.write(lambda c: patrol.receive_fault(c, fault_id, who.name, now)),
                  svc.cfg.tz)  # fmt: skip


@router.post("/faults/{fault_id}/close")
def close(request: Request, fault_id: FaultId, body: FaultCloseIn,
          who: Caller = roles("guard", "control")) -> dict[str, Any]:  # fmt: skip
    """Repaired, by whom (the repair team's person), with the time."""
    svc = service(request)
    now = svc.clock.now()
    return shaped(svc.write(lambda c: patrol.close_fault(c, fault_id, body.repaired_by,
                                                         body.notes, who.name, now)),
                  svc.cfg.tz)  # fmt: skip
