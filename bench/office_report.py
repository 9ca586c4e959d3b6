"""The office's monthly report and event list over a month of 50 gates' records.

A scratch PostgreSQL database, migrated, is filled by generate_series in SQL (seconds, not
the minutes a push would take) with one month of records from 50 nodes in the mix a gate
sends: access events (ts, decision, gate), alarms raised and acknowledged (at, type),
confiscations (at, gate), slips released and rejected at a gate (the slip's row, with its
closed_at), and other kinds the report does not count (duty log, visitors, pictures).

Measured:

1. ``sync.reports.monthly_report`` — wall time, best of ``--runs``, and the extra peak RSS
   of this process (VmHWM after / before) — beside a BASELINE in the same run: the same
   SQL run by ``psql`` itself (``\\timing``), the floor any Python around it stands on;
   RATIO = report / psql. Targets: at most 5 s and 100 MB over 4.5M records.
2. One page of ``GET /api/v1/events`` deep into the table (page ``--page`` of 100): a real
   office over HTTP with the keyset cursor, and the two queries themselves, keyset and the
   OFFSET the route used before.

``--months-before K`` fills as many records in each of the K months before (an office
keeps every month): the report should cost its own month's records, not the table's.

Run: .venv/bin/python bench/office_report.py [--events N] [--runs R] [--page P]
[--months-before K]   (4.5M records: about 2 minutes, most of it the fill; needs
PostgreSQL)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2
from common import drop, main_guard, rss_kib, scratch_db

from edge.slips import month_bounds
from sync import officedb, partitions, reports
from sync.office_api import event_cursor
from tests.helpers import Office, http_call

MONTH = "2026-03"
TZ = ZoneInfo("Asia/Shanghai")  # the office's default zone
NODES = 50
TARGET_S = 5.0
TARGET_MB = 100.0
PAGE = 100

# Each record's kind from a hash of its number, in a gate's proportions (per 1,000): most
# are swipes; alarms raised and acknowledged, confiscations, slips, and kinds not counted.
# The hash keeps the kinds spread over nodes and hours (i % 50 is the node). The SQL goes
# through psycopg2 with parameters, so its modulo is written %%.
_R = "(((i * 2654435761) %% 4294967296) %% 1000)"
_MIX = f"""
CASE WHEN {_R} < 10 THEN 'alarm_raised' WHEN {_R} < 20 THEN 'alarm_acked'
     WHEN {_R} < 24 THEN 'confiscation' WHEN {_R} < 34 THEN 'slip_released'
     WHEN {_R} < 36 THEN 'slip_rejected' WHEN {_R} < 46 THEN 'duty_log'
     WHEN {_R} < 56 THEN 'visitor_in' ELSE 'access_event' END"""
_GATE = "(CASE WHEN i %% 3 = 0 THEN 'side' ELSE 'main' END)"
_TYPES = "(ARRAY['fire','intrusion','first_aid','repair','door_forced','tamper'])"
# the payloads as the gates write them (edge.gate, edge.alarms, edge.pass_ops, edge.slips)
_PAYLOAD = f"""
CASE m
WHEN 'access_event' THEN jsonb_build_object(
    'event_id', md5(i::text), 'ts', ts, 'node', node, 'gate', {_GATE}, 'reader', 'r1',
    'direction', 'in', 'decision', CASE WHEN i %% 7 = 0 THEN 'deny' ELSE 'grant' END,
    'reason', CASE WHEN i %% 7 = 0 THEN 'expired' ELSE 'ok' END,
    'pass_id', left(md5(i::text), 16), 'pass_kind', 'resident', 'card_key', i %% 100000,
    'card_hex', lpad(to_hex(i %% 100000), 8, '0'), 'holder', '张*', 'source', 'reader',
    'stale', false, 'by', NULL, 'notes', NULL)
WHEN 'alarm_raised' THEN jsonb_build_object(
    'uid', md5(i::text), 'type', {_TYPES}[1 + i %% 6], 'priority', 1 + i %% 3,
    'source', 'panel', 'gate', {_GATE}, 'location', '3号楼', 'floor', '3', 'room', NULL,
    'state', 'new', 'count', 1, 'resolution', NULL, 'alarm_id', i, 'action', 'raised',
    'by', NULL, 'detail', NULL, 'at', ts)
WHEN 'alarm_acked' THEN jsonb_build_object(
    'uid', md5(i::text), 'type', {_TYPES}[1 + i %% 6], 'priority', 1 + i %% 3,
    'source', 'panel', 'gate', {_GATE}, 'location', '3号楼', 'floor', '3', 'room', NULL,
    'state', 'acknowledged', 'count', 1, 'resolution', NULL, 'alarm_id', i,
    'action', 'acknowledged', 'by', '值班员', 'detail', NULL, 'at', ts)
WHEN 'confiscation' THEN jsonb_build_object(
    'id', i, 'pass_id', left(md5(i::text), 16), 'gate', {_GATE}, 'reason', '冒用',
    'by', '门岗', 'at', ts)
WHEN 'duty_log' THEN jsonb_build_object(
    'id', i, 'at', ts, 'by', '门岗', 'category', 'gate', 'text', '交接班检查完毕')
WHEN 'visitor_in' THEN jsonb_build_object(
    'id', i, 'name', '访客', 'host_unit', '3-1-502', 'purpose', '探亲', 'plate', NULL,
    'arrived_at', ts, 'gate', {_GATE})
ELSE jsonb_build_object(
    'id', i, 'number', 'FX-2026-' || lpad(i::text, 5, '0'), 'unit', '3-1-502',
    'owner', '张三丰', 'bearer', '张三丰', 'authorisation', 'in_person',
    'authorisation_detail', '{{}}'::jsonb,
    'items', '[{{"name": "冰箱", "qty": 1, "hazard": null}}]'::jsonb,
    'hazard_allowed', false, 'valid_from', ts - 3600, 'valid_until', ts + 82800,
    'approver', NULL, 'status', substr(m, 6), 'issued_by', 'office', 'issued_at', ts - 3600,
    'closed_by', '门岗', 'closed_at', ts, 'gate', {_GATE},
    'notes', CASE WHEN m = 'slip_rejected' THEN '物品不符' END, 'snapshot_id', NULL,
    'version', 1, 'origin', 'office')
END"""
_FILL = f"""
INSERT INTO edge_events (node_id, epoch, seq, kind, ref, payload, sha256, received_at)
SELECT node, %(epoch)s, i / {NODES} + 1, CASE WHEN m LIKE 'alarm%%' THEN 'alarm' ELSE m END,
       'r' || i, {_PAYLOAD}, md5(i::text) || md5((-i)::text), ts + 1.5 + (i %% 5)
FROM (
    SELECT i, 'gate-' || lpad((i %% {NODES})::text, 2, '0') AS node, {_MIX} AS m,
           %(start)s::float8 + (i + 0.5) * %(step)s::float8 + (i %% 1000) / 1e6 AS ts
    FROM generate_series(%(lo)s::bigint, %(hi)s::bigint - 1) AS i
) AS g
"""
_CHUNK = 500_000  # rows per INSERT: progress to print, one transaction each


def fill(url: str, n: int, months_before: int = 0) -> float:
    """``n`` records of the month from 50 nodes, after as many in each of the
    ``months_before`` months before it (each month an epoch of its own); the seconds."""
    year, month = map(int, MONTH.split("-"))
    months = [f"{year + (month - 1 - k) // 12}-{(month - 1 - k) % 12 + 1:02d}"
              for k in range(months_before, -1, -1)]  # fmt: skip
    eng = officedb.engine(url)  # the months' partitions first, as the office's pushes make them
    with eng.begin() as c:
        for name in months:
            start, end = month_bounds(name, TZ)
            for year, month_ in sorted({partitions.month_of(start), partitions.month_of(end - 1)}):
                partitions.ensure(c, year, month_)
    eng.dispose()
    t0 = time.perf_counter()
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        for epoch, name in enumerate(months, 1):  # oldest first, as they arrived
            start, end = month_bounds(name, TZ)
            for lo in range(0, n, _CHUNK):
                hi = min(n, lo + _CHUNK)
                cur.execute(_FILL, {"start": start, "step": (end - start) / n, "lo": lo,
                                    "hi": hi, "epoch": epoch})  # fmt: skip
                print(f"  filled {hi:,} of {n:,} of {name} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)  # fmt: skip
        # as a long-running office's table is: hint bits set, visibility map and statistics
        cur.execute("VACUUM (ANALYZE) edge_events")
        cur.execute(
            "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) "
            "FROM pg_inherits WHERE inhparent = 'edge_events'::regclass"
        )  # its months
        print(f"  edge_events: {cur.fetchone()[0]} with its indexes", flush=True)
    conn.close()
    return time.perf_counter() - t0


def psql_seconds(dbname: str, sqls: list[str]) -> float:
    """The statements run by psql itself, timed by its \\timing: their total seconds."""
    command = ["psql", "-X", "-q", "-d", dbname, "-c", "\\timing on"]
    for sql in sqls:
        command += ["-c", sql]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    times = [float(ms) for ms in re.findall(r"^Time: ([\d.]+) ms", out, re.MULTILINE)]
    if len(times) != len(sqls):
        raise RuntimeError(f"psql printed {len(times)} timings for {len(sqls)} statements")
    return sum(times) / 1000


def report_phase(url: str, dbname: str, runs: int, n: int, total: int) -> None:
    eng = officedb.engine(url)
    with eng.connect() as c:  # connected, and the report's imports loaded, before measuring
        c.exec_driver_sql("SELECT 1")
    p = reports.params(MONTH, TZ)
    raw = psycopg2.connect(url)
    with raw.cursor() as cur:  # the same statements, their parameters written in
        sqls = [cur.mogrify(s, p).decode() for s in (reports.OFFICE_SLIPS_SQL, reports.EVENTS_SQL)]
        cur.execute("EXPLAIN " + sqls[1])
        plan = [r[0] for r in cur.fetchall()]
    raw.close()
    before = rss_kib(os.getpid(), "VmHWM")
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        with eng.connect() as c:
            report = reports.monthly_report(c, MONTH, TZ)
        took.append(time.perf_counter() - t0)
    extra_mb = (rss_kib(os.getpid(), "VmHWM") - before) / 1024
    eng.dispose()
    base = min(psql_seconds(dbname, sqls) for _ in range(runs))
    best = min(took)
    counted = sum(sum(report[k].values()) for k in
                  ("decisions", "alarms_by_type", "confiscations", "gate_slips"))  # fmt: skip
    print(f"office_report: monthly_report({MONTH!r}) over {n:,} records of the month "
          f"({total:,} in the table), {NODES} nodes "
          f"(best of {runs})")  # fmt: skip
    print(f"  plan: {plan[0].strip()} ... {' | '.join(x.strip() for x in plan if 'Scan' in x)}")
    print(f"  counted {counted:,} records: {len(report['decisions'])} node decisions, "
          f"{len(report['confiscations'])} node gates, alarms {report['alarms_by_shift']}, "
          f"gate slips {sum(report['gate_slips'].values()):,}")  # fmt: skip
    runs_s = ", ".join(f"{x:.3f}" for x in took)
    print(f"  report (Python, sync.reports)      {best:8.3f} s   runs: {runs_s}")
    print(f"  BASELINE the same SQL in psql      {base:8.3f} s")
    print(f"RATIO report / psql = {best / base:.2f}")
    print(f"  extra peak RSS of the report: {extra_mb:.1f} MB")
    print(f"TARGET time <= {TARGET_S:.0f} s: {'met' if best <= TARGET_S else 'MISSED'} "
          f"({best:.2f} s); extra RSS <= {TARGET_MB:.0f} MB: "
          f"{'met' if extra_mb <= TARGET_MB else 'MISSED'} ({extra_mb:.1f} MB)")  # fmt: skip


_PAGE_COLUMNS = "node_id, kind, seq, epoch, payload::text"


def _timed(cur: Any, sql: str, args: tuple[Any, ...], runs: int) -> tuple[float, int]:
    took = []
    for _ in range(runs):
        t0 = time.perf_counter()
        cur.execute(sql, args)
        rows = cur.fetchall()
        took.append(time.perf_counter() - t0)
    return min(took), len(rows)


def events_phase(url: str, page: int, runs: int) -> None:
    skip = (page - 1) * PAGE
    raw = psycopg2.connect(url)
    with raw.cursor() as cur:
        # the last row of the page before: where page ``page``'s cursor points
        cur.execute("SELECT received_at, node_id, epoch, seq FROM edge_events "
                    "ORDER BY received_at DESC, node_id DESC, epoch DESC, seq DESC "
                    "OFFSET %s LIMIT 1", (skip - 1,))  # fmt: skip
        last = cur.fetchone()
        offset_s, got_o = _timed(cur, f"SELECT {_PAGE_COLUMNS} FROM edge_events "
                                 "ORDER BY received_at DESC, seq DESC OFFSET %s LIMIT %s",
                                 (skip, PAGE + 1), runs)  # fmt: skip
        keyset_s, got_k = _timed(cur, f"SELECT {_PAGE_COLUMNS} FROM edge_events "
                                 "WHERE (received_at, node_id, epoch, seq) < (%s, %s, %s, %s) "
                                 "ORDER BY received_at DESC, node_id DESC, epoch DESC, seq DESC "
                                 "LIMIT %s", (*last, PAGE + 1), runs)  # fmt: skip
    raw.close()
    assert got_o == got_k == PAGE + 1
    workdir = Path(tempfile.mkdtemp(prefix="gh-bench-report-"))
    office = Office(workdir, url)
    try:
        clerk = office.token("user", "add", "clerk", "--role", "clerk")
        office.start()
        cursor = event_cursor(*last)
        path = f"/api/v1/events?limit={PAGE}&cursor={cursor}"
        http_call(office.url, "GET", path, clerk)  # warm: a connection, the plan
        took = []
        for _ in range(runs):
            t0 = time.perf_counter()
            status, body = http_call(office.url, "GET", path, clerk)
            took.append(time.perf_counter() - t0)
            assert status == 200 and len(body["items"]) == PAGE, (status, body)
        api_s = min(took)
    finally:
        office.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"office_events: page {page:,} of {PAGE} (rows {skip:,}-{skip + PAGE - 1:,}), "
          f"best of {runs}")  # fmt: skip
    print(f"  GET /api/v1/events with the keyset cursor   {api_s * 1000:9.2f} ms")
    print(f"  its query, keyset                           {keyset_s * 1000:9.2f} ms")
    print(f"  BASELINE the old query, OFFSET {skip:<10,}   {offset_s * 1000:9.2f} ms")
    print(f"RATIO keyset / OFFSET (queries) = {keyset_s / offset_s:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4_500_000, help="records in the month")
    parser.add_argument("--runs", type=int, default=3, help="runs of each timing (best)")
    parser.add_argument("--page", type=int, default=1000, help="the event page to time")
    parser.add_argument("--months-before", type=int, default=0,
                        help="fill as many records in each of this many months before")  # fmt: skip
    args = parser.parse_args()
    dbname, url = scratch_db()
    try:
        eng = officedb.engine(url)
        officedb.migrate(eng)
        eng.dispose()
        print(f"filling {args.events:,} records of {MONTH} from {NODES} nodes, and as many in "
              f"each of {args.months_before} months before", flush=True)  # fmt: skip
        fill_s = fill(url, args.events, args.months_before)
        print(f"  fill took {fill_s:.0f} s", flush=True)
        total = args.events * (args.months_before + 1)
        report_phase(url, dbname, args.runs, args.events, total)
        events_phase(url, min(args.page, max(2, args.events // PAGE - 1)), args.runs)
    finally:
        drop(dbname)


if __name__ == "__main__":
    main_guard(main)
