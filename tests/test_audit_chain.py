"""Personal data with an end (issue 14): the audit log is append-only and hash-chained, so
an entry edited or removed by hand is found by `gatehouse audit verify`; visitor records are
purged after their period, and each purge is in that log."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from tests.helpers import cli, free_port, node_for, wait_for, write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=free_port())


def verify(config: Path) -> tuple[int, dict]:
    out = cli(config, "--json", "audit", "verify", check=False)
    return out.returncode, json.loads(out.stdout)


def audited(config: Path, n: int) -> sqlite3.Connection:
    """``n`` audit entries, written as the service writes them (edge.audit.record)."""
    from edge import audit, db

    conn = db.connect(config.parent / "var" / "edge.db")
    with conn:
        for i in range(n):
            audit.record(conn, "王主任", "unmask:passes", f"{i} rows", 1_800_000_000.0 + i)
    return conn


def test_an_edited_or_removed_entry_is_found(config: Path):
    cli(config, "pass", "list")  # the database, at the newest schema
    conn = audited(config, 5)
    code, said = verify(config)
    assert code == 0 and said["whole"] and said["entries"] == 5 and len(said["head"]) == 64

    # the table refuses changes from any connection: the service's, a person's sqlite3
    for sql in ("UPDATE audit_log SET subject = 'nothing' WHERE id = 2",
                "DELETE FROM audit_log WHERE id = 2"):  # fmt: skip
        with pytest.raises(sqlite3.IntegrityError, match="append-only"), conn:
            conn.execute(sql)

    # someone who drops the triggers first is still found out
    with conn:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("UPDATE audit_log SET subject = '0 rows, honestly' WHERE id = 3")
    code, said = verify(config)
    assert code == 1 and said["broken_at"] == 3 and "changed" in said["problem"], said
    plain = cli(config, "audit", "verify", check=False)
    assert plain.returncode == 1 and plain.stdout.startswith("audit log broken at entry 3")

    with conn:
        conn.execute("UPDATE audit_log SET subject = '2 rows' WHERE id = 3")  # put back
        conn.execute("DROP TRIGGER audit_log_no_delete")
        conn.execute("DELETE FROM audit_log WHERE id = 2")
    code, said = verify(config)
    assert code == 1 and said["broken_at"] == 3 and "removed" in said["problem"], said
    conn.close()


def test_visitor_records_are_purged_after_their_period_and_the_purge_is_audited(tmp_path: Path):
    """A node keeps visitor records [privacy] visitor_days (90): at its start (and hourly)
    the older ones go, each purge written to the audit log, whose chain stays whole."""
    from edge import db, visitors
    from edge.privacy import IdHasher

    node = node_for(tmp_path, [])
    cli(node.config, "pass", "list")  # the database, at the newest schema
    conn = db.connect(node.config.parent / "var" / "edge.db")
    now = time.time()
    with conn:
        for name, days in (("访客甲", 91), ("访客乙", 89)):
            req = visitors.VisitorRequest(name=name, host_unit="3-1-502", plate="沪A12345")
            visitors.register(conn, req, IdHasher(b"k" * 32), "老张", now - days * 86400)
    node.start()
    try:
        wait_for(lambda: conn.execute("SELECT count(*) FROM visitors").fetchone()[0] == 1, 20,
                 "the 91-day-old visitor purged")  # fmt: skip
    finally:
        node.stop()
    assert [r[0] for r in conn.execute("SELECT name FROM visitors")] == ["访客乙"]
    ((by, action, subject),) = conn.execute("SELECT by, action, subject FROM audit_log")
    assert (by, action) == ("housekeeping", "purge:visitors") and subject.startswith("1 ")
    conn.close()
    code, said = verify(node.config)
    assert code == 0 and said["whole"] and said["entries"] == 1
