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


def test_holder_names_and_ended_passes_photos_are_removed_after_their_period(tmp_path: Path):
    """[privacy] holder_days (180): an access event older than that loses its holder's name
    once the office has it, and keeps it while it still waits in the outbox. photo_days (30):
    the photo of a pass that ended longer ago than that is dropped, and its file deleted
    unless another pass still shows it. Each removal is in the audit log."""
    import io

    from PIL import Image

    from edge import db, outbox, photos

    node = node_for(tmp_path, [])
    with node.config.open("a") as f:  # an office that never answers: nothing is ever sent
        f.write(f'[sync]\noffice_url = "http://127.0.0.1:{free_port()}"\ntoken = "t"\n')
    cli(node.config, "pass", "list")  # the database, at the newest schema
    conn = db.connect(node.config.parent / "var" / "edge.db")
    store = photos.store_for(node.config.parent / "var")
    now, day = time.time(), 86400

    def picture(colour: tuple[int, int, int]) -> str:
        shot = io.BytesIO()
        Image.new("RGB", (120, 160), colour).save(shot, "JPEG")
        return store.put(shot.getvalue())

    old, shared, recent = picture((200, 0, 0)), picture((0, 200, 0)), picture((0, 0, 200))
    with conn:
        for event_id, days, sent in (("sent-181", 181, True), ("waiting-181", 181, False),
                                     ("sent-179", 179, True)):  # fmt: skip
            ts = now - days * day
            conn.execute(
                "INSERT INTO access_events (event_id, ts, gate, decision, reason, source, "
                "stale, holder) VALUES (?, ?, 'main', 'grant', 'ok', 'mqtt', 0, '张三丰')",
                (event_id, ts),
            )
            outbox.add(conn, None, "access_event", event_id, {"event_id": event_id}, ts)
            if sent:
                conn.execute("UPDATE outbox SET acked_at = ? WHERE ref = ?", (ts + 1, event_id))
        for pass_id, status, ended_days, sha in (
            ("revoked-31", "revoked", 31, old), ("expired-31", "active", 31, shared),
            ("live", "active", None, shared), ("revoked-29", "revoked", 29, recent),
        ):  # fmt: skip
            ended = now - ended_days * day if ended_days else None
            conn.execute(
                "INSERT INTO passes (id, kind, card_key, name, valid_from, valid_until, "
                "status, issued_at, updated_at, version, origin, photo_sha256) "
                "VALUES (?, 'worker', ?, '工人', ?, ?, ?, ?, ?, 1, 'local', ?)",
                (pass_id, hash(pass_id) & 0xFFFF, now - 400 * day,
                 ended if status == "active" else None, status, now - 400 * day,
                 ended if status != "active" else now - 400 * day, sha),
            )  # fmt: skip
    node.start()
    try:
        wait_for(lambda: conn.execute("SELECT count(*) FROM audit_log WHERE action IN "
                                      "('purge:holder_names', 'purge:photos')").fetchone()[0]
                 == 2, 20, "the names and photos removed at start")  # fmt: skip
    finally:
        node.stop()
    names = dict(conn.execute("SELECT event_id, holder FROM access_events"))
    assert names == {"sent-181": None, "waiting-181": "张三丰", "sent-179": "张三丰"}
    shown = dict(conn.execute("SELECT id, photo_sha256 FROM passes"))
    assert shown == {"revoked-31": None, "expired-31": None, "live": shared, "revoked-29": recent}
    assert not store.has(old) and store.has(shared) and store.has(recent)
    conn.close()
    code, said = verify(node.config)
    assert code == 0 and said["whole"], said
