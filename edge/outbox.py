"""The outbox: everything bound for the office, numbered per node in the writer's transaction."""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def add(
    conn: sqlite3.Connection, epoch: int, kind: str, ref: str, payload: dict[str, Any], now: float
) -> None:
    conn.execute(
        "INSERT INTO outbox (epoch, kind, ref, payload, created_at) VALUES (?,?,?,?,?)",
        (epoch, kind, ref, json.dumps(payload, ensure_ascii=False), now),
    )
