"""巡查 Patrol rounds: checkpoints read by the guards, routes walked at planned times, each
round judged once its time is up.

The manuals ask for a garden patrol every shift, renovation rounds twice a day, morning and
afternoon rounds (000 §八.9; 003 ch.3 §七; 002 KF-013); the squad leader must be able to
show the estate manager that they were done. A guard reads each checkpoint's tag — at a
fixed reader, with a handheld (MQTT ``patrol/<device>/read``), or with a patrol wand whose
download is uploaded later (drivers.patrol_wand) — and each read is recorded as it comes.

A round of a route starts at each of its plan's times and lasts the route's ``minutes``.
When it is over, the reads of its checkpoints inside it judge it (``judge``, pure): every
checkpoint read, ``done``; some, ``incomplete``; none, ``missed``. A round not done raises
``patrol_missed`` in the control room's queue naming what was not read. Rounds go to the
office (``patrol_round`` records) and into the handover.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edge import alarms, db, dutylog, outbox, store
from edge.cards import parse_card
from edge.config import Config, PatrolCfg, RouteCfg
from edge.errors import Conflict, DomainError, NotFound
from edge.models import FaultNotice, PatrolRead, PatrolRound

FIRST_LOOK_S = 3600.0  # a gate's first look judges the rounds that ended in the last hour
FLOOD = 3  # more rounds not done than this in one look: one alarm for them, not one each
GUARD_CARD_S = 12 * 3600.0  # a guard's own card read on a device names him for a shift


@dataclass(frozen=True)
class Read:
    tag: str
    at: float
    guard: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class Planned:
    route: str
    planned_at: float
    ends_at: float


def planned(cfg: PatrolCfg, start: float, end: float, tz: Any) -> Iterator[Planned]:
    """The rounds whose time ends in (``start``, ``end``], in the site's zone (pure)."""
    minutes = {r.id: r.minutes for r in cfg.routes}
    first = datetime.fromtimestamp(start, tz).date() - timedelta(days=1)  # a round from
    last = datetime.fromtimestamp(end, tz).date()  # yesterday may end today
    day = first
    while day <= last:
        for plan in cfg.plans:
            if plan.months and day.month not in plan.months:
                continue  # out of its season (summer's hours are not winter's)
            for t in plan.at:
                begins = datetime.combine(day, t, tz).timestamp()
                ends = begins + minutes[plan.route] * 60
                if start < ends <= end:
                    yield Planned(plan.route, begins, ends)
        day += timedelta(days=1)


Judged = tuple[str, list[str], list[str]]  # status, checkpoints read, checkpoints missing


def judge(checkpoints: Iterable[str], reads: Iterable[tuple[str, float]]) -> Judged:
    """A round's status from the route's checkpoints and the (checkpoint, time) reads inside
    its time (pure): the checkpoints read, in the order first read, and those missing."""
    wanted = list(checkpoints)
    read: list[str] = []
    for checkpoint, _at in sorted(reads, key=lambda r: r[1]):
        if checkpoint in wanted and checkpoint not in read:
            read.append(checkpoint)
    missing = [c for c in wanted if c not in read]
    status = "done" if not missing else ("missed" if not read else "incomplete")
    return status, read, missing


def record(conn: sqlite3.Connection, cfg: Config, reads: Iterable[Read], source: str,
           now: float, uploader: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Keep tag reads; how many, how many were of no checkpoint (kept all the same: a new
    tag not yet in the config, or a mistyped one), and how many rounds judged before were
    judged again because a read falls in them (a wand's download comes after the round),
    with the alarms that cleared as those rounds became done.

    A guard is who the read names, else the guard whose own staff card the device read
    last (within a shift), else ``uploader``: the guard who docked the wand."""
    by_tag = {c.tag: c.id for c in cfg.patrol.checkpoints}
    kept = unknown = cards = 0
    times: list[float] = []
    carried: dict[str | None, tuple[str, float]] = {}  # in this batch: device -> card read
    for r in sorted(reads, key=lambda r: r.at):
        checkpoint = by_tag.get(r.tag)
        if checkpoint is None and (holder := _staff_card(conn, r.tag)):
            cards += 1  # the guard names himself with his own card
            carried[r.device] = (holder, r.at)
            if r.device:
                db.set_meta(conn, f"patrol_guard:{r.device}", json.dumps([holder, r.at]))
        elif checkpoint is None:
            unknown += 1
        else:
            times.append(r.at)
        guard = r.guard or _carried_by(conn, carried, r.device, r.at) or uploader
        store.insert(conn, PatrolRead, {"tag": r.tag, "checkpoint": checkpoint,
                                        "guard": guard, "device": r.device, "source": source,
                                        "at": r.at, "recorded_at": now})  # fmt: skip
        kept += 1
    rejudged, cleared = _rejudge(conn, cfg, times, now) if times else (0, [])
    return {"recorded": kept, "unknown_tags": unknown, "guard_cards": cards,
            "rejudged": rejudged, "alarms_cleared": cleared}  # fmt: skip


def _staff_card(conn: sqlite3.Connection, tag: str) -> str | None:
    """The holder of the active staff card ``tag`` reads as, if it is one."""
    try:
        key = parse_card(tag).key
    except ValueError:
        return None
    found = db.row(conn, "SELECT name FROM passes WHERE card_key = ? AND kind = 'staff' "
                         "AND status = 'active' ORDER BY updated_at DESC LIMIT 1",
                   (key,))  # fmt: skip
    return found["name"] if found else None


def _carried_by(conn: sqlite3.Connection, carried: dict[str | None, tuple[str, float]],
                device: str | None, at: float) -> str | None:  # fmt: skip
    """Who read his card on ``device`` last (in this batch, else before), if he did in the
    shift before ``at``."""
    if device in carried:
        name, since = carried[device]
    elif device and (held := db.get_meta(conn, f"patrol_guard:{device}")):
        name, since = json.loads(held)
    else:
        return None
    return str(name) if since <= at < since + GUARD_CARD_S else None


def _judged(conn: sqlite3.Connection, route: RouteCfg, planned_at: float,
            ends_at: float) -> tuple[str, list[str], list[str], list[str]]:  # fmt: skip
    """A round's judgement from the reads in its time, and the guards who read them."""
    found = db.rows(
        conn,
        "SELECT checkpoint, at, guard FROM patrol_reads WHERE at >= ? AND at <= ? "
        "AND checkpoint IS NOT NULL",
        (planned_at, ends_at),
    )
    status, read, missing = judge(route.checkpoints, [(r["checkpoint"], r["at"]) for r in found])
    guards = sorted({r["guard"] for r in found if r["guard"] and r["checkpoint"] in read})
    return status, read, missing, guards


def _rejudge(conn: sqlite3.Connection, cfg: Config, times: list[float],
             now: float) -> tuple[int, list[int]]:  # fmt: skip
    """Judge again the rounds not done that a read just kept falls in: the round, its
    record at the office (same ref, the newer wins) and the duty log follow; one now done
    clears its alarm."""
    routes = {r.id: r for r in cfg.patrol.routes}
    found = db.rows(conn, "SELECT * FROM patrol_rounds WHERE status != 'done' "
                          "AND planned_at <= ? AND ends_at >= ?",
                    (max(times), min(times)))  # fmt: skip
    changed, cleared = 0, []
    for r in found:
        route = routes.get(r["route"])
        if route is None or not any(r["planned_at"] <= t <= r["ends_at"] for t in times):
            continue  # a route since taken out of the config keeps its judgement
        status, read, missing, guards = _judged(conn, route, r["planned_at"], r["ends_at"])
        if read == json.loads(r["read"]):
            continue
        conn.execute("UPDATE patrol_rounds SET status = ?, read = ?, missing = ?, guards = ?, "
                     "judged_at = ? WHERE id = ?",
                     (status, json.dumps(read), json.dumps(missing), ",".join(guards) or None,
                      now, r["id"]))  # fmt: skip
        row = db.row(conn, "SELECT * FROM patrol_rounds WHERE id = ?", (r["id"],))
        outbox.add(conn, None, "patrol_round", str(r["id"]), _loaded(row), now)
        dutylog.add(conn, now, "system", "patrol",
                    f"round of {route.name} at {_hhmm(r['planned_at'], cfg)} judged again "
                    f"with reads uploaded later: {status}"
                    + (f" ({', '.join(guards)})" if guards else ""))  # fmt: skip
        source = _source(r["route"], r["planned_at"])
        if status == "done" and (alarm_id := alarms.normal(conn, source, "patrol_missed", now)):
            cleared.append(alarm_id)
        changed += 1
    return changed, cleared


def _source(route: str, planned_at: float) -> str:
    return f"patrol:{route}:{planned_at:.0f}"


def evaluate(conn: sqlite3.Connection, cfg: Config, now: float) -> list[int]:
    """Judge the rounds whose time ended since the last look; the alarm ids raised. With
    no plans there is nothing to judge, and no look to remember: plans added later judge
    the rounds of the last hour at their first look.

    A look that finds more rounds not done than ``FLOOD`` (a gate back after days off)
    raises one alarm naming them all, not one each: each is still judged and recorded."""
    if not cfg.patrol.plans:
        return []
    since = float(db.get_meta(conn, "patrol_judged_until") or now - FIRST_LOOK_S)
    routes = {r.id: r for r in cfg.patrol.routes}
    names = {c.id: c.name for c in cfg.patrol.checkpoints}
    looked: list[tuple[Planned, str, list[str], list[str], list[str]]] = []
    for p in planned(cfg.patrol, since, now, cfg.tz):
        if db.row(conn, "SELECT id FROM patrol_rounds WHERE route = ? AND planned_at = ?",
                  (p.route, p.planned_at)):  # fmt: skip
            continue
        looked.append((p, *_judged(conn, routes[p.route], p.planned_at, p.ends_at)))
    not_done = [(p, status) for p, status, *_ in looked if status != "done"]
    raised: list[int] = []
    backlog = None
    if len(not_done) > FLOOD:
        first, last = not_done[0][0].planned_at, not_done[-1][0].planned_at
        listed = "; ".join(f"{routes[p.route].name} {_when(p.planned_at, cfg)} {status}"
                           for p, status in not_done[:20])  # fmt: skip
        backlog = alarms.raise_alarm(
            conn, cfg.alarms, "patrol_missed", f"patrol:backlog:{now:.0f}", now,
            notes=f"{len(not_done)} rounds not done from {_when(first, cfg)} to "
                  f"{_when(last, cfg)} (judged late: the gate was not running): {listed}"
                  + (" …" if len(not_done) > 20 else ""),
        )  # fmt: skip
        raised.append(backlog)
    for p, status, read, missing, guards in looked:
        route = routes[p.route]
        alarm_id = None
        if status != "done" and backlog is not None:
            alarm_id = backlog
        elif status != "done":
            where = ", ".join(names[c] for c in missing)
            alarm_id = alarms.raise_alarm(
                conn, cfg.alarms, "patrol_missed", _source(p.route, p.planned_at), now,
                location=route.name,
                notes=f"round of {route.name} at {_hhmm(p.planned_at, cfg)} {status}: "
                      f"not read: {where}",
            )  # fmt: skip
            raised.append(alarm_id)
        round_id = store.insert(conn, PatrolRound, {
            "route": p.route, "planned_at": p.planned_at, "ends_at": p.ends_at, "status": status,
            "read": json.dumps(read), "missing": json.dumps(missing),
            "guards": ",".join(guards) or None, "alarm_id": alarm_id, "judged_at": now,
        })  # fmt: skip
        row = db.row(conn, "SELECT * FROM patrol_rounds WHERE id = ?", (round_id,))
        outbox.add(conn, None, "patrol_round", str(round_id), _loaded(row), now)
        dutylog.add(conn, now, "system", "patrol",
                    f"round of {route.name} at {_hhmm(p.planned_at, cfg)}: {status}"
                    + (f" ({', '.join(guards)})" if guards else ""))  # fmt: skip
    db.set_meta(conn, "patrol_judged_until", repr(now))
    return raised


def _when(t: float, cfg: Config) -> str:
    return f"{datetime.fromtimestamp(t, cfg.tz):%m-%d %H:%M}"


def _hhmm(t: float, cfg: Config) -> str:
    return f"{datetime.fromtimestamp(t, cfg.tz):%H:%M}"


def _loaded(r: dict[str, Any] | None) -> dict[str, Any]:
    assert r is not None
    return r | {"read": json.loads(r["read"]), "missing": json.loads(r["missing"])}


def rounds_between(conn: sqlite3.Connection, start: float, end: float) -> list[dict[str, Any]]:
    """The rounds planned in a time (a shift, a day), judged ones (ix_patrol_rounds_planned_at)."""
    found = db.rows(conn, "SELECT * FROM patrol_rounds WHERE planned_at >= ? AND planned_at < ? "
                          "ORDER BY planned_at", (start, end))  # fmt: skip
    return [_loaded(r) for r in found]


def reads_between(conn: sqlite3.Connection, start: float, end: float,
                  limit: int) -> list[dict[str, Any]]:  # fmt: skip
    return db.rows(conn, "SELECT * FROM patrol_reads WHERE at >= ? AND at < ? "
                         "ORDER BY at DESC LIMIT ?", (start, end, limit))  # fmt: skip


# -- fault notices (故障通知单) -------------------------------------------------------------

# what a fault is found in (002 KF-013's round checklist: fire equipment, lifts, lighting,
# water and drains, doors and access, cleanliness)
FAULT_CATEGORIES = ("fire", "lift", "lighting", "water", "access", "cleaning", "other")


def report_fault(conn: sqlite3.Connection, fields: dict[str, Any], has_picture: Any, by: str,
                 now: float, tz: Any) -> dict[str, Any]:  # fmt: skip
    """A fault found (on a round, or anywhere), numbered GZ-<year>-<n> at this node."""
    if fields["category"] not in FAULT_CATEGORIES:
        raise DomainError(f"category: must be one of {', '.join(FAULT_CATEGORIES)}")
    if not fields["place"].strip() or not fields["description"].strip():
        raise DomainError("place and description: a fault notice says where and what")
    if fields.get("photo") and not has_picture(fields["photo"]):
        raise DomainError("photo: upload the picture first (POST /api/v1/patrol/photos)")
    if fields.get("round_id") is not None and not db.row(
        conn, "SELECT id FROM patrol_rounds WHERE id = ?", (fields["round_id"],)
    ):
        raise NotFound(f"no patrol round {fields['round_id']}")
    number = db.yearly_serial(conn, "fault_notices", "GZ", 4, now, tz)
    fault_id = store.insert(conn, FaultNotice, {
        "number": number, "place": fields["place"].strip(), "category": fields["category"],
        "description": fields["description"].strip(), "photo_sha256": fields.get("photo"),
        "round_id": fields.get("round_id"), "reported_by": by, "reported_at": now,
    })  # fmt: skip
    dutylog.add(conn, now, by, "repair", f"fault notice {number}: {fields['place'].strip()}")
    return _fault_changed(conn, fault_id, now)


def get_fault(conn: sqlite3.Connection, fault_id: int) -> dict[str, Any]:
    found = db.row(conn, "SELECT * FROM fault_notices WHERE id = ?", (fault_id,))
    if found is None:
        raise NotFound(f"no fault notice {fault_id}")
    return found


def _fault_changed(conn: sqlite3.Connection, fault_id: int, now: float) -> dict[str, Any]:
    fault = get_fault(conn, fault_id)
    outbox.add(conn, None, "fault_notice", fault["number"], fault, now)
    return fault


def receive_fault(conn: sqlite3.Connection, fault_id: int, by: str, now: float) -> dict:
    """The duty officer has the notice (接收): the repair is theirs to send."""
    fault = get_fault(conn, fault_id)
    if fault["received_at"] is not None:
        raise Conflict(f"fault notice {fault['number']} was received by "
                       f"{fault['received_by']} already")  # fmt: skip
    conn.execute("UPDATE fault_notices SET received_by = ?, received_at = ? WHERE id = ?",
                 (by, now, fault_id))  # fmt: skip
    return _fault_changed(conn, fault_id, now)


def close_fault(conn: sqlite3.Connection, fault_id: int, repaired_by: str, notes: str | None,
                by: str, now: float) -> dict[str, Any]:  # fmt: skip
    """Repaired: closed by the repair team's person, with the time."""
    fault = get_fault(conn, fault_id)
    if fault["closed_at"] is not None:
        raise Conflict(f"fault notice {fault['number']} is closed already")
    if fault["received_at"] is None:
        raise Conflict(f"fault notice {fault['number']}: the duty officer has not received it")
    if not repaired_by.strip():
        raise DomainError("repaired_by: name who repaired it")
    conn.execute("UPDATE fault_notices SET closed_by = ?, closed_at = ?, repair_notes = ? "
                 "WHERE id = ?", (repaired_by.strip(), now, notes, fault_id))  # fmt: skip
    dutylog.add(conn, now, by, "repair",
                f"fault notice {fault['number']} repaired by {repaired_by.strip()}")  # fmt: skip
    return _fault_changed(conn, fault_id, now)


def faults(conn: sqlite3.Connection, open_only: bool, limit: int) -> list[dict[str, Any]]:
    where = " WHERE closed_at IS NULL" if open_only else ""
    return db.rows(conn, f"SELECT * FROM fault_notices{where} ORDER BY id DESC LIMIT ?",
                   (limit,))  # fmt: skip


def faults_handed_in(conn: sqlite3.Connection, cfg: Config, now: float) -> bool:
    """At ``[patrol] faults_due`` (17:30), once a day (kept across restarts): the duty log
    lists the notices of the day (since the last hand-in) and names those the duty officer
    has not received. Whether it wrote the entry now."""
    local = datetime.fromtimestamp(now, cfg.tz)
    due = cfg.patrol.faults_due
    if local.time() < due:
        return False
    today = local.date().isoformat()
    if db.get_meta(conn, "faults_handed_in") == today:
        return False
    db.set_meta(conn, "faults_handed_in", today)
    since = datetime.combine(local.date() - timedelta(days=1), due, cfg.tz).timestamp()
    found = db.rows(conn, "SELECT number, received_at FROM fault_notices WHERE reported_at >= ? "
                          "AND reported_at <= ? ORDER BY number", (since, now))  # fmt: skip
    waiting = [f["number"] for f in found if f["received_at"] is None]
    text = f"fault notices handed in at {due:%H:%M}: {len(found)}"
    if found:
        text += f" ({', '.join(f['number'] for f in found)})"
    if waiting:
        text += f"; not received by the duty officer: {', '.join(waiting)}"
    dutylog.add(conn, now, "system", "repair", text)
    return True


def open_faults(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The notices not closed, oldest first (ix_fault_notices_open), for the handover."""
    return db.rows(conn, "SELECT id, number, place, category, description, reported_at, "
                         "received_by FROM fault_notices WHERE closed_at IS NULL "
                         "ORDER BY reported_at", ())  # fmt: skip
