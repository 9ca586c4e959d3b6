"""SQLite: WAL, synchronous=FULL, migrations on open, and the node's epoch.

The service writes through one connection in one thread (edge.writer); the CLI and the
API's reads open their own. Every connection gets the same pragmas, so a commit is on disk
when it returns, whoever made it.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a database must be created or upgraded: a CLI call on a
    # database at the newest schema (nearly every one) never pays the ~0.4 s they take
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision: a database stamped with it needs no Alembic at all.
# tests/test_store.py checks it against Alembic's own head, so a new migration updates it.
SCHEMA_HEAD = "0025"
BUSY_TIMEOUT_MS = 10_000


def _pragmas(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")


class InUse(RuntimeError):
    """Another process holds the database for itself (the running service, a restore)."""


def hold(path: Path) -> int:
    """Hold ``<database>.lock`` for as long as this process lives (or until released):
    the service holds it while it runs, a restore while it replaces the file, so neither
    can happen under the other. The kernel lets go when the process dies, kill -9 too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InUse(f"{path} is in use by another Gatehouse process") from None
    return fd


def release(fd: int) -> None:
    os.close(fd)  # closing the descriptor releases the lock


def connect(path: Path) -> sqlite3.Connection:
    """A raw connection in autocommit mode: callers open transactions explicitly."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    _pragmas(conn)
    return conn


def engine(path: Path) -> Engine:
    from sqlalchemy import create_engine, event

    eng = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False})

    @event.listens_for(eng, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        _pragmas(dbapi_conn)

    return eng


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def private(path: Path) -> None:
    """The database holds full names and unmasked cards: owner-only (0600), its WAL and
    shared-memory files too (SQLite makes them with the database's mode). A database made
    by an older release, or copied in with a loose mode, is tightened here."""
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if p.stat().st_mode & 0o077:
                p.chmod(0o600)
        except FileNotFoundError:
            pass


def migrate(path: Path) -> None:
    """Bring the database at ``path`` to the newest schema (creating it if new, 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():  # made empty and private first: SQLite would make it 0644
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    private(path)
    if stamped(path) == SCHEMA_HEAD:
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = _alembic_config()
    head = ScriptDirectory.from_config(cfg).get_current_head()
    eng = engine(path)
    try:
        with eng.begin() as conn:
            if MigrationContext.configure(conn).get_current_revision() == head:
                return
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    finally:
        eng.dispose()


def stamped(path: Path) -> str | None:
    """The revision the database at ``path`` says it is at (None: new, or no stamp)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # no table yet, or not a database: Alembic says which
        return None
    finally:
        conn.close()
    return row[0] if row else None


def rows(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """A query's rows as dicts (the row factory is the cursor's: the connection is untouched)."""
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    return [dict(r) for r in cur.execute(sql, args).fetchall()]


def row(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> dict[str, Any] | None:
    found = rows(conn, sql, args)
    return found[0] if found else None


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM node_meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO node_meta(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def new_epoch(conn: sqlite3.Connection) -> int:
    """Start a new epoch inside the caller's transaction."""
    epoch = int.from_bytes(secrets.token_bytes(4), "big") & 0x7FFFFFFF
    set_meta(conn, "epoch", str(epoch))
    return epoch


def ensure_epoch(conn: sqlite3.Connection) -> int:
    """The node's epoch: outbox sequence numbers are unique within (node, epoch).

    A restore from backup starts a new epoch (sync, issue 6), so a sequence number a
    lost database already handed out is never reused under the same epoch.
    """
    epoch = get_meta(conn, "epoch")
    if epoch is not None:
        return int(epoch)
    conn.execute("BEGIN IMMEDIATE")
    made = new_epoch(conn)
    conn.execute("COMMIT")
    return made


def yearly_serial(conn: sqlite3.Connection, table: str, letters: str, digits: int, now: float,
                  tz: Any) -> str:  # fmt: skip
    """The next serial number of a paper form kept in ``table`` (its ``number`` column),
    counted afresh each year as the paper books are: ``FX-2026-00001``. Called in the
    writer's transaction, so two forms never get the same number."""
    prefix = f"{letters}-{datetime.fromtimestamp(now, tz).year}-"
    last = conn.execute(f"SELECT max(number) FROM {table} WHERE number LIKE ?",
                        (prefix + "%",)).fetchone()[0]  # fmt: skip
    return f"{prefix}{int(last.rsplit('-', 1)[1]) + 1 if last else 1:0{digits}d}"
