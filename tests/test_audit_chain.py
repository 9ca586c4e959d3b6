"""The audit log is append-only and hash-chained: an entry edited or removed by hand is
found by `gatehouse audit verify` (issue 14)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import cli, free_port, write_config


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
