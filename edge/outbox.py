"""The outbox: everything bound for the office, numbered per node in the writer's transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from pydantic_core import to_json

from edge import db, store
from edge.models import Outbox


def add(
    conn: sqlite3.Connection,
    epoch: int | None,
    kind: str,
    ref: str,
    payload: dict[str, Any],
    now: float,
) -> None:
    """``epoch`` None: the node's current one, read in this transaction."""
    if epoch is None:
        row = conn.execute("SELECT value FROM node_meta WHERE key = 'epoch'").fetchone()
        epoch = int(row[0]) if row else db.new_epoch(conn)
    row = {"epoch": epoch, "kind": kind, "ref": ref, "payload": to_json(payload).decode(),
           "created_at": now}  # fmt: skip
    store.insert(conn, Outbox, row)


def next_seq(conn: sqlite3.Connection) -> int:
    """The seq the outbox hands out next: AUTOINCREMENT's counter, which outlives the rows
    (pruned ones too), so an epoch's first seq is never below it."""
    top = conn.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]
    counter = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
    return max(int(top), int(counter[0]) if counter else 0) + 1
