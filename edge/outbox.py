"""The outbox: everything bound for the office, numbered per node in the writer's transaction."""

from __future__ import annotations

import sqlite3
from typing import Any

from pydantic_core import to_json

from edge import db


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
    conn.execute(
        "INSERT INTO outbox (epoch, kind, ref, payload, created_at) VALUES (?,?,?,?,?)",
        (epoch, kind, ref, to_json(payload).decode(), now),
    )
