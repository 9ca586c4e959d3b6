"""The audit log: who saw personal data unmasked, who issued or revoked what, what was purged.

Append-only and hash-chained: each entry holds the hash of the entry before it
(``prev_hash``) and its own (``hash``, over ``prev_hash`` and its fields), and the table
refuses UPDATE and DELETE (migration 0012). An entry edited or removed by hand, with the
triggers dropped, breaks the chain where it was: ``verify`` finds it. Removing the newest
entries leaves a shorter chain that is whole, so ``verify`` also prints the newest entry's
hash, to be noted elsewhere (the duty log, the handover) and compared later.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass

from edge import store
from edge.models import AuditEntry


def entry_hash(prev_hash: str, at: float, by: str, action: str, subject: str | None) -> str:
    """The hash an entry carries: of the one before it and of what it says."""
    text = json.dumps([prev_hash, at, by, action, subject], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def record(conn: sqlite3.Connection, by: str, action: str, subject: str | None, now: float) -> None:
    last = conn.execute("SELECT hash FROM audit_log ORDER BY id DESC LIMIT 1").fetchone()
    prev = (last[0] or "") if last else ""  # entries from before the chain have none
    row = {"at": now, "by": by, "action": action, "subject": subject, "prev_hash": prev,
           "hash": entry_hash(prev, now, by, action, subject)}  # fmt: skip
    store.insert(conn, AuditEntry, row)


@dataclass(frozen=True)
class Verdict:
    entries: int  # in the log
    before_chain: int  # kept from before the chain began (migration 0012): not covered
    broken_at: int | None  # the id of the first entry that does not follow from the ones before
    problem: str  # why, in words; "" when whole
    head: str  # the newest entry's hash


def verify(conn: sqlite3.Connection) -> Verdict:
    """Walk the chain from the oldest entry; the first one that does not follow."""
    prev, started, n, legacy = "", False, 0, 0
    rows = conn.execute(
        "SELECT id, at, by, action, subject, prev_hash, hash FROM audit_log ORDER BY id"
    )
    for entry_id, at, by, action, subject, prev_hash, own in rows:
        n += 1
        if own is None and not started:
            legacy += 1
            continue
        started = True
        if own is None:
            problem = "its hash is gone"
        elif prev_hash != prev:
            problem = "the entry before it was removed or changed"
        elif own != entry_hash(prev, at, by, action, subject):
            problem = "it was changed after it was written"
        else:
            prev = own
            continue
        return Verdict(n, legacy, entry_id, problem, prev)
    return Verdict(n, legacy, None, "", prev)
