"""The control room: the alarm queue and its procedures, the duty log, the handover."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from edge import alarms, db, dutylog, handover, notify, shifts, stats, views
from edge.api.deps import CURSOR, Caller, local_day, page, roles, service
from edge.api.schemas import (
    AlarmIn,
    DispatchIn,
    DutyLogIn,
    EmergencyIn,
    HandoverIn,
    ReasonIn,
    ResolveIn,
    ShelveIn,
)
from edge.errors import DomainError
from edge.passes import parse_time
from edge.views import event_view, handover_view, iso

router = APIRouter(prefix="/api/v1", tags=["control room"])
Id = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/alarms")
def queue(
    request: Request,
    who: Caller = roles("control"),
    closed: bool = Query(False, description="include closed alarms (newest first)"),
    shelved: bool = Query(False, description="include shelved alarms"),
    limit: int = Query(100, ge=1, le=1000),
    cursor: int | None = CURSOR,
) -> dict[str, Any]:
    """Open alarms, highest priority first, then oldest (closed ones newest first, in pages)."""
    svc = service(request)
    now = svc.clock.now()
    found = svc.read(lambda c: alarms.listing(c, closed, shelved, now, limit + 1, cursor))
    shown, after = page(found, limit)
    items = [views.alarm_view(a, now, svc.cfg.tz) for a in shown]
    return {"items": items, "next": after if closed else None}


@router.post("/alarms", status_code=201)
def help_request(request: Request, body: AlarmIn, who: Caller = roles("control")) -> dict[str, Any]:
    """A help request (求助) or an alarm the officer enters: first_aid, theft, fight, robbery,
    flood, fire, repair, complaint, …, with floor and room."""
    svc = service(request)
    if body.gate is not None:
        svc.cfg.known_gate(body.gate)
    (alarm,) = svc.control.change(
        lambda c: [
            alarms.raise_alarm(
                c, svc.cfg.alarms, body.type, "manual", svc.clock.now(), location=body.location,
                gate=body.gate, floor=body.floor, room=body.room, notes=body.notes,
                priority=body.priority, by=who.name,
            )
        ]
    )  # fmt: skip
    return alarm


@router.get("/alarms/stats")
def workload(
    request: Request,
    who: Caller = roles("control"),
    since: str | None = Query(None, max_length=40, description="ISO 8601; default 24 h ago"),
    until: str | None = Query(None, max_length=40, description="ISO 8601; default now"),
) -> dict[str, Any]:
    """EEMUA 191 / ISA-18.2 measures: alarms per 10 minutes per operator, time in flood,
    stale alarms, chattering sources, priority mix, longest time unacknowledged."""
    svc = service(request)
    now = svc.clock.now()
    end = parse_time(until, svc.cfg.tz) if until else now
    start = parse_time(since, svc.cfg.tz) if since else end - 24 * 3600
    if end <= start:
        raise DomainError("until: must be after since")
    return svc.read(lambda c: stats.workload(c, start, end, now, svc.cfg.tz))


@router.get("/alarms/{alarm_id}")
def one(request: Request, alarm_id: Id, who: Caller = roles("control")) -> dict[str, Any]:
    """The alarm, its history, the access events at its gate in the 5 minutes before, and
    the notifications sent of it off the box."""
    svc = service(request)
    now = svc.clock.now()

    def read(c: Any) -> dict[str, Any]:
        a = alarms.get(c, alarm_id)
        shown = views.alarm_view(a, now, svc.cfg.tz)
        shown["history"] = [
            {"at": iso(r[0], svc.cfg.tz), "by": r[1], "action": r[2], "detail": r[3]}
            for r in c.execute(
                "SELECT at, by, action, detail FROM alarm_log WHERE alarm_id = ? ORDER BY id",
                (alarm_id,),
            )
        ]
        shown["context"] = [
            event_view(e, svc.cfg.tz, False, svc.cfg.rules.name_mask) for e in alarms.context(c, a)
        ]
        shown["notifications"] = notify.of_alarm(c, alarm_id, svc.cfg.tz)  # off the box
        return shown

    return svc.read(read)


def _change(svc: Any, alarm_id: int, fn: Callable[[Any], None]) -> dict[str, Any]:
    """Work one alarm in the writer; its new state, once committed and published."""

    def job(c: Any) -> list[int]:
        fn(c)
        return [alarm_id]

    (alarm,) = svc.control.change(job)
    return alarm  # type: ignore[no-any-return]


@router.post("/alarms/{alarm_id}/ack")
def ack(request: Request, alarm_id: Id, who: Caller = roles("control")) -> dict[str, Any]:
    svc = service(request)
    return _change(svc, alarm_id, lambda c: alarms.ack(c, alarm_id, who.name, svc.clock.now()))


@router.post("/alarms/{alarm_id}/dispatch")
def dispatch(
    request: Request, alarm_id: Id, body: DispatchIn, who: Caller = roles("control")
) -> dict[str, Any]:
    svc = service(request)
    return _change(
        svc, alarm_id, lambda c: alarms.dispatch(c, alarm_id, body.to, who.name, svc.clock.now())
    )


@router.post("/alarms/{alarm_id}/steps/{step}")
def tick(
    request: Request,
    alarm_id: Id,
    step: Annotated[str, Path(pattern="^[0-9a-f]{8}$", description="the step's id")],
    who: Caller = roles("control"),
) -> dict[str, Any]:
    """Tick a procedure step (any order: nothing stands before a call to 110/119/120)."""
    svc = service(request)
    return _change(
        svc, alarm_id, lambda c: alarms.tick(c, alarm_id, step, who.name, svc.clock.now())
    )


@router.post("/alarms/{alarm_id}/resolve")
def resolve(
    request: Request, alarm_id: Id, body: ResolveIn, who: Caller = roles("control")
) -> dict[str, Any]:
    svc = service(request)
    return _change(
        svc,
        alarm_id,
        lambda c: alarms.resolve(
            c, alarm_id, body.resolution, body.notes, who.name, svc.clock.now()
        ),
    )


@router.post("/alarms/{alarm_id}/force-close")
def force_close(
    request: Request, alarm_id: Id, body: ReasonIn, who: Caller = roles("admin")
) -> dict[str, Any]:
    """A supervisor closes an alarm that cannot end by itself, with the reason (audited)."""
    svc = service(request)
    return _change(
        svc,
        alarm_id,
        lambda c: alarms.force_close(c, alarm_id, body.reason or "", who.name, svc.clock.now()),
    )


@router.post("/alarms/{alarm_id}/shelve")
def shelve(
    request: Request, alarm_id: Id, body: ShelveIn, who: Caller = roles("control")
) -> dict[str, Any]:
    """Hide it from the queue for a while, never past the end of the shift."""
    svc = service(request)
    now = svc.clock.now()
    shift_end = shifts.outgoing(svc.cfg.shifts, now, svc.cfg.tz).end
    until = now + body.minutes * 60
    return _change(
        svc,
        alarm_id,
        lambda c: alarms.shelve(
            c, alarm_id, until, body.reason, who.name, who.admin, now, shift_end
        ),
    )


@router.post("/alarms/{alarm_id}/unshelve")
def unshelve(request: Request, alarm_id: Id, who: Caller = roles("control")) -> dict[str, Any]:
    svc = service(request)
    return _change(svc, alarm_id, lambda c: alarms.unshelve(c, alarm_id, who.name, svc.clock.now()))


@router.post("/alarms/{alarm_id}/emergency-record")
def emergency(
    request: Request, alarm_id: Id, body: EmergencyIn, who: Caller = roles("control")
) -> dict[str, Any]:
    """紧急事件处理记录表: cause, person responsible, remedial and preventive measures; the
    results may be added later by posting them alone."""
    svc = service(request)
    fields = body.model_dump(exclude_none=True)
    svc.write(lambda c: alarms.emergency_record(c, alarm_id, fields, who.name, svc.clock.now()))
    rows = svc.read(
        lambda c: c.execute(
            "SELECT cause, responsible, remedial, preventive, results, by, at, results_by "
            "FROM emergency_records WHERE alarm_id = ?",
            (alarm_id,),
        ).fetchone()
    )
    keys = ("cause", "responsible", "remedial", "preventive", "results", "by", "at", "results_by")
    record = dict(zip(keys, rows, strict=True))
    return record | {"alarm_id": alarm_id, "at": iso(record["at"], svc.cfg.tz)}


@router.get("/audit")
def audit_log(
    request: Request,
    who: Caller = roles("admin"),
    limit: int = Query(50, ge=1, le=500),
    cursor: int | None = CURSOR,
) -> dict[str, Any]:
    """The audit log, newest first: who saw personal data unmasked, who issued, revoked,
    purged or closed what by force (``gatehouse audit verify`` checks its chain)."""
    svc = service(request)
    sql = "SELECT id, at, by, action, subject, hash FROM audit_log"
    args: tuple[Any, ...] = (limit + 1,)
    if cursor:
        sql += " WHERE id < ?"
        args = (cursor, limit + 1)
    found = svc.read(lambda c: db.rows(c, sql + " ORDER BY id DESC LIMIT ?", args))
    shown, after = page(found, limit)
    return {"items": [r | {"at": iso(r["at"], svc.cfg.tz)} for r in shown], "next": after}


@router.get("/duty-log")
def duty_log(
    request: Request,
    who: Caller = roles("control", "guard"),
    day: str | None = Query(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="YYYY-MM-DD"),
    shift: str | None = Query(None, max_length=40, description="a shift name; with day"),
) -> dict[str, Any]:
    """By day (default today), or by one shift of that day."""
    svc = service(request)
    tz = svc.cfg.tz
    start_dt = local_day(day, tz, svc.clock.now())
    start, end = start_dt.timestamp(), (start_dt + timedelta(days=1)).timestamp()
    if shift:
        match = [s for s in svc.cfg.shifts if s.name == shift]
        if not match:
            raise DomainError(f"shift: {shift!r} is not one of the configured shifts")
        sh = match[0]
        start = datetime.combine(start_dt.date(), sh.start, tz).timestamp()
        end_day = start_dt.date() + timedelta(days=1 if sh.end <= sh.start else 0)
        end = datetime.combine(end_day, sh.end, tz).timestamp()
    entries = svc.read(lambda c: dutylog.between(c, start, end))
    items = [e | {"at": iso(e["at"], tz)} for e in reversed(entries)]
    return {"items": items, "next": None, "from": iso(start, tz), "until": iso(end, tz)}


@router.post("/duty-log", status_code=201)
def write_log(request: Request, body: DutyLogIn, who: Caller = roles("control", "guard")) -> dict:
    svc = service(request)
    now = svc.clock.now()
    entry_id = svc.write(lambda c: dutylog.add(c, now, who.name, body.category, body.text))
    return {"id": entry_id, "at": iso(now, svc.cfg.tz), "by": who.name,
            "category": body.category, "text": body.text}  # fmt: skip


@router.post("/handovers", status_code=201)
def make_handover(
    request: Request, body: HandoverIn, who: Caller = roles("control", "guard")
) -> dict[str, Any]:
    """The outgoing officer makes the handover report from live state."""
    svc = service(request)

    def job(c: Any) -> dict[str, Any]:
        hid = handover.create(c, svc.cfg, who.name, who.admin, svc.clock.now(), body.items,
                              body.notes, body.override_reason)  # fmt: skip
        return handover.get(c, hid)

    return handover_view(svc.write(job), svc.cfg.tz)


@router.get("/handovers")
def handovers(
    request: Request,
    who: Caller = roles("control", "guard"),
    limit: int = Query(5, ge=1, le=100),
) -> dict[str, Any]:
    """The latest handovers, newest first: the one waiting for the incoming officer's
    signature is at the top."""
    svc = service(request)
    found = svc.read(lambda c: handover.latest(c, limit))
    return {"items": [handover_view(h, svc.cfg.tz) for h in found], "next": None}


@router.get("/handovers/{handover_id}")
def read_handover(
    request: Request, handover_id: Id, who: Caller = roles("control", "guard")
) -> dict:
    svc = service(request)
    return handover_view(svc.read(lambda c: handover.get(c, handover_id)), svc.cfg.tz)


@router.post("/handovers/{handover_id}/sign")
def sign(request: Request, handover_id: Id, who: Caller = roles("control", "guard")) -> dict:
    """The outgoing officer signs, then the incoming one."""
    svc = service(request)
    h = svc.write(lambda c: handover.sign(c, handover_id, who.name, svc.clock.now()))
    return handover_view(h, svc.cfg.tz)
