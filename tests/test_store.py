"""The store: migrations match the models, pragmas hold, and the one writer commits in groups."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from edge import db, store
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


def test_the_schema_head_the_cli_trusts_is_alembic_s_head(tmp_path: Path):
    """A database stamped with SCHEMA_HEAD skips Alembic (a CLI call's start-up): it must be
    the newest migration, or a new one would never run."""
    from alembic.script import ScriptDirectory

    assert ScriptDirectory.from_config(db._alembic_config()).get_current_head() == db.SCHEMA_HEAD
    path = tmp_path / "e.db"
    db.migrate(path)
    assert db.stamped(path) == db.SCHEMA_HEAD


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


def _static_sql() -> list[tuple[str, int, str]]:
    """Every whole SQL statement written as a literal in edge/ (not docstrings, not the
    pieces of an f-string): (file, line, statement)."""
    import ast

    found = []
    root = Path(__file__).parent.parent / "edge"
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text())
        skip = {id(c) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for c in n.values}
        skip |= {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}  # docstrings
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            sql = node.value.strip()
            verb = sql.split(maxsplit=1)[0].upper() if sql else ""
            if id(node) not in skip and verb in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
                found.append((path.name, node.lineno, sql))
    return found


def test_every_static_statement_prepares_against_the_migrated_schema(tmp_path: Path):
    """The runtime's SQL and the migrations' schema are one: a statement naming a column or
    table the migrations do not make fails here, not on a swipe."""
    path = tmp_path / "e.db"
    db.migrate(path)
    conn = db.connect(path)
    statements = _static_sql()
    assert len(statements) > 60  # the scan finds them (74 today; inserts go through store)
    wrong = []
    for name, line, sql in statements:
        if "temp." in sql:  # an import's own scratch tables, made as it runs
            continue
        # a fragment ending in AND is the head of a query finished elsewhere: finish it
        for text in (sql, f"{sql} 1"):
            try:
                conn.execute(f"EXPLAIN {text}")
            except sqlite3.ProgrammingError:
                pass  # prepared, then refused for want of parameters: the schema fits
            except sqlite3.Error as e:
                if "incomplete input" in str(e):
                    continue
                wrong.append(f"{name}:{line}: {e}: {sql[:60]}")
            break
    assert wrong == []


def test_insert_builds_from_the_models_columns_and_names_a_wrong_one(tmp_path: Path):
    from edge import models, store

    path = tmp_path / "e.db"
    db.migrate(path)
    conn = db.connect(path)
    row = {"at": 1.0, "by": "老张", "action": "pass:issue", "subject": "p1"}
    rowid = store.insert(conn, models.AuditEntry, row)
    got = conn.execute("SELECT at, by, action, subject FROM audit_log WHERE id = ?", (rowid,))
    assert got.fetchone() == (1.0, "老张", "pass:issue", "p1")
    with pytest.raises(ValueError, match="audit_log has no column actor"):
        store.insert(conn, models.AuditEntry, {"at": 1.0, "actor": "x"})
    assert store.select_list(models.Pass, "id", "kind") == "id, kind"
    with pytest.raises(ValueError, match="passes has no column holder"):
        store.select_list(models.Pass, "id", "holder")


def test_new_ids_are_32_hex_digits_and_do_not_repeat() -> None:
    ids = [store.new_id() for _ in range(100_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
