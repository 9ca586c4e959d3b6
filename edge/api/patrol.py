"""巡查 Patrol: tag reads from a handheld app or a patrol wand's download, and the rounds."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from drivers import patrol_wand
from edge import patrol
from edge.api.deps import Caller, local_day, roles, service
from edge.api.schemas import PatrolReadsIn
from edge.errors import DomainError
from edge.shape import shaped

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/patrol", tags=["patrol"])


@router.post("/reads", status_code=201)
def reads(request: Request, body: PatrolReadsIn, who: Caller = roles("guard")) -> dict:
    """Tag reads a handheld stored (``at``: when each was read; default now), by the guard
    logged in."""
    svc = service(request)
    now = svc.clock.now()
    got = [patrol.Read(r.tag, min(r.at or now, now), who.name, body.device) for r in body.reads]
    return svc.write(lambda c: patrol.record(c, svc.cfg.patrol, got, "api", now))


@router.post("/upload", status_code=201, max_body_size=patrol_wand.MAX_BYTES)
async def upload(request: Request, who: Caller = roles("guard"),
                 device: str | None = Query(None, max_length=64)) -> dict:  # fmt: skip
    """A patrol wand's download as its software saved it (``seq,tag,time`` lines, the
    wand's local time): every read kept, or none, with each bad line named."""
    svc = service(request)
    data = await request.body()
    try:
        found = await run_in_threadpool(patrol_wand.parse, data)
    except patrol_wand.WandError as e:  # every bad line is in the log; the first is said
        log.warning("patrol upload by %s refused: %s", who.name, "; ".join(e.problems))
        raise DomainError(f"upload: the wand's download has {len(e.problems)} bad lines; "
                          f"the first: {e.problems[0]}") from None  # fmt: skip
    now, tz = svc.clock.now(), svc.cfg.tz
    got = [patrol.Read(r.tag, min(r.at.replace(tzinfo=tz).timestamp(), now), who.name, device)
           for r in found]  # fmt: skip
    return svc.write(lambda c: patrol.record(c, svc.cfg.patrol, got, "wand", now))


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
