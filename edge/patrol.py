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
from edge.config import Config, PatrolCfg
from edge.errors import Conflict, DomainError, NotFound
from edge.models import FaultNotice, PatrolRead, PatrolRound

FIRST_LOOK_S = 3600.0  # a gate's first look judges the rounds that ended in the last hour


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


def record(conn: sqlite3.Connection, cfg: PatrolCfg, reads: Iterable[Read], source: str,
           now: float) -> dict[str, int]:  # fmt: skip
    """Keep tag reads; how many, and how many were of no checkpoint (kept all the same: a
    new tag not yet in the config, or a mistyped one)."""
    by_tag = {c.tag: c.id for c in cfg.checkpoints}
    kept = unknown = 0
    for r in reads:
        checkpoint = by_tag.get(r.tag)
        unknown += checkpoint is None
        store.insert(conn, PatrolRead, {"tag": r.tag, "checkpoint": checkpoint,
                                        "guard": r.guard, "device": r.device, "source": source,
                                        "at": r.at, "recorded_at": now})  # fmt: skip
        kept += 1
    return {"recorded": kept, "unknown_tags": unknown}


def evaluate(conn: sqlite3.Connection, cfg: Config, now: float) -> list[int]:
    """Judge the rounds whose time ended since the last look; the alarm ids raised. With
    no plans there is nothing to judge, and no look to remember: plans added later judge
    the rounds of the last hour at their first look."""
    if not cfg.patrol.plans:
        return []
    since = float(db.get_meta(conn, "patrol_judged_until") or now - FIRST_LOOK_S)
    raised: list[int] = []
    routes = {r.id: r for r in cfg.patrol.routes}
    names = {c.id: c.name for c in cfg.patrol.checkpoints}
    for p in planned(cfg.patrol, since, now, cfg.tz):
        if db.row(conn, "SELECT id FROM patrol_rounds WHERE route = ? AND planned_at = ?",
                  (p.route, p.planned_at)):  # fmt: skip
            continue
        route = routes[p.route]
        found = db.rows(
            conn,
            "SELECT checkpoint, at, guard FROM patrol_reads WHERE at >= ? AND at <= ? "
            "AND checkpoint IS NOT NULL",
            (p.planned_at, p.ends_at),
        )
        status, read, missing = judge(
            route.checkpoints, [(r["checkpoint"], r["at"]) for r in found]
        )
        guards = sorted({r["guard"] for r in found if r["guard"] and r["checkpoint"] in read})
        alarm_id = None
        if status != "done":
            where = ", ".join(names[c] for c in missing)
            alarm_id = alarms.raise_alarm(
                conn, cfg.alarms, "patrol_missed", f"patrol:{p.route}:{p.planned_at:.0f}", now,
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
    prefix = f"GZ-{datetime.fromtimestamp(now, tz).year}-"
    last = conn.execute("SELECT max(number) FROM fault_notices WHERE number LIKE ?",
                        (prefix + "%",)).fetchone()[0]  # fmt: skip
    number = f"{prefix}{int(last.rsplit('-', 1)[1]) + 1 if last else 1:04d}"
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


def open_faults(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The notices not closed, oldest first (ix_fault_notices_open), for the handover."""
    return db.rows(conn, "SELECT id, number, place, category, description, reported_at, "
                         "received_by FROM fault_notices WHERE closed_at IS NULL "
                         "ORDER BY reported_at", ())  # fmt: skip
