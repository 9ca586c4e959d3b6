"""值班记录 The duty log: entries by officers and guards, and automatic ones for alarms,
confiscations, manual openings and intercom calls."""

from __future__ import annotations

import sqlite3
from typing import Any

from edge import db, outbox, store
from edge.errors import DomainError
from edge.models import DutyLogEntry

CATEGORIES = ("general", "patrol", "alarm", "complaint", "repair", "visitor", "equipment",
              "handover", "intercom", "gate", "keys")  # fmt: skip


def add(
    conn: sqlite3.Connection,
    now: float,
    by: str,
    category: str,
    text: str,
    alarm_id: int | None = None,
) -> int:
    if category not in CATEGORIES:
        raise DomainError(f"category: must be one of {', '.join(CATEGORIES)}")
    if not text.strip():
        raise DomainError("text: must not be empty")
    row = {"at": now, "by": by, "category": category, "text": text.strip(), "alarm_id": alarm_id}
    entry_id = store.insert(conn, DutyLogEntry, row)
    outbox.add(conn, None, "duty_log", str(entry_id), {"id": entry_id, **row}, now)
    return entry_id


def between(conn: sqlite3.Connection, start: float, end: float) -> list[dict[str, Any]]:
    return db.rows(
        conn, "SELECT * FROM duty_log WHERE at >= ? AND at < ? ORDER BY at, id", (start, end)
    )
