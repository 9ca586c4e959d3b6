"""Backups: online, consistent, checked; a restore starts a new epoch.

Edge: SQLite's online backup API copies the live database (WAL and all) page by page while
the service runs; the copy is then checked with ``PRAGMA integrity_check``. Restoring puts
the copy in place and gives the node a new epoch, so sequence numbers the lost database had
already handed out are never reused under the epoch the office knows them by.

Office: ``pg_dump`` in its custom format, checked by listing it; restored with
``pg_restore --clean``. Gates notice an office that lost records they had sent (it answers
a lower high-water mark) and send them again.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

from edge import db, outbox
from edge.errors import DomainError


def backup_edge(db_path: Path, target: Path) -> int:
    """Copy the live database to ``target``; the number of pages, or DomainError."""
    if target.exists():
        raise DomainError(f"{target} exists already; choose a new file")
    src = db.connect(db_path)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        pages = dst.execute("PRAGMA page_count").fetchone()[0]
    finally:
        dst.close()
        src.close()
    if check != "ok":
        target.unlink()
        raise DomainError(f"the copy failed its integrity check: {check}")
    return int(pages)


def restore_edge(source: Path, db_path: Path) -> int:
    """Put a backup in place (the service must be stopped); returns the new epoch.

    Refused while the service runs: it would keep writing into the files this replaces,
    and the restore would be silently undone."""
    if not source.is_file():
        raise DomainError(f"{source} is not a file")
    try:
        held = db.hold(db_path)
    except db.InUse:
        raise DomainError(
            f"the service is running on {db_path}: stop it first "
            "(systemctl stop gatehouse-edge), then restore"
        ) from None
    try:
        return _restore_edge(source, db_path)
    finally:
        db.release(held)


def _restore_edge(source: Path, db_path: Path) -> int:
    probe = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        check = probe.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise DomainError(f"{source} is not a Gatehouse database: {e}") from None
    finally:
        probe.close()
    if check != "ok":
        raise DomainError(f"{source} failed its integrity check: {check}")
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(source, db_path)
    db.migrate(db_path)
    conn = db.connect(db_path)
    try:
        old = db.get_meta(conn, "epoch")
        first = outbox.next_seq(conn)  # (not max(seq)+1: pruned rows' seqs are used up)
        conn.execute("BEGIN IMMEDIATE")
        epoch = db.new_epoch(conn)
        db.set_meta(conn, f"epoch_base:{epoch}", str(first))
        db.set_meta(conn, "restored_from_epoch", str(old))
        conn.execute("COMMIT")
    finally:
        conn.close()
    return epoch


def backup_office(database_url: str, target: Path) -> None:
    if target.exists():
        raise DomainError(f"{target} exists already; choose a new file")
    _run(["pg_dump", "--format=custom", f"--file={target}", database_url], "pg_dump")
    _run(["pg_restore", "--list", str(target)], "the dump's check")


def restore_office(source: Path, database_url: str) -> None:
    if not source.is_file():
        raise DomainError(f"{source} is not a file")
    _run(["pg_restore", "--clean", "--if-exists", "--no-owner", f"--dbname={database_url}",
          str(source)], "pg_restore")  # fmt: skip


def _run(cmd: list[str], what: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise DomainError(f"{cmd[0]} is not installed (Debian package postgresql-client)")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise DomainError(f"{what} failed: {done.stderr.strip().splitlines()[-1:]}")
