"""The outbox: everything bound for the office, numbered per node in the writer's transaction."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge import db

# one encoder: json.dumps with options builds a new one per call (a third of its cost on
# the swipe path, which encodes three times a swipe)
_JSON = json.JSONEncoder(ensure_ascii=False)


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
        (epoch, kind, ref, _JSON.encode(payload), now),
    )
