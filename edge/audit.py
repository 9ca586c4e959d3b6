"""The audit log: who saw personal data unmasked, who issued or revoked what."""

from __future__ import annotations

import sqlite3
import time


def record(conn: sqlite3.Connection, by: str, action: str, subject: str | None = None) -> None:
    conn.execute(
        "INSERT INTO audit_log (at, by, action, subject) VALUES (?,?,?,?)",
        (time.time(), by, action, subject),
    )
