"""The audit log: who saw personal data unmasked, who issued or revoked what."""

from __future__ import annotations

import sqlite3


def record(conn: sqlite3.Connection, by: str, action: str, subject: str | None, now: float) -> None:
    conn.execute(
        "INSERT INTO audit_log (at, by, action, subject) VALUES (?,?,?,?)",
        (now, by, action, subject),
    )
