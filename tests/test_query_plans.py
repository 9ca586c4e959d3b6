"""The queries people wait on read an index, at a million access events.

Each query is the product's own: the function the route calls runs on a database of a
year's events (four gates, a million rows), its SQL is caught as SQLite ran it, and that
SQL's plan is read back with EXPLAIN QUERY PLAN. A plan that reads a whole table, or sorts
every matching row, is the slowness the issue measured (a year's range sorted: 1 s); the
figures are in bench/list_routes.py. The plans are those of a database never ANALYZEd,
as a gate's is."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge import alarms, db, event_reads, pass_reads, screen
from edge.config import parse

EVENTS = 1_000_000
GATES = ("main", "east", "west", "north")
NOW = time.time()
YEAR = 365 * 86400


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path = tmp_path_factory.mktemp("plans") / "edge.db"
    db.migrate(path)
    c = sqlite3.connect(path)
    c.execute("PRAGMA synchronous = OFF")  # a scratch database: filled fast, never kept
    step = YEAR / EVENTS
    with c:
        c.executemany(
            "INSERT INTO access_events (event_id, ts, gate, decision, reason, source, stale, "
            "card_key) VALUES (?, ?, ?, ?, ?, 'mqtt', 0, ?)",
            ((f"{i:032x}", NOW - YEAR + i * step, GATES[i % 4], "grant" if i % 7 else "deny",
              "ok" if i % 7 else "unknown_credential", i % 50_000) for i in range(EVENTS)),
        )  # fmt: skip
        c.executemany(
            "INSERT INTO passes (id, kind, card_key, name, unit, id_hash, valid_from, issued_at, "
            "updated_at, status, version, origin) "
            "VALUES (?, 'resident', ?, '住户', ?, ?, ?, ?, ?, 'active', 1, 'local')",
            ((f"p{i}", i, f"{i % 30}-{i // 30 % 6}-{i % 900}", f"h{i:06d}", NOW - YEAR,
              NOW - YEAR, NOW - YEAR) for i in range(20_000)),
        )  # fmt: skip
        c.executemany(
            "INSERT INTO alarms (uid, type, priority, source, gate, raised_at, last_active_at, "
            "state, checklist, active, count, escalation_level) "
            "VALUES (?, 'door_forced', 2, 'alarm-input:d', 'east', ?, ?, ?, '[]', 0, 1, 0)",
            ((f"u{i}", NOW - YEAR + i * 3600, NOW - YEAR + i * 3600,
              "new" if i % 100 == 0 else "closed") for i in range(5_000)),
        )  # fmt: skip
    c.row_factory = sqlite3.Row
    yield c
    c.close()


def caught(conn: sqlite3.Connection, read: Callable[[sqlite3.Connection], Any]) -> list[str]:
    """The SELECTs ``read`` ran, as SQLite ran them (parameters written in)."""
    ran: list[str] = []
    conn.set_trace_callback(ran.append)
    try:
        read(conn)
    finally:
        conn.set_trace_callback(None)
    return [s for s in ran if s.lstrip().upper().startswith("SELECT")]


def plan(conn: sqlite3.Connection, sql: str) -> list[str]:
    return [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql)]


def plans(conn: sqlite3.Connection, read: Callable[[sqlite3.Connection], Any]) -> list[str]:
    found = [step for sql in caught(conn, read) for step in plan(conn, sql)]
    assert found, "the read ran no SELECT"
    return found


def no_scan_or_sort(steps: list[str], table: str) -> None:
    """Neither a whole-table read of ``table`` nor a sort of its matching rows."""
    assert not [s for s in steps if s.startswith(f"SCAN {table}") or s == "SCAN e"], steps
    assert not [s for s in steps if "TEMP B-TREE" in s], steps


def test_events_of_a_gate_in_a_range_long_ago(conn: sqlite3.Connection):
    day = NOW - 200 * 86400
    steps = plans(conn, lambda c: event_reads.list_events(c, 51, "east", None, None, day,
                                                          day + 86400))  # fmt: skip
    assert any("ix_access_events_gate_ts" in s for s in steps), steps
    no_scan_or_sort(steps, "access_events")


def test_events_in_a_range_and_their_next_page(conn: sqlite3.Connection):
    day = NOW - 300 * 86400
    first = event_reads.list_events(conn, 51, since=day, until=day + 86400)
    assert len(first) == 51 and first[0]["ts"] > first[-1]["ts"]
    for after in (None, first[-1]["id"]):
        steps = plans(conn, lambda c, a=after: event_reads.list_events(
            c, 51, since=day, until=day + 86400, after=a))  # fmt: skip
        assert any("ix_access_events_ts" in s for s in steps), steps
        no_scan_or_sort(steps, "access_events")
    second = event_reads.list_events(conn, 51, since=day, until=day + 86400,
                                     after=first[-2]["id"])  # fmt: skip
    assert second[0]["id"] == first[-1]["id"]  # the page goes on where the last one ended


def test_the_newest_events_and_a_decision_filter(conn: sqlite3.Connection):
    for kwargs in ({}, {"decision": "deny"}, {"gate": "west", "reason": "unknown_credential"}):
        steps = plans(conn, lambda c, k=kwargs: event_reads.list_events(c, 51, **k))
        assert not [s for s in steps if "TEMP B-TREE" in s], (kwargs, steps)


def test_an_alarm_s_context_reads_its_gate_s_minutes_only(conn: sqlite3.Connection):
    alarm = {"gate": "east", "raised_at": NOW - 100 * 86400}
    steps = plans(conn, lambda c: alarms.context(c, alarm))
    assert any("ix_access_events_gate_ts" in s for s in steps), steps
    no_scan_or_sort(steps, "access_events")
    assert alarms.context(conn, alarm)  # there were events at the gate in those minutes


def test_the_guard_s_screen_reads_the_newest_events_back(conn: sqlite3.Connection, tmp_path: Path):
    cfg = parse({"node": {"id": "n1", "data_dir": str(tmp_path)},
                 "gates": [{"id": g} for g in GATES]})  # fmt: skip
    shown = screen.recent(conn, cfg, ["main", "east"])
    assert len(shown) == 12 and {d["event"]["gate"] for d in shown} == {"main", "east"}
    steps = plans(conn, lambda c: screen.recent(c, cfg, ["main", "east"]))
    assert not [s for s in steps if "TEMP B-TREE" in s], steps


def test_the_open_alarm_queue_reads_open_alarms_only(conn: sqlite3.Connection):
    steps = plans(conn, lambda c: alarms.listing(c, False, True, NOW, 100, None))
    assert any("ix_alarms_state" in s for s in steps), steps
    assert not [s for s in steps if s.startswith("SCAN a")], steps


def test_passes_of_a_unit_and_of_an_id_number(conn: sqlite3.Connection):
    steps = plans(conn, lambda c: pass_reads.list_passes(c, NOW, 51, unit="3-2-303"))
    assert any("ix_passes_unit" in s for s in steps), steps
    no_scan_or_sort(steps, "passes")
    steps = plan(conn, "SELECT * FROM passes WHERE id_hash = 'h000001'")
    assert any("ix_passes_id_hash" in s for s in steps), steps
