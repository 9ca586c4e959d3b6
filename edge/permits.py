"""Renovation work at the gate: the office's permits (pulled, sync.client), rectification
notices (整改通知单) issued here, and the workers still inside at the end of the working day.

003 §七: work outside a permit's scope gets a rectification notice with a deadline; the
open ones past it are in the handover. 000 §七: renovation runs within working hours; at
their end (``[permits] work_ends``, 19:00) the guard's screen and the duty log name the
workers who came in today and have not gone out, from the in and out readers.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from edge import db, dutylog, outbox, store
from edge.config import Config
from edge.errors import Conflict, DomainError, NotFound
from edge.models import Rectification
from edge.privacy import mask_name


def permits(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return db.rows(conn, "SELECT * FROM permits ORDER BY permit_no", ())


def issue_notice(conn: sqlite3.Connection, epoch: int, fields: dict[str, Any], by: str,
                 now: float, tz: Any) -> dict[str, Any]:  # fmt: skip
    """A rectification notice, numbered ZG-<year>-<n> at this node."""
    if not fields["unit"].strip() or not fields["issue"].strip():
        raise DomainError("unit and issue: a notice names the unit and what is to be put right")
    if fields["deadline"] <= now:
        raise DomainError("deadline: must be after now")
    if fields.get("permit_no") and not db.row(
        conn, "SELECT permit_no FROM permits WHERE permit_no = ?", (fields["permit_no"],)
    ):
        raise DomainError(f"permit_no: this gate holds no permit {fields['permit_no']!r}")
    number = db.yearly_serial(conn, "rectifications", "ZG", 4, now, tz)
    notice_id = store.insert(conn, Rectification, {
        "number": number, "unit": fields["unit"].strip(), "permit_no": fields.get("permit_no"),
        "issue": fields["issue"].strip(), "deadline": fields["deadline"], "issued_by": by,
        "issued_at": now,
    })  # fmt: skip
    dutylog.add(conn, now, by, "patrol", f"rectification notice {number} to {fields['unit']}")
    return _changed(conn, epoch, notice_id, now)


def get_notice(conn: sqlite3.Connection, notice_id: int) -> dict[str, Any]:
    found = db.row(conn, "SELECT * FROM rectifications WHERE id = ?", (notice_id,))
    if found is None:
        raise NotFound(f"no rectification notice {notice_id}")
    return found


def _changed(conn: sqlite3.Connection, epoch: int, notice_id: int, now: float) -> dict:
    notice = get_notice(conn, notice_id)
    outbox.add(conn, epoch, "rectification", notice["number"], notice, now)
    return notice


def close_notice(conn: sqlite3.Connection, epoch: int, notice_id: int, inspected_by: str,
                 notes: str | None, by: str, now: float) -> dict[str, Any]:  # fmt: skip
    """Put right: re-inspected and found in order."""
    notice = get_notice(conn, notice_id)
    if notice["closed_at"] is not None:
        raise Conflict(f"rectification notice {notice['number']} is closed already")
    if not inspected_by.strip():
        raise DomainError("inspected_by: name who re-inspected the unit")
    conn.execute(
        "UPDATE rectifications SET closed_at = ?, closed_by = ?, inspected_by = ?, "
        "notes = ? WHERE id = ?",
        (now, by, inspected_by.strip(), notes, notice_id),
    )
    late = " (after its deadline)" if now > notice["deadline"] else ""
    dutylog.add(conn, now, by, "patrol",
                f"rectification notice {notice['number']} closed{late}")  # fmt: skip
    return _changed(conn, epoch, notice_id, now)


def notices(conn: sqlite3.Connection, open_only: bool, limit: int) -> list[dict[str, Any]]:
    where = " WHERE closed_at IS NULL" if open_only else ""
    return db.rows(conn, f"SELECT * FROM rectifications{where} ORDER BY id DESC LIMIT ?",
                   (limit,))  # fmt: skip


def overdue_notices(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    """The open notices past their deadline (ix_rectifications_open), for the handover."""
    found = db.rows(conn, "SELECT id, number, unit, permit_no, issue, deadline FROM "
                          "rectifications WHERE closed_at IS NULL AND deadline < ? "
                          "ORDER BY deadline", (now,))  # fmt: skip
    for n in found:
        n["overdue_s"] = round(now - n["deadline"])
    return found


def _day_start(now: float, tz: Any) -> float:
    local = datetime.fromtimestamp(now, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def workers_inside(conn: sqlite3.Connection, now: float, tz: Any,
                   name_mask: str) -> list[dict[str, Any]]:  # fmt: skip
    """The workers let in today whose last granted passage today was in: not out yet.
    On ix_access_events_ts: today's events only."""
    found = db.rows(
        conn,
        "SELECT e.pass_id, e.holder, e.gate, e.ts, e.direction, p.unit, p.permit_no "
        "FROM access_events e JOIN passes p ON p.id = e.pass_id "
        "WHERE e.ts >= ? AND e.ts <= ? AND e.decision = 'grant' AND p.kind = 'worker' "
        "ORDER BY e.ts",
        (_day_start(now, tz), now),
    )
    last: dict[str, dict[str, Any]] = {}
    for e in found:
        last[e["pass_id"]] = e
    return [
        {"pass_id": e["pass_id"], "name": mask_name(e["holder"] or "", name_mask),
         "unit": e["unit"], "permit_no": e["permit_no"], "gate": e["gate"], "in_at": e["ts"]}
        for e in last.values() if (e["direction"] or "in") == "in"
    ]  # fmt: skip


def end_of_work(conn: sqlite3.Connection, cfg: Config, now: float) -> bool:
    """At ``[permits] work_ends``, once a day (kept across restarts): the duty log names the
    workers still inside. Whether it wrote the entry now."""
    local = datetime.fromtimestamp(now, cfg.tz)
    if local.time() < cfg.permits.work_ends:
        return False
    today = local.date().isoformat()
    if db.get_meta(conn, "work_ends_noted") == today:
        return False
    db.set_meta(conn, "work_ends_noted", today)
    inside = workers_inside(conn, now, cfg.tz, cfg.rules.name_mask)
    if inside:
        names = ", ".join(f"{w['name']} ({w['unit'] or '—'})" for w in inside)
        text = f"end of work {cfg.permits.work_ends:%H:%M}: {len(inside)} workers inside: {names}"
    else:
        text = f"end of work {cfg.permits.work_ends:%H:%M}: no worker inside"
    dutylog.add(conn, now, "system", "gate", text)
    return True
