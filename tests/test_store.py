"""The store: migrations match the models, pragmas hold, and the one writer commits in groups."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from edge import db
from edge.models import SQLModel
from edge.writer import CallJob, Writer


def test_migrations_build_exactly_the_schema_of_the_models(tmp_path: Path):
    path = tmp_path / "e.db"
    db.migrate(path)
    eng = db.engine(path)
    with eng.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    db.migrate(path)  # a second run is a no-op


def test_connections_use_wal_and_full_sync(tmp_path: Path):
    path = tmp_path / "e.db"
    db.migrate(path)
    conn = db.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_the_epoch_is_made_once_and_kept(tmp_path: Path):
    path = tmp_path / "e.db"
    db.migrate(path)
    first = db.ensure_epoch(db.connect(path))
    assert db.ensure_epoch(db.connect(path)) == first


def put(key: str):
    return lambda c: db.set_meta(c, key, "v")


def test_a_failing_job_rolls_back_alone(writer: Writer, tmp_path: Path):
    def boom(c: sqlite3.Connection):
        db.set_meta(c, "half-done", "x")
        raise ValueError("bad job")

    jobs = [CallJob(put("a")), CallJob(boom), CallJob(put("b"))]
    for j in jobs:
        writer.submit(j)
    jobs[0].future.result(5), jobs[2].future.result(5)
    with pytest.raises(ValueError, match="bad job"):
        jobs[1].future.result(5)
    conn = db.connect(tmp_path / "e.db")
    keys = {r[0] for r in conn.execute("SELECT key FROM node_meta")}
    assert {"a", "b"} <= keys and "half-done" not in keys


def test_jobs_queued_while_the_writer_is_busy_share_one_commit(writer: Writer, tmp_path: Path):
    """Group commit, proved: hold the writer inside a first job, queue 200 jobs behind it,
    let it go; the 200 go to disk in one transaction (one fsync), not 200."""
    running, release = threading.Event(), threading.Event()

    def hold(c: sqlite3.Connection) -> None:
        running.set()
        assert release.wait(10), "the test never released the writer"

    first = CallJob(hold)
    writer.submit(first)
    assert running.wait(5)  # the writer is inside the first job's transaction
    before = writer.commits
    jobs = [CallJob(put(f"k{i}")) for i in range(200)]
    for j in jobs:
        writer.submit(j)
    release.set()
    first.future.result(5)
    for j in jobs:
        j.future.result(5)
    # one commit for the held job, one for everything queued behind it
    assert writer.commits - before == 2
    conn = db.connect(tmp_path / "e.db")
    keys = {r[0] for r in conn.execute("SELECT key FROM node_meta WHERE key LIKE 'k%'")}
    assert keys == {f"k{i}" for i in range(200)}


def test_acknowledged_outbox_rows_are_kept_30_days_then_pruned(tmp_path: Path):
    import time

    from edge.housekeeping import prune_outbox

    path = tmp_path / "e.db"
    db.migrate(path)
    conn = db.connect(path)
    now = time.time()
    rows = [(1, now - 40 * 86400), (1, now - 1), (1, None)]
    conn.executemany(
        "INSERT INTO outbox (epoch, kind, ref, payload, created_at, acked_at) "
        "VALUES (?, 'x', 'r', '{}', 0, ?)",
        rows,
    )
    assert prune_outbox(conn, now) == 1
    left = conn.execute("SELECT acked_at IS NULL FROM outbox ORDER BY seq").fetchall()
    assert left == [(0,), (1,)]  # the recent acknowledged row and the unacknowledged one
    conn.execute(
        "INSERT INTO outbox (epoch, kind, ref, payload, created_at) VALUES (1,'x','r','{}',0)"
    )
    assert conn.execute("SELECT max(seq) FROM outbox").fetchone()[0] == 4  # never reused
