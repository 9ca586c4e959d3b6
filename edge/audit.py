"""The audit log: who saw personal data unmasked, who issued or revoked what."""

from __future__ import annotations

import sqlite3

from edge import store
from edge.models import AuditEntry


def record(conn: sqlite3.Connection, by: str, action: str, subject: str | None, now: float) -> None:
    row = {"at": now, "by": by, "action": action, "subject": subject}
    store.insert(conn, AuditEntry, row)
