"""A gate's mode for emergencies: normal, held open, locked (000 §八.13).

The fire procedure keeps the lane open for the fire engines; a robbery calls for a locked
gate. The control room (a control or admin user, never a guard alone: a locked gate keeps
people in) sets a gate's mode with a reason, until a time or until cancelled. The mode is
kept in ``gate_modes`` (no row: normal), read by the gate decision on every swipe
(edge.decision: locked denies ``gate_locked`` except staff; held open decides as usual),
written in the duty log, listed in the handover, and published retained on MQTT
(``gate/<id>/mode``) for the relay and every other system.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from edge import db, dutylog, notify, outbox
from edge.config import NotifyCfg
from edge.decision import MODES
from edge.errors import DomainError
from edge.shape import shaped

MAX_UNTIL_S = 7 * 86400  # a mode with an end is for an incident, not for good


def current(conn: sqlite3.Connection, gate: str, now: float) -> dict[str, Any]:
    """The gate's mode now (one ended by its ``until`` is normal again)."""
    row = db.row(conn, "SELECT * FROM gate_modes WHERE gate = ?", (gate,))
    if row is None or (row["until"] is not None and row["until"] <= now):
        return {"gate": gate, "mode": "normal", "until": None, "reason": None,
                "set_by": None, "set_at": None}  # fmt: skip
    return row


def mode_of(conn: sqlite3.Connection, gate: str, now: float) -> str:
    """For the decision, on every swipe (the table's key: one lookup)."""
    return str(current(conn, gate, now)["mode"])


def set_mode(conn: sqlite3.Connection, gate: str, mode: str, until: float | None, reason: str,
             by: str, now: float, notify_cfg: NotifyCfg | None = None,
             tz: Any = None) -> dict[str, Any]:  # fmt: skip
    """Set (or with ``normal``, end) a gate's mode; in the duty log, to the office, and to
    the channels off the box that take it (``notify_cfg``, edge.notify)."""
    if mode not in MODES:
        raise DomainError(f"mode: must be one of {', '.join(MODES)}")
    if not reason.strip():
        raise DomainError("reason: a gate's mode is changed with its reason")
    if until is not None and not now < until <= now + MAX_UNTIL_S:
        raise DomainError("until: after now, and within 7 days")
    was = current(conn, gate, now)["mode"]
    if mode == "normal":
        conn.execute("DELETE FROM gate_modes WHERE gate = ?", (gate,))
    else:
        conn.execute(
            "INSERT INTO gate_modes (gate, mode, until, reason, set_by, set_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(gate) DO UPDATE SET mode = excluded.mode, "
            "until = excluded.until, reason = excluded.reason, set_by = excluded.set_by, "
            "set_at = excluded.set_at",
            (gate, mode, until, reason.strip(), by, now),
        )
    dutylog.add(conn, now, by, "gate", f"gate {gate}: {was} -> {mode}: {reason.strip()}")
    got = current(conn, gate, now)
    outbox.add(conn, None, "gate_mode", f"{gate}:{now:.3f}",
               got | {"was": was, "reason": reason.strip(), "set_by": by, "set_at": now},
               now)  # fmt: skip
    if notify_cfg is not None:
        notify.gate_mode_changed(conn, notify_cfg, got, was, by, reason.strip(), now, tz)
    return got


def message(m: dict[str, Any], tz: Any) -> tuple[str, dict[str, Any]]:
    """A gate's mode as published, retained: its topic and payload."""
    return f"gate/{m['gate']}/mode", shaped(m, tz)


def not_normal(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    """The gates held open or locked now, for the handover and the guard's screen."""
    found = db.rows(conn, "SELECT * FROM gate_modes WHERE until IS NULL OR until > ? "
                          "ORDER BY gate", (now,))  # fmt: skip
    return found
