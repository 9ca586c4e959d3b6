"""Reading access events: the list a guard or the control room pages through.

Newest first by time, read along an index whatever the filters: (gate, ts) with a gate,
(ts) without. A page ends at its last event, and the next starts below that event's
(time, id), so a range a year back costs what the newest page costs
(tests/test_query_plans.py checks the plans on a million events)."""

from __future__ import annotations

import sqlite3
from typing import Any

from edge import db
from edge.snapshots import JOIN_COLUMNS


def list_events(
    conn: sqlite3.Connection,
    limit: int,
    gate: str | None = None,
    decision: str | None = None,
    reason: str | None = None,
    since: float | None = None,
    until: float | None = None,
    after: int | None = None,
) -> list[dict[str, Any]]:
    """``since`` inclusive, ``until`` exclusive, UNIX seconds; ``after``: the id of the
    last event of the page before (the list's cursor)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("gate", gate), ("decision", decision), ("reason", reason)):
        if value:
            where.append(f"e.{column} = ?")
            args.append(value)
    if since is not None:
        where.append("e.ts >= ?")
        args.append(since)
    if until is not None:
        where.append("e.ts < ?")
        args.append(until)
    if after is not None:
        where.append("(e.ts, e.id) < (SELECT ts, id FROM access_events WHERE id = ?)")
        args.append(after)
    sql = (
        f"SELECT e.*, {JOIN_COLUMNS} FROM access_events e "
        "LEFT JOIN snapshots s ON s.id = e.snapshot_id"
    )
    if where:
        sql += " WHERE " + " AND ".join(where)
    return db.rows(conn, sql + " ORDER BY e.ts DESC, e.id DESC LIMIT ?", (*args, limit))
