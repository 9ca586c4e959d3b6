"""交接班 Shift handover: a report built from live state, signed by both shifts.

The outgoing officer makes it (the report is frozen then, with its SHA-256), signs it, and
the incoming officer — another person — signs after counting the post's items and reading
the open items. The outgoing shift may not hand over with a priority-1 alarm nobody has
acknowledged, unless a supervisor overrides with a reason (000 §八.9).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from edge import (
    alarms,
    db,
    dutylog,
    keys,
    modes,
    outbox,
    patrol,
    permits,
    shifts,
    store,
    views,
    visitors,
)
from edge.config import Config
from edge.errors import Conflict, DomainError, NotFound
from edge.models import Handover
from edge.privacy import mask_name
from edge.shape import shaped


def build_report(
    conn: sqlite3.Connection, cfg: Config, now: float, counted: dict[str, int], notes: str | None
) -> dict[str, Any]:
    shift = shifts.outgoing(cfg.shifts, now, cfg.tz)
    start, end = shift.start, min(shift.end, now)
    open_alarms = [
        views.alarm_view(a, now, cfg.tz) for a in alarms.listing(conn, False, True, now, 1000, None)
    ]
    of_shift = db.rows(
        conn,
        "SELECT id, type, priority, state, resolution, acked_by, resolved_by, raised_at, "
        "closed_at FROM alarms WHERE raised_at >= ? AND raised_at < ? ORDER BY id",
        (start, end),
    )
    inside = db.rows(
        conn,
        "SELECT id, name, host_unit, entered_at FROM visitors "
        "WHERE entered_at IS NOT NULL AND exited_at IS NULL ORDER BY id",
        (),
    )
    late = visitors.overstaying(conn, now)  # announced, and still in past their window
    for v in [*inside, *late]:
        v["name"] = mask_name(v["name"], cfg.rules.name_mask)
    expected = cfg.post_items
    discrepancies = {
        item: {"expected": expected.get(item), "counted": counted.get(item)}
        for item in sorted(set(expected) | set(counted))
        if expected.get(item) != counted.get(item)
    }
    return {
        "shift": shift.name,
        "shift_start": shift.start,
        "shift_end": shift.end,
        "generated_at": now,
        "open_alarms": open_alarms,
        "alarms_of_shift": of_shift,
        "open_faults": [a for a in open_alarms if a["type"] in alarms.FAULTS],
        "visitors_inside": inside,
        "visitors_overstaying": late,
        # help requests whose stage ran late this shift, and by how much (000 §八.10)
        "late_requests": alarms.late_between(conn, start, end, now),
        # the shift's patrol rounds as judged: done, incomplete (which were missed), missed
        "patrol_rounds": patrol.rounds_between(conn, start, end),
        "faults_open": patrol.open_faults(conn),  # 故障通知单 not closed yet
        "gate_modes": modes.not_normal(conn, now),  # gates held open or locked, and why
        # renovation: notices past their deadline, and the workers let in who are still in
        "rectifications_overdue": permits.overdue_notices(conn, now),
        "workers_inside": permits.workers_inside(conn, now, cfg.tz, cfg.rules.name_mask),
        # who holds which keys now: "12 keys, 11 counted" names who has the twelfth
        "keys_out": keys.out_now(conn, now, cfg.rules.name_mask),
        "confiscations": db.rows(
            conn, "SELECT * FROM confiscations WHERE at >= ? AND at < ?", (start, end)
        ),
        "overrides": db.rows(
            conn,
            "SELECT event_id, ts, gate, by, notes FROM access_events "
            "WHERE source = 'override' AND ts >= ? AND ts < ?",
            (start, end),
        ),
        "duty_log": dutylog.between(conn, start, end),
        "items": {"expected": expected, "counted": counted, "discrepancies": discrepancies},
        "notes": notes,
    }


def create(
    conn: sqlite3.Connection,
    cfg: Config,
    by: str,
    admin: bool,
    now: float,
    counted: dict[str, int],
    notes: str | None,
    override_reason: str | None,
) -> int:
    unacked_p1 = conn.execute(
        "SELECT id, type FROM alarms WHERE priority = 1 AND acked_at IS NULL AND state != 'closed'"
    ).fetchall()
    if unacked_p1 and not (admin and override_reason and override_reason.strip()):
        listed = ", ".join(f"{i} ({t})" for i, t in unacked_p1)
        raise Conflict(
            f"cannot hand over with priority-1 alarms unacknowledged: {listed}; acknowledge "
            "them, or a supervisor (admin) may override with override_reason"
        )
    built = build_report(conn, cfg, now, counted, notes)
    # frozen as people read it, every time in ISO 8601 like the API's; the office gets the
    # same document, so the hash it is sent with is the hash of what it holds
    report = shaped(built, cfg.tz)
    text = json.dumps(report, ensure_ascii=False, sort_keys=True)
    sha = hashlib.sha256(text.encode()).hexdigest()
    handover_id = store.insert(conn, Handover, {
        "shift": built["shift"], "shift_start": built["shift_start"], "created_at": now,
        "created_by": by, "report": text, "report_sha256": sha,
        "override_by": by if unacked_p1 else None,
        "override_reason": override_reason if unacked_p1 else None,
    })  # fmt: skip
    outbox.add(conn, None, "handover", str(handover_id), {"id": handover_id, "by": by,
               "report": report, "report_sha256": sha,
               "override_reason": override_reason if unacked_p1 else None}, now)  # fmt: skip
    dutylog.add(
        conn, now, by, "handover", f"handover {handover_id} of the {report['shift']} shift made"
    )
    return handover_id


def get(conn: sqlite3.Connection, handover_id: int) -> dict[str, Any]:
    rows = db.rows(conn, "SELECT * FROM handovers WHERE id = ?", (handover_id,))
    if not rows:
        raise NotFound(f"no handover with id {handover_id}")
    h = rows[0]
    h["report"] = json.loads(h["report"])
    return h


def sign(conn: sqlite3.Connection, handover_id: int, by: str, now: float) -> dict[str, Any]:
    """The outgoing officer (its maker) signs first, then the incoming one — someone else."""
    h = get(conn, handover_id)
    if h["outgoing_by"] is None:
        if by != h["created_by"]:
            raise DomainError(f"the outgoing officer ({h['created_by']}) signs first")
        conn.execute(
            "UPDATE handovers SET outgoing_by = ?, outgoing_at = ? WHERE id = ?",
            (by, now, handover_id),
        )
    elif h["incoming_by"] is None:
        if by == h["outgoing_by"]:
            raise DomainError("the incoming officer must be someone other than the outgoing one")
        conn.execute(
            "UPDATE handovers SET incoming_by = ?, incoming_at = ? WHERE id = ?",
            (by, now, handover_id),
        )
        dutylog.add(conn, now, by, "handover", f"handover {handover_id} taken over by {by}")
    else:
        raise Conflict(f"handover {handover_id} is signed by both shifts already")
    signed = get(conn, handover_id)
    outbox.add(conn, None, "handover_signed", str(handover_id), {"id": handover_id, "by": by,
               "outgoing_by": signed["outgoing_by"], "incoming_by": signed["incoming_by"],
               "report_sha256": signed["report_sha256"]}, now)  # fmt: skip
    return signed


def latest(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    ids = [r[0] for r in conn.execute("SELECT id FROM handovers ORDER BY id DESC LIMIT ?",
                                      (limit,))]  # fmt: skip
    return [get(conn, i) for i in ids]
