"""The control room's alarm queue: one alarm per condition, worked through its procedure.

Sources: alarm inputs and intercoms on MQTT, the gate itself (a reader gone silent, one
card denied again and again, a manual opening), and help requests (求助) entered by the
officer. A source that chatters folds into its open alarm with a count. An alarm nobody
acknowledges escalates, and again. Every change is committed, logged in ``alarm_log`` and
then published on ``alarm/<id>`` — in that order.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from edge import audit, db, dutylog, outbox, store
from edge.config import STAGES, AlarmsCfg
from edge.errors import Conflict, DomainError, NotFound
from edge.models import Alarm, AlarmDeadline, AlarmLog, EmergencyRecord
from edge.snapshots import JOIN_COLUMNS

DEVICE_TYPES = (
    "fire", "smoke", "door_forced", "door_held", "intrusion", "tamper", "power_fail",
    "intercom_emergency", "reader_silent", "camera_offline", "camera_frozen",
    "camera_covered", "repeated_denial", "manual_override", "lookup_enumeration",
    "sync_gap", "sync_conflict",  # the office sync found records lost or rewritten
    "key_overdue", "key_lost",  # the key cabinet's loans (edge.keys)
    "patrol_missed",  # a patrol round not done in its time (edge.patrol)
    "contact_stuck",  # a door contact that grants never move (edge.door)
    "unknown_type",  # an alarm input of a type nobody declared: raised, never dropped
)  # fmt: skip
HELP_TYPES = ("first_aid", "theft", "fight", "robbery", "flood", "fire", "repair", "complaint",
              "collective_complaint")  # fmt: skip
# 特殊求助 go to the director, general ones to the customer-service supervisor (000 §八.13);
# so does a complaint of 5 households or more (000 §八.10)
SPECIAL_HELP = ("first_aid", "theft", "fight", "robbery", "flood", "fire",
                "collective_complaint")  # fmt: skip
LIFE_SAFETY = ("fire", "smoke", "intercom_emergency", "first_aid", "robbery")
FAULTS = ("tamper", "power_fail", "reader_silent", "camera_offline", "camera_frozen",
          "camera_covered", "contact_stuck")  # fmt: skip

DEFAULT_PRIORITY: dict[str, int] = {
    "fire": 1, "smoke": 1, "intercom_emergency": 1, "first_aid": 1, "robbery": 1,
    "door_forced": 2, "intrusion": 2, "theft": 2, "fight": 2, "flood": 2, "tamper": 2,
    "unknown_type": 2,  # it may be a fire spelt wrong: not left at the bottom of the queue
    "key_lost": 2,  # a door anyone holding the key can open, until its lock is changed
}  # fmt: skip  # everything else: 3

RESOLUTIONS = (
    "genuine_handled",  # dealt with on site
    "genuine_external",  # 110 / 119 / 120 took it over
    "false_device",  # a faulty detector or reader
    "false_user",  # someone's mistake (a door propped by a resident)
    "false_environment",  # wind, animals, steam
    "test",
    "duplicate",
)

# Procedures from the manuals (000 §八.13, GB 25506 fire-room practice); any step may be
# ticked at any time, so nothing stands between an operator and a call to 110/119/120.
DEFAULT_CHECKLISTS: dict[str, tuple[str, ...]] = {
    "first_aid": (
        "record floor and room",
        "send the nearest staff member",
        "staff confirmed back to the control room and the director",
        "call 120",
        "duty guard meets the ambulance at the gate",
        "notify relatives",
    ),
    "fire": (
        "confirm by the fastest means (camera, nearest guard)",
        "linkage controller set to automatic",
        "call 119: address, location, what is burning, size, caller and phone",
        "start the evacuation plan",
        "report to the director",
        "keep the gate lane open for fire engines",
    ),
    "door_forced": (
        "check the camera",
        "send a guard",
        "compare with the access events at the gate before it",
        "record what was found",
    ),
    "intercom_emergency": (
        "call the intercom back",
        "send staff",
        "call 120 or 110 if needed",
        "record what happened",
    ),
    "robbery": ("send at least two guards", "call 110", "keep the video", "record"),
    "theft": ("send a guard", "call 110 if confirmed", "keep the video", "record items"),
    "fight": ("send at least two guards", "call 110 if weapons or injuries", "call 120 if injured"),
    "flood": ("close the valve", "call the engineer on duty", "check lifts and electrics"),
    "repair": ("record the request", "notify the customer-service supervisor", "confirm done"),
    "sync_gap": (
        "tell the estate's IT person: records of this gate are missing at the office",
        "keep this PC and its backups as they are",
        "record what was found",
    ),
    "sync_conflict": (
        "tell the estate's IT person: this gate's database was rolled back or copied",
        "keep this PC and its backups as they are",
        "record what was found",
    ),
    "patrol_missed": (
        "call the guard on the round",
        "send someone to the checkpoints not read",
        "record why the round was not done",
    ),
    "door_held": (
        "check the camera",
        "ask the guard at the gate to close it",
        "record who left it open",
    ),
    "contact_stuck": (
        "ask the guard at the gate whether the barrier moves",
        "call the engineer on duty to check the contact and its wiring",
        "record what was found",
    ),
    "key_overdue": (
        "call the borrower and ask for the keys back",
        "record what the borrower said",
    ),
    "key_lost": (
        "tell the unit's owner or the department the key opens",
        "have the lock changed, at the cost of whoever lost the key",
        "record the lock change in the owner's key register",
    ),
    "complaint": (
        "record the complaint",
        "notify the customer-service supervisor",
        "answer the resident within 2 hours",
    ),
    "collective_complaint": (
        "record the complaint and the households that made it",
        "report to the director within 2 hours",
        "record the answer given",
    ),
}
DEFAULT_CHECKLISTS["smoke"] = DEFAULT_CHECKLISTS["fire"]
DEFAULT_CHECKLISTS["unknown_type"] = (
    "send someone to the place the panel names",
    "handle it as the alarm it turns out to be",
    "tell the IT person: the panel sends a type not declared",
)
GENERIC_CHECKLIST = ("verify", "act", "record")
STANDING_AFTER_S = 24 * 3600
# the workflow's states short of closed, spelt out so a query can use ix_alarms_state
OPEN_STATES = ("new", "acknowledged", "dispatched", "resolved")


def declared(kind: str, cfg: AlarmsCfg) -> bool:
    """Whether ``kind`` is an alarm type: built in, or a site's own, declared in the config
    with its priority or its procedure ([alarms.priorities], [alarms.checklists])."""
    return (
        kind in DEVICE_TYPES
        or kind in HELP_TYPES
        or kind in cfg.priorities
        or kind in cfg.checklists
    )


def priority_of(kind: str, cfg: AlarmsCfg) -> int:
    return cfg.priorities.get(kind, DEFAULT_PRIORITY.get(kind, 3))


def step_id(step: str) -> str:
    """A step's address: a short hash of its text. It does not move when a procedure gains,
    loses or reorders steps, it is the same in every alarm of the type, and an alarm stored
    before steps had ids gets the same one on reading. A procedure's steps are distinct
    (the config refuses a repeated one), so the id is unique within an alarm."""
    return hashlib.blake2s(step.encode(), digest_size=4).hexdigest()


def checklist_of(kind: str, cfg: AlarmsCfg) -> list[dict[str, Any]]:
    steps = cfg.checklists.get(kind) or DEFAULT_CHECKLISTS.get(kind, GENERIC_CHECKLIST)
    return [{"id": step_id(s), "step": s, "done_at": None, "by": None} for s in steps]


def escalation_due(a: dict[str, Any], now: float, cfg: AlarmsCfg) -> bool:
    """An alarm nobody has acknowledged escalates after its priority's limit, then again
    after as long again. A shelved or closed alarm does not."""
    if a["acked_at"] is not None or a["state"] == "closed" or shelved(a, now):
        return False
    since = a["escalated_at"] or a["raised_at"]
    return now - since >= cfg.escalate_after_s.get(a["priority"], DEFAULT_ESCALATE_AFTER_S)


def shelved(a: dict[str, Any], now: float) -> bool:
    return a["shelved_until"] is not None and a["shelved_until"] > now


def isa_state(a: dict[str, Any], now: float) -> str:
    """The ISA-18.2 display state, derived from the sub-states."""
    if shelved(a, now):
        return "shelved"
    if a["active"]:
        return "unacknowledged" if a["acked_at"] is None else "acknowledged"
    return "rtn_unacknowledged" if a["acked_at"] is None else "normal"


def _log(
    conn: sqlite3.Connection,
    alarm_id: int,
    now: float,
    by: str | None,
    action: str,
    detail: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """The alarm's log, and the change sent to the office (``extra``: fields of its own,
    a deadline's ``stage`` and ``late_s``)."""
    entry = {"alarm_id": alarm_id, "at": now, "by": by, "action": action, "detail": detail}
    log_id = store.insert(conn, AlarmLog, entry)
    if action == "activated":
        return  # a chattering source: the count reaches the office with the other changes
    a = conn.execute(
        "SELECT uid, type, priority, source, gate, location, floor, room, state, count, "
        "resolution FROM alarms WHERE id = ?",
        (alarm_id,),
    ).fetchone()
    keys = ("uid", "type", "priority", "source", "gate", "location", "floor", "room", "state",
            "count", "resolution")  # fmt: skip
    change = {"alarm_id": alarm_id, "action": action, "by": by, "detail": detail, "at": now}
    payload = dict(zip(keys, a, strict=True)) | change | (extra or {})
    outbox.add(conn, None, "alarm", f"{alarm_id}:{log_id}", payload, now)


def log_action(conn: sqlite3.Connection, alarm_id: int, now: float, action: str,
               detail: str) -> None:  # fmt: skip
    """Something the service did about an alarm (a notification sent or failed), in its
    history and at the office."""
    _log(conn, alarm_id, now, None, action, detail)


def get(conn: sqlite3.Connection, alarm_id: int) -> dict[str, Any]:
    found = db.row(
        conn,
        f"SELECT a.*, {JOIN_COLUMNS} FROM alarms a "
        "LEFT JOIN snapshots s ON s.id = a.snapshot_id WHERE a.id = ?",
        (alarm_id,),
    )
    if found is None:
        raise NotFound(f"no alarm with id {alarm_id}")
    return _loaded(found) | {"deadlines": deadlines_of(conn, alarm_id)}


def raise_alarm(
    conn: sqlite3.Connection,
    cfg: AlarmsCfg,
    kind: str,
    source: str,
    now: float,
    *,
    location: str | None = None,
    gate: str | None = None,
    floor: str | None = None,
    room: str | None = None,
    notes: str | None = None,
    priority: int | None = None,
    by: str | None = None,
) -> int:
    """A condition became active: fold it into the source's open alarm, or open one."""
    row = conn.execute(
        "SELECT id, active, acked_at FROM alarms WHERE source = ? AND type = ? "
        "AND state != 'closed' ORDER BY id DESC LIMIT 1",
        (source, kind),
    ).fetchone()
    if row is not None and source != "manual":
        alarm_id, active, acked_at = row
        if not active and acked_at is not None:
            # ISA-18.2: a new activation after an acknowledged return to normal is a new
            # event: it annunciates again and escalates from now if nobody acknowledges it
            conn.execute(
                "UPDATE alarms SET active = 1, count = count + 1, last_active_at = ?, "
                "acked_at = NULL, acked_by = NULL, escalation_level = 0, escalated_at = ?, "
                "state = CASE state WHEN 'acknowledged' THEN 'new' ELSE state END WHERE id = ?",
                (now, now, alarm_id),
            )
            _log(conn, alarm_id, now, by, "reactivated")
            dutylog.add(conn, now, by or "system", "alarm",
                        f"alarm {alarm_id} ({kind}) active again after it was acknowledged",
                        alarm_id)  # fmt: skip
            return int(alarm_id)
        conn.execute(
            "UPDATE alarms SET active = 1, count = count + 1, last_active_at = ? WHERE id = ?",
            (now, alarm_id),
        )
        _log(conn, alarm_id, now, by, "activated")
        return int(alarm_id)
    route_to = None
    if kind in HELP_TYPES and source == "manual":
        route_to = "director" if kind in SPECIAL_HELP else "service_supervisor"
    alarm_id = store.insert(conn, Alarm, {
        "uid": store.new_id(), "type": kind, "priority": priority or priority_of(kind, cfg),
        "source": source, "location": location, "floor": floor, "room": room, "gate": gate,
        "notes": notes, "route_to": route_to, "raised_by": by, "active": 1, "count": 1,
        "raised_at": now, "last_active_at": now, "state": "new", "escalation_level": 0,
        "checklist": json.dumps(checklist_of(kind, cfg), ensure_ascii=False),
    })  # fmt: skip
    _log(conn, alarm_id, now, by, "raised")
    for stage, minutes in cfg.deadlines.get(kind, {}).items():
        store.insert(conn, AlarmDeadline, {"alarm_id": alarm_id, "stage": stage,
                                           "due_at": now + minutes * 60})  # fmt: skip
    where = " ".join(x for x in (location, floor and f"{floor}F", room) if x)
    dutylog.add(
        conn,
        now,
        by or "system",
        "alarm",
        f"alarm {alarm_id} raised: {kind} {where}".strip(),
        alarm_id,
    )
    return alarm_id


def normal(conn: sqlite3.Connection, source: str, kind: str | None, now: float) -> int | None:
    """The condition returned to normal; a resolved alarm then closes."""
    sql = "SELECT id, state FROM alarms WHERE source = ? AND state != 'closed' AND active = 1"
    args: tuple[Any, ...] = (source,)
    if kind:
        sql += " AND type = ?"
        args = (source, kind)
    row = conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
    if row is None:
        return None
    alarm_id, state = row
    conn.execute("UPDATE alarms SET active = 0, cleared_at = ? WHERE id = ?", (now, alarm_id))
    _log(conn, alarm_id, now, None, "normal")
    if state == "resolved":
        _close(conn, alarm_id, now)
    return int(alarm_id)


def _close(conn: sqlite3.Connection, alarm_id: int, now: float) -> None:
    conn.execute("UPDATE alarms SET state = 'closed', closed_at = ? WHERE id = ?", (now, alarm_id))
    _log(conn, alarm_id, now, None, "closed")
    dutylog.add(conn, now, "system", "alarm", f"alarm {alarm_id} closed", alarm_id)


def force_close(conn: sqlite3.Connection, alarm_id: int, reason: str, by: str, now: float) -> None:
    """A supervisor closes an alarm that cannot end by itself (its device is gone for good,
    a panel stuck active), whatever its state, with the reason: in its log, the duty log and
    the audit log."""
    if not reason.strip():
        raise DomainError("reason: closing an alarm by force needs its reason")
    a = _open(conn, alarm_id)
    if a["active"]:
        conn.execute("UPDATE alarms SET active = 0, cleared_at = ? WHERE id = ?", (now, alarm_id))
    _log(conn, alarm_id, now, by, "force_closed", reason)
    _close(conn, alarm_id, now)
    audit.record(conn, by, "alarm:force_close", f"alarm {alarm_id}: {reason}", now)


WATCHED = ("reader_silent", "camera_offline", "camera_frozen", "camera_covered")


def carried_over(conn: sqlite3.Connection, watched: set[tuple[str, str]], now: float) -> tuple[
    list[tuple[str, str]], list[int]
]:  # fmt: skip
    """At start-up: the service's own watch (readers, cameras) begins with no memory, so the
    alarms of that watch left active by the last run are taken up again. Of those, the
    conditions still watched (``watched``: (source, type)) are returned, to be compared on
    the first tick (a reader back after a restart clears its alarm); those of a device no
    longer configured are closed with a note, and their ids returned."""
    rows = conn.execute(
        f"SELECT id, source, type FROM alarms WHERE state != 'closed' AND active = 1 "
        f"AND type IN ({', '.join('?' * len(WATCHED))})",
        WATCHED,
    ).fetchall()
    kept, closed = [], []
    for alarm_id, source, kind in rows:
        if (source, kind) in watched:
            kept.append((source, kind))
            continue
        conn.execute("UPDATE alarms SET active = 0, cleared_at = ? WHERE id = ?", (now, alarm_id))
        _log(conn, alarm_id, now, None, "retired", f"{source} is no longer configured")
        _close(conn, alarm_id, now)
        closed.append(int(alarm_id))
    return kept, closed


def _open(conn: sqlite3.Connection, alarm_id: int) -> dict[str, Any]:
    a = get(conn, alarm_id)
    if a["state"] == "closed":
        raise Conflict(f"alarm {alarm_id} is closed")
    return a


def ack(conn: sqlite3.Connection, alarm_id: int, by: str, now: float) -> None:
    a = _open(conn, alarm_id)
    if a["acked_at"] is not None:
        raise Conflict(f"alarm {alarm_id} was acknowledged by {a['acked_by']} already")
    conn.execute(
        "UPDATE alarms SET acked_at = ?, acked_by = ?, "
        "state = CASE state WHEN 'new' THEN 'acknowledged' ELSE state END WHERE id = ?",
        (now, by, alarm_id),
    )
    _log(conn, alarm_id, now, by, "acked")
    _met(conn, alarm_id, "acknowledged", now)


def _ack_if_needed(conn: sqlite3.Connection, a: dict[str, Any], by: str, now: float) -> None:
    """Dispatching or resolving an alarm is acknowledging it too."""
    if a["acked_at"] is None:
        ack(conn, a["id"], by, now)


def dispatch(conn: sqlite3.Connection, alarm_id: int, to: str, by: str, now: float) -> None:
    if not to.strip():
        raise DomainError("to: whom was sent")
    a = _open(conn, alarm_id)
    if a["state"] == "resolved":
        raise Conflict(f"alarm {alarm_id} is resolved")
    _ack_if_needed(conn, a, by, now)
    conn.execute(
        "UPDATE alarms SET state = 'dispatched', dispatched_to = ?, dispatched_at = ?, "
        "dispatched_by = ? WHERE id = ?",
        (to.strip(), now, by, alarm_id),
    )
    _log(conn, alarm_id, now, by, "dispatched", to.strip())
    _met(conn, alarm_id, "dispatched", now)


def tick(conn: sqlite3.Connection, alarm_id: int, step: str, by: str, now: float) -> None:
    """Tick a procedure step, named by its id, in any order."""
    a = _open(conn, alarm_id)
    steps = a["checklist"]
    found = next((s for s in steps if s["id"] == step), None)
    if found is None:
        ids = ", ".join(s["id"] for s in steps)
        raise DomainError(f"step: alarm {alarm_id} has no step {step} (its steps: {ids})")
    if found["done_at"] is not None:
        raise Conflict(f"step {found['step']} was ticked by {found['by']} already")
    found |= {"done_at": now, "by": by}
    conn.execute(
        "UPDATE alarms SET checklist = ? WHERE id = ?",
        (json.dumps(steps, ensure_ascii=False), alarm_id),
    )
    _log(conn, alarm_id, now, by, "step", found["step"])


def resolve(
    conn: sqlite3.Connection,
    alarm_id: int,
    resolution: str | None,
    notes: str | None,
    by: str,
    now: float,
) -> None:
    if not resolution:
        raise DomainError(f"resolution: required, one of {', '.join(RESOLUTIONS)}")
    if resolution not in RESOLUTIONS:
        raise DomainError(f"resolution: {resolution!r} is not one of {', '.join(RESOLUTIONS)}")
    a = _open(conn, alarm_id)
    if a["state"] == "resolved":
        raise Conflict(f"alarm {alarm_id} was resolved by {a['resolved_by']} already")
    _ack_if_needed(conn, a, by, now)
    undone = [s["step"] for s in a["checklist"] if s["done_at"] is None]
    conn.execute(
        "UPDATE alarms SET state = 'resolved', resolution = ?, resolution_notes = ?, "
        "resolved_by = ?, resolved_at = ? WHERE id = ?",
        (resolution, notes, by, now, alarm_id),
    )
    _log(conn, alarm_id, now, by, "resolved",
         resolution + (f"; steps not ticked: {', '.join(undone)}" if undone else ""))  # fmt: skip
    _met(conn, alarm_id, "resolved", now)
    if not a["active"] or not returns_to_normal(a):
        if a["active"]:
            conn.execute(
                "UPDATE alarms SET active = 0, cleared_at = ? WHERE id = ?", (now, alarm_id)
            )
        _close(conn, alarm_id, now)


def returns_to_normal(a: dict[str, Any]) -> bool:
    """Whether a "normal" will ever come for this alarm's condition: a detector's or a
    reader's does; a help request, an intercom button or a gate event ends when resolved."""
    return a["source"].startswith(("alarm-input:", "reader:", "camera:"))


def shelve(
    conn: sqlite3.Connection,
    alarm_id: int,
    until: float,
    reason: str,
    by: str,
    admin: bool,
    now: float,
    shift_end: float,
) -> None:
    """Hide an alarm from the queue for a while; never past the end of the shift, and a
    life-safety alarm only with a supervisor (admin)."""
    a = _open(conn, alarm_id)
    if not reason.strip():
        raise DomainError("reason: shelving needs its reason")
    if a["type"] in LIFE_SAFETY and not admin:
        raise DomainError(f"a {a['type']} alarm may be shelved only by a supervisor (admin)")
    if until <= now or until > shift_end:
        raise DomainError("until: must be in the future and no later than the end of this shift")
    conn.execute(
        "UPDATE alarms SET shelved_until = ?, shelved_by = ?, shelve_reason = ? WHERE id = ?",
        (until, by, reason.strip(), alarm_id),
    )
    _log(conn, alarm_id, now, by, "shelved", reason.strip())


def unshelve(conn: sqlite3.Connection, alarm_id: int, by: str, now: float) -> None:
    _open(conn, alarm_id)
    conn.execute("UPDATE alarms SET shelved_until = NULL WHERE id = ?", (alarm_id,))
    _log(conn, alarm_id, now, by, "unshelved")


_DUE_COLUMNS = (
    "SELECT id, priority, state, acked_at, raised_at, escalated_at, shelved_until, "
    "escalation_level, type FROM alarms WHERE acked_at IS NULL AND state != 'closed' "
    "AND (shelved_until IS NULL OR shelved_until <= ?) AND "
)
DEFAULT_ESCALATE_AFTER_S = 600.0


def _possibly_due(
    conn: sqlite3.Connection, cfg: AlarmsCfg, now: float, limit: int
) -> list[dict[str, Any]]:
    """The unacknowledged alarms whose escalation may be due, in id order: per priority, a
    range of ``ix_alarms_awaiting_ack`` (priority, escalated_at, raised_at) — the clock
    runs from ``escalated_at``, else from ``raised_at`` — so a queue of open alarms costs
    the ones that are due, not all of them, each second. ``escalation_due`` decides."""
    eps = 1e-6  # the SQL may take a row or two too many at the limit, never one too few
    found: dict[int, dict[str, Any]] = {}

    def take(where: str, args: tuple[Any, ...]) -> None:
        # the longest-waiting first, at most ``limit`` from each range
        order = " ORDER BY coalesce(escalated_at, raised_at) LIMIT ?"
        for a in db.rows(conn, _DUE_COLUMNS + where + order, (now, *args, limit)):
            found[a["id"]] = a

    limits = dict(cfg.escalate_after_s)
    low, high = min(limits, default=1), max(limits, default=0)
    # a priority the config does not name (none, in practice) has the default limit
    limits |= {p: DEFAULT_ESCALATE_AFTER_S for p in range(low, high + 1) if p not in limits}
    for priority, after in limits.items():
        cutoff = now - after + eps
        take("priority = ? AND escalated_at IS NULL AND raised_at <= ?", (priority, cutoff))
        take("priority = ? AND escalated_at <= ?", (priority, cutoff))
    cutoff = now - DEFAULT_ESCALATE_AFTER_S + eps
    since = "coalesce(escalated_at, raised_at) <= ?"
    take(f"priority < ? AND {since}", (low, cutoff))
    take(f"priority > ? AND {since}", (high, cutoff))
    # the most urgent first: a backlog of P3s never holds a P1's escalation back
    return sorted(
        found.values(), key=lambda a: (a["priority"], a["escalated_at"] or a["raised_at"])
    )


ESCALATE_PER_TICK = 10  # the rest wait a second: the writer is never held long by a backlog


def escalate_due(
    conn: sqlite3.Connection, cfg: AlarmsCfg, now: float, limit: int = ESCALATE_PER_TICK
) -> list[int]:
    """Escalate alarms whose acknowledgement is overdue, at most ``limit`` of them (the
    ticker calls again each second); the ids that changed."""
    changed: list[int] = []
    for a in _possibly_due(conn, cfg, now, limit):
        if len(changed) >= limit:
            break
        if not escalation_due(a, now, cfg):
            continue
        level = a["escalation_level"] + 1
        conn.execute(
            "UPDATE alarms SET escalation_level = ?, escalated_at = ? WHERE id = ?",
            (level, now, a["id"]),
        )
        _log(conn, a["id"], now, None, "escalated", f"level {level}")
        dutylog.add(conn, now, "system", "alarm",
                    f"alarm {a['id']} ({a['type']}) escalated to level {level}: not acknowledged",
                    a["id"])  # fmt: skip
        changed.append(a["id"])
    return changed


def _met(conn: sqlite3.Connection, alarm_id: int, stage: str, now: float) -> None:
    """The alarm reached ``stage``, and so every stage before it (resolved on the spot is
    dispatched too). One met after its due time is logged ``late`` with by how much: the
    handover and the office's monthly report read it."""
    reached = STAGES[: STAGES.index(stage) + 1]
    marks = ",".join("?" * len(reached))
    due = db.rows(
        conn,
        f"SELECT id, stage, due_at FROM alarm_deadlines WHERE alarm_id = ? AND met_at IS NULL "
        f"AND stage IN ({marks})",
        (alarm_id, *reached),
    )
    for d in due:
        conn.execute("UPDATE alarm_deadlines SET met_at = ? WHERE id = ?", (now, d["id"]))
        if now > d["due_at"]:
            late = round(now - d["due_at"])
            _log(conn, alarm_id, now, None, "late", f"{d['stage']} {late // 60} min late",
                 {"stage": d["stage"], "late_s": late})  # fmt: skip


def deadlines_due(conn: sqlite3.Connection, now: float, limit: int = ESCALATE_PER_TICK) -> list:
    """Escalate the open alarms with a stage past its due time and not met (on
    ix_alarm_deadlines_waiting: only the stages still waiting), at most ``limit``; the ids
    that changed. Each stage escalates once; acknowledging does not stop the clock of a
    stage that is not acknowledgement."""
    changed: list[int] = []
    for d in db.rows(
        conn,
        "SELECT d.id, d.alarm_id, d.stage, d.due_at, a.type, a.escalation_level FROM "
        "alarm_deadlines d JOIN alarms a ON a.id = d.alarm_id WHERE d.met_at IS NULL AND "
        "d.overdue_at IS NULL AND d.due_at < ? ORDER BY d.due_at LIMIT ?",
        (now, limit),
    ):
        conn.execute("UPDATE alarm_deadlines SET overdue_at = ? WHERE id = ?", (now, d["id"]))
        state = conn.execute("SELECT state FROM alarms WHERE id = ?", (d["alarm_id"],)).fetchone()
        if state[0] == "closed":  # ended without reaching the stage (closed by force)
            continue
        level = d["escalation_level"] + 1
        conn.execute("UPDATE alarms SET escalation_level = ?, escalated_at = ? WHERE id = ?",
                     (level, now, d["alarm_id"]))  # fmt: skip
        _log(conn, d["alarm_id"], now, None, "overdue", f"{d['stage']} was due",
             {"stage": d["stage"]})  # fmt: skip
        dutylog.add(conn, now, "system", "alarm",
                    f"alarm {d['alarm_id']} ({d['type']}): {d['stage']} overdue, escalated to "
                    f"level {level}", d["alarm_id"])  # fmt: skip
        changed.append(d["alarm_id"])
    return changed


def deadlines_of(conn: sqlite3.Connection, alarm_id: int) -> list[dict[str, Any]]:
    return db.rows(conn, "SELECT stage, due_at, met_at, overdue_at FROM alarm_deadlines "
                         "WHERE alarm_id = ? ORDER BY due_at", (alarm_id,))  # fmt: skip


def late_between(conn: sqlite3.Connection, start: float, end: float,
                 now: float) -> list[dict[str, Any]]:  # fmt: skip
    """The stages that ran late in a shift: overdue in it, or met late in it; by how much
    (``late_s``: until met, or until ``now`` while still waiting)."""
    found = db.rows(
        conn,
        "SELECT d.alarm_id, a.type, d.stage, d.due_at, d.met_at, d.overdue_at FROM "
        "alarm_deadlines d JOIN alarms a ON a.id = d.alarm_id WHERE (d.overdue_at >= ? AND "
        "d.overdue_at < ?) OR (d.met_at >= ? AND d.met_at < ? AND d.met_at > d.due_at) "
        "ORDER BY d.due_at",
        (start, end, start, end),
    )
    for d in found:
        d["late_s"] = round((d["met_at"] or now) - d["due_at"])
    return found


def emergency_record(
    conn: sqlite3.Connection, alarm_id: int, fields: dict[str, str], by: str, now: float
) -> None:
    """紧急事件处理记录表 for a major incident; ``results`` may follow later."""
    get(conn, alarm_id)
    existing = conn.execute(
        "SELECT id FROM emergency_records WHERE alarm_id = ?", (alarm_id,)
    ).fetchone()
    if existing is None:
        missing = [
            k for k in ("cause", "responsible", "remedial", "preventive") if not fields.get(k)
        ]
        if missing:
            raise DomainError(f"{missing[0]}: the emergency record needs it")
        store.insert(conn, EmergencyRecord, {
            "alarm_id": alarm_id, "cause": fields["cause"], "responsible": fields["responsible"],
            "remedial": fields["remedial"], "preventive": fields["preventive"],
            "results": fields.get("results"), "by": by, "at": now,
        })  # fmt: skip
    elif fields.get("results"):
        conn.execute(
            "UPDATE emergency_records SET results = ?, results_by = ?, results_at = ? "
            "WHERE alarm_id = ?",
            (fields["results"], by, now, alarm_id),
        )
    else:
        raise Conflict(f"alarm {alarm_id} has its emergency record; only results may follow")
    _log(conn, alarm_id, now, by, "emergency_record")


def listing(
    conn: sqlite3.Connection,
    include_closed: bool,
    include_shelved: bool,
    now: float,
    limit: int,
    before: int | None,
) -> list[dict[str, Any]]:
    """The queue: priority first, then oldest; closed and shelved only when asked."""
    where, args = [], []
    if not include_closed:  # by ix_alarms_state: the open ones, never every alarm kept
        where.append(f"a.state IN ({', '.join(repr(s) for s in OPEN_STATES)})")
    if not include_shelved:
        where.append("(a.shelved_until IS NULL OR a.shelved_until <= ?)")
        args.append(now)
    if before is not None:
        where.append("a.id < ?")
        args.append(before)
    sql = f"SELECT a.*, {JOIN_COLUMNS} FROM alarms a LEFT JOIN snapshots s ON s.id = a.snapshot_id"
    sql += " WHERE " + " AND ".join(where) if where else ""
    order = " ORDER BY a.id DESC" if include_closed else " ORDER BY a.priority, a.raised_at, a.id"
    found = [_loaded(a) for a in db.rows(conn, sql + order + " LIMIT ?", (*args, limit))]
    if found:  # their deadlines, in one look (on ix_alarm_deadlines_alarm_id)
        ids = [a["id"] for a in found]
        due: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
        for d in db.rows(conn, "SELECT alarm_id, stage, due_at, met_at, overdue_at FROM "
                               f"alarm_deadlines WHERE alarm_id IN ({','.join('?' * len(ids))}) "
                               "ORDER BY due_at", tuple(ids)):  # fmt: skip
            due[d.pop("alarm_id")].append(d)
        for a in found:
            a["deadlines"] = due[a["id"]]
    return found


def _loaded(a: dict[str, Any]) -> dict[str, Any]:
    a["checklist"] = [{"id": step_id(s["step"])} | s for s in json.loads(a["checklist"])]
    a["active"] = bool(a["active"])
    return a


def context(conn: sqlite3.Connection, a: dict[str, Any], minutes: float = 5.0) -> list[dict]:
    """The access events at the alarm's gate in the minutes before it: who came through."""
    if not a["gate"]:
        return []
    return db.rows(
        conn,
        "SELECT * FROM access_events WHERE gate = ? AND ts BETWEEN ? AND ? "
        "ORDER BY ts DESC LIMIT 50",
        (a["gate"], a["raised_at"] - minutes * 60, a["raised_at"]),
    )
