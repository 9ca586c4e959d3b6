"""Housekeeping off the swipe path: the outbox pruned in chunks through the writer, on an
index, with other jobs let in between; the escalation scan reads only what may be due."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from edge import alarms, db
from edge.clock import FixedClock
from edge.config import AlarmsCfg
from edge.housekeeping import CHUNK, OUTBOX_KEEP_S, Housekeeper, Task, prune_outbox, task
from edge.writer import CallJob, Writer

NOW = 1_800_000_000.0
DAY = 86400.0


def plan(conn: sqlite3.Connection, sql: str, args: tuple = ()) -> list[str]:
    return [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]


def fill_outbox(path: Path, rows: list[float | None]) -> None:
    conn = db.connect(path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO outbox (epoch, kind, ref, payload, created_at, acked_at) "
        "VALUES (1, 'event', 'r', '{}', 0, ?)",
        [(a,) for a in rows],
    )
    conn.execute("COMMIT")
    conn.close()


def test_pruning_finds_its_rows_on_the_index_never_by_a_scan(path: Path):
    conn = db.connect(path)
    fill_outbox(path, [NOW - 40 * DAY] * 50 + [None] * 50)
    conn.execute("ANALYZE")  # whatever the statistics say, the plan stays a search
    traced: list[str] = []
    conn.set_trace_callback(traced.append)
    assert prune_outbox(conn, NOW, limit=10) == 10
    conn.set_trace_callback(None)
    (delete,) = [s for s in traced if s.startswith("DELETE")]
    steps = plan(conn, delete)
    assert any("USING COVERING INDEX ix_outbox_acked" in s for s in steps), steps
    assert not any(s.startswith("SCAN") for s in steps), steps


def test_50k_expired_acknowledged_rows_go_in_chunks_and_the_rest_stays(path: Path, writer: Writer):
    expired, recent, unacked = 50_000, 300, 700
    fill_outbox(
        path,
        [NOW - OUTBOX_KEEP_S - 1 - i for i in range(expired)]  # acknowledged, past keeping
        + [NOW - DAY] * recent  # acknowledged yesterday: kept for 30 days
        + [None] * unacked,  # not yet acknowledged: kept whatever its age
    )
    jobs: list[int] = []
    real_call = writer.call

    def counting_call(fn, after=None, timeout=10.0):  # type: ignore[no-untyped-def]
        n = real_call(fn, after, timeout)
        jobs.append(n)
        return n

    writer.call = counting_call  # type: ignore[method-assign]
    keeper = Housekeeper(writer, lambda: NOW, run_at_start=True, pause_s=0.001)
    assert keeper.run_due() == {"outbox": expired}
    # 25 full chunks of 2,000, then one that found nothing left: 26 writer jobs, none big
    assert jobs == [CHUNK] * (expired // CHUNK) + [0]
    assert keeper.chunks == len(jobs) and keeper.removed["outbox"] == expired
    conn = db.connect(path)
    left = conn.execute("SELECT count(*), count(acked_at), min(acked_at) FROM outbox").fetchone()
    assert left == (recent + unacked, recent, NOW - DAY)
    assert keeper.run_due() == {}  # not due again for an hour
    assert not keeper.due()


def test_other_jobs_get_the_writer_between_two_chunks(path: Path, writer: Writer):
    fill_outbox(path, [NOW - 40 * DAY] * 20_000)
    order: list[str] = []
    pruning = task("outbox", prune_outbox)
    counted = Task(pruning.name, lambda c, now, limit: order.append("prune") or
                   pruning.run(c, now, limit))  # fmt: skip
    keeper = Housekeeper(writer, lambda: NOW, [counted], chunk=1000, run_at_start=True)
    stop = threading.Event()

    def swipes() -> None:  # a job every 2 ms, as a burst of swipes would queue them
        while not stop.is_set():
            writer.submit(CallJob(lambda c: order.append("swipe")))
            time.sleep(0.002)

    t = threading.Thread(target=swipes)
    t.start()
    try:
        assert keeper.run_due()["outbox"] == 20_000
    finally:
        stop.set()
        t.join()
    pruning = order[order.index("prune") : len(order) - order[::-1].index("prune")]
    gaps = "".join("p" if o == "prune" else "s" for o in pruning).split("p")[1:-1]
    assert len(gaps) == 20  # 21 chunks (the last found nothing)
    assert all(gaps), "a chunk followed another with no other job let in between"


def test_the_thread_beats_runs_when_due_and_stops(path: Path, writer: Writer):
    fill_outbox(path, [NOW - 40 * DAY] * 10)
    clock = FixedClock(NOW)
    keeper = Housekeeper(writer, clock.now, monotonic=clock.monotonic).start()
    try:
        assert keeper.alive()
        time.sleep(1.2)
        assert keeper.removed["outbox"] == 0  # the first run is an hour after the start
        assert keeper.due(clock.monotonic() + 3600) and not keeper.due()
        clock.advance(3600)
        wait = time.monotonic() + 5
        while keeper.removed["outbox"] < 10 and time.monotonic() < wait:
            time.sleep(0.05)
        assert keeper.removed["outbox"] == 10 and keeper.alive()
        clock.advance(60)  # the heartbeat is on the monotonic clock passed in
        assert keeper.alive(within_s=120) and not keeper.alive(within_s=30)
    finally:
        keeper.stop()
    assert not keeper.alive()


def test_a_failing_chunk_is_logged_and_the_thread_lives_on(path: Path, writer: Writer):
    def broken(c: sqlite3.Connection, now: float, limit: int) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    keeper = Housekeeper(writer, lambda: NOW, [Task("broken", broken, 3600.0)], run_at_start=True)
    assert keeper.run_due() == {}
    assert keeper.failures == 1 and "disk I/O error" in (keeper.last_error or "")
    assert not keeper.due()  # tried again at its next time, not in a loop


# -- the escalation scan ------------------------------------------------------------------


def open_alarms(path: Path, rows: list[tuple[int, float, float | None, float | None]]) -> None:
    """(priority, raised_at, escalated_at, shelved_until) per alarm, all unacknowledged."""
    conn = db.connect(path)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO alarms (uid, type, priority, source, raised_at, last_active_at, "
        "escalated_at, escalation_level, shelved_until, active, count, state, checklist) "
        "VALUES (?,?,?,?,?,?,?,?,?,1,1,'new','[]')",
        [
            (f"u{i}", "door", p, f"alarm-input:{i}", r, r, e, 0 if e is None else 1, s)
            for i, (p, r, e, s) in enumerate(rows)
        ],
    )
    conn.execute("COMMIT")
    conn.close()


def test_escalation_reads_only_the_alarms_that_may_be_due(path: Path):
    cfg = AlarmsCfg(escalate_after_s={1: 30.0, 2: 120.0, 3: 600.0})
    quiet = [(1 + i % 3, NOW - 3600, NOW - 5 - i % 20, None) for i in range(20_000)]
    due = [
        (1, NOW - 31, None, None),  # never escalated, past its limit
        (2, NOW - 3600, NOW - 121, None),  # escalated once, as long again has passed
        (3, NOW - 600, None, None),  # exactly at the limit
        (7, NOW - 601, None, None),  # a priority with no limit configured: 600 s
    ]
    not_due = [
        (1, NOW - 29, None, None),
        (2, NOW - 3600, NOW - 119, None),
        (1, NOW - 3600, None, NOW + 60),  # shelved
    ]
    open_alarms(path, quiet + due + not_due)
    conn = db.connect(path)
    conn.execute("UPDATE alarms SET state = 'closed' WHERE id = 1")  # closed: never
    conn.execute("UPDATE alarms SET acked_at = ? WHERE id = 2", (NOW,))  # acknowledged: never
    conn.execute("ANALYZE")
    traced: list[str] = []
    conn.set_trace_callback(traced.append)
    conn.execute("BEGIN")
    changed = alarms.escalate_due(conn, cfg, NOW)
    conn.execute("COMMIT")
    conn.set_trace_callback(None)
    first_due = len(quiet) + 1
    assert changed == list(range(first_due, first_due + len(due)))
    levels = conn.execute(
        "SELECT escalation_level, escalated_at FROM alarms WHERE id >= ? ORDER BY id",
        (first_due,),
    ).fetchall()
    assert levels[: len(due)] == [(1, NOW), (2, NOW), (1, NOW), (1, NOW)]
    assert [lv for lv, _ in levels[len(due) :]] == [0, 1, 0]
    selects = [s for s in traced if s.lstrip().upper().startswith("SELECT") and "alarms" in s]
    assert selects
    for sql in selects:
        if "FROM alarms WHERE acked_at IS NULL" in sql:
            steps = plan(conn, sql)
            assert any("ix_alarms_awaiting_ack" in s for s in steps), (sql, steps)
            assert not any(s.startswith("SCAN") for s in steps), (sql, steps)
    # and again half a second later: nothing more is due yet
    conn.execute("BEGIN")
    assert alarms.escalate_due(conn, cfg, NOW + 0.5) == []
    conn.execute("COMMIT")


def test_a_retention_chunk_asks_only_about_its_own_pictures_on_an_index(path: Path):
    """Reading every open alarm in each chunk held the writer for milliseconds on an estate
    with thousands of them; the chunk's look-up is one index search per picture."""
    from edge.cameras import Cameras

    conn = db.connect(path)
    conn.execute("ANALYZE")
    traced: list[str] = []
    conn.set_trace_callback(traced.append)
    assert Cameras._kept_among(conn, [3, 5, 8]) == set()
    conn.set_trace_callback(None)
    (lookup,) = [s for s in traced if s.startswith("SELECT")]
    steps = plan(conn, lookup)
    assert any("INDEX ix_alarms_snapshot" in s for s in steps), steps
    assert not any(s.startswith("SCAN") for s in steps), steps
