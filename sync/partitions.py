"""``edge_events`` by month: one partition per calendar month (UTC) of ``received_at``.

What a company keeps grows by every gate's every record; a month is the unit it is kept
or let go in. Retention detaches whole months (``detach_before``): nothing is deleted row
by row, and a detached month stays a plain table (``edge_events_archive_YYYY_MM``) to dump
and drop when the company's rules say so. The push makes sure its month and the next
exist before it writes (``Months``), so a month's first record never waits on a lock
behind the partition it needs. ``edge_events_default`` holds what falls in no month
made yet (an office clock set years wrong, rows put in by hand); ``ensure`` moves them
into their month when it makes it.

A seq at or below its epoch's high-water mark is never stored again (sync.office), so a
gate sending again records of a month detached long ago does not bring them back.
"""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from edge.errors import DomainError

PARENT = "edge_events"
DEFAULT = "edge_events_default"
_NAME = re.compile(r"^edge_events_(\d{4})_(\d{2})$")


def month_of(ts: float) -> tuple[int, int]:
    d = datetime.fromtimestamp(ts, UTC)
    return d.year, d.month


def bounds(year: int, month: int) -> tuple[float, float]:
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start.timestamp(), end.timestamp()


def name(year: int, month: int) -> str:
    return f"{PARENT}_{year:04d}_{month:02d}"


def ensure(conn: Connection, year: int, month: int) -> bool:
    """The month's partition, made if missing (what the default partition holds of that
    month moves into it); True if it was made here."""
    table = name(year, month)
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None:
        return False
    start, end = bounds(year, month)
    # one maker at a time across office processes; the others find it made
    conn.execute(text("SELECT pg_advisory_xact_lock(7217)"))
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": table}).scalar() is not None:
        return False
    within = f"received_at >= {start!r} AND received_at < {end!r}"
    stray = conn.execute(text(f"SELECT EXISTS (SELECT 1 FROM {DEFAULT} WHERE {within})")).scalar()
    if stray:  # a new partition may not overlap rows the default holds: move them first
        conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {DEFAULT}"))
    conn.execute(text(f"CREATE TABLE {table} PARTITION OF {PARENT} "
                      f"FOR VALUES FROM ({start!r}) TO ({end!r})"))  # fmt: skip
    if stray:
        conn.execute(text(f"INSERT INTO {table} SELECT * FROM {DEFAULT} WHERE {within}"))
        conn.execute(text(f"DELETE FROM {DEFAULT} WHERE {within}"))
        conn.execute(text(f"ALTER TABLE {PARENT} ATTACH PARTITION {DEFAULT} DEFAULT"))
    return True


class Months:
    """The months this process knows exist: a push looks here, not at the catalogue."""

    def __init__(self) -> None:
        self._made: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def ensure(self, eng: Engine, now: float) -> None:
        """This month and the next (a few days ahead: a push at 23:59 on the 31st)."""
        wanted = {month_of(now), month_of(now + 5 * 86400)}
        with self._lock:
            missing = wanted - self._made
        for year, month in sorted(missing):
            with eng.begin() as c:
                ensure(c, year, month)
            with self._lock:
                self._made.add((year, month))


def months(conn: Connection) -> list[dict[str, Any]]:
    """The partitions, oldest first, with their rows (the planner's estimate: a count of a
    year of records would take minutes)."""
    rows = conn.execute(text(
        "SELECT c.relname, c.reltuples FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = CAST(:p AS regclass) ORDER BY c.relname"
    ), {"p": PARENT}).all()  # fmt: skip
    out = []
    for relname, tuples in rows:
        m = _NAME.match(relname)
        month = f"{m.group(1)}-{m.group(2)}" if m else None
        out.append({"partition": relname, "month": month, "rows": max(int(tuples), 0)})
    return out


def detach_before(conn: Connection, month: str, drop: bool = False) -> list[str]:
    """Detach every month before ``month`` (YYYY-MM) from edge_events: renamed
    ``edge_events_archive_YYYY_MM`` (still in the database, and in its dumps), or dropped.
    Answers the months let go."""
    m = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not m or not 1 <= int(m.group(2)) <= 12:
        raise DomainError(f"month: {month!r} is not YYYY-MM")
    cutoff = (int(m.group(1)), int(m.group(2)))
    gone = []
    for p in months(conn):
        found = _NAME.match(p["partition"])
        if not found or (int(found.group(1)), int(found.group(2))) >= cutoff:
            continue
        table = p["partition"]
        conn.execute(text(f"ALTER TABLE {PARENT} DETACH PARTITION {table}"))
        if drop:
            conn.execute(text(f"DROP TABLE {table}"))
        else:
            conn.execute(text(f"ALTER TABLE {table} RENAME TO "
                              f"{table.replace(PARENT, PARENT + '_archive', 1)}"))  # fmt: skip
        gone.append(p["month"])
    return gone
