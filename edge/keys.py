"""钥匙借用 Key loans: the guard room's key cabinet and its loan register.

From the manuals (003 §六, 000 §七(3), 002 KF-001 §4):
- a loan records the key, the borrower, their phone, the reason, how many, and the
  borrower's signature; owners, sales staff and the management's own staff borrow by
  registering and signing; anyone else only with a supervisor's approval;
- a contractor's key goes only to that contractor's responsible person, in person;
- on return the keys are counted and the receiver signs (the guard logged in); a
  contractor's loan is crossed off (消项) only once the room was inspected and found in
  order, with the inspector's name and time; a problem found keeps it open;
- a loan longer than 3 days (``[keys] loan_days``) is chased: an alarm ``key_overdue``
  in the control room's queue, which returns to normal when the keys come back;
- a key lost means the lock is to be changed: an alarm ``key_lost``, and the cabinet
  holds one fewer.

The same register lends other items (umbrellas, tools: 002 KF-022) as keys of kind
``item``. Every change goes to the office through the outbox (``key_loan``), and the loans
still open are in the handover ("12 keys, 11 counted" names who holds the twelfth).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge import alarms, db, dutylog, outbox, store
from edge.config import Config
from edge.errors import Conflict, DomainError, NotFound
from edge.models import Key, KeyLoan
from edge.privacy import mask_name

KINDS = ("unit", "public", "item")
BORROWERS = ("owner", "sales", "staff", "contractor", "other")
# who borrows by registering and signing; anyone else needs a supervisor (000 §七(3))
FREE_TO_BORROW = ("owner", "sales", "staff")
DAY_S = 86400.0


@dataclass(frozen=True)
class LoanRequest:
    key_id: str
    borrower: str
    borrower_kind: str
    phone: str
    reason: str
    signature: str  # the SHA-256 of the signature's picture, uploaded first
    quantity: int = 1
    company: str | None = None
    approved_by: str | None = None
    due_at: float | None = None  # default: [keys] loan_days from now
    notes: str | None = None


def refusal(key: dict[str, Any], in_cabinet: int, req: LoanRequest,
            supervisor: bool) -> str | None:  # fmt: skip
    """Why ``req`` may not take ``key`` (``in_cabinet`` of it not lent now; ``supervisor``:
    ``approved_by`` names one), or None. Pure: the rules of the register, nothing else."""
    if key["retired_at"] is not None:
        return f"key {key['id']} is retired (its lock was changed, or it is gone)"
    if req.quantity > in_cabinet:
        return f"key {key['id']}: {req.quantity} asked, {in_cabinet} in the cabinet"
    if key["contractor"]:
        if (req.borrower_kind != "contractor" or req.company != key["contractor"]
                or req.borrower != key["responsible"]):  # fmt: skip
            return (f"key {key['id']} is {key['contractor']}'s: only its responsible person, "
                    f"{key['responsible']}, may borrow it, in person")  # fmt: skip
        return None
    if req.borrower_kind in FREE_TO_BORROW:
        return None
    if not req.approved_by:
        return (f"a borrower of kind {req.borrower_kind} needs a supervisor's approval "
                "(approved_by)")  # fmt: skip
    if not supervisor:
        return f"approved_by: {req.approved_by} is not a supervisor (admin) of this gate"
    return None


def add_key(conn: sqlite3.Connection, fields: dict[str, Any], by: str, now: float) -> dict:
    if fields["kind"] not in KINDS:
        raise DomainError(f"kind: must be one of {', '.join(KINDS)}")
    if bool(fields.get("contractor")) != bool(fields.get("responsible")):
        raise DomainError("contractor and responsible: a contractor's key names both")
    if db.row(conn, "SELECT id FROM keys WHERE id = ?", (fields["id"],)):
        raise Conflict(f"key {fields['id']} is in the cabinet already")
    store.insert(conn, Key, fields | {"created_by": by, "created_at": now})
    outbox.add(conn, None, "key", fields["id"], get_key(conn, fields["id"]), now)
    return get_key(conn, fields["id"])


def get_key(conn: sqlite3.Connection, key_id: str) -> dict[str, Any]:
    found = db.row(conn, "SELECT * FROM keys WHERE id = ?", (key_id,))
    if found is None:
        raise NotFound(f"no key {key_id!r} in the cabinet")
    return found


def _lent(conn: sqlite3.Connection, key_id: str) -> int:
    """How many of the key are out now (lent, not back, not lost)."""
    return int(conn.execute(
        "SELECT coalesce(sum(quantity), 0) FROM key_loans WHERE key_id = ? "
        "AND closed_at IS NULL AND returned_at IS NULL", (key_id,)
    ).fetchone()[0])  # fmt: skip


def keys(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The cabinet: each key with how many are in it now."""
    found = db.rows(conn, "SELECT * FROM keys ORDER BY id", ())
    for k in found:
        k["in_cabinet"] = k["quantity"] - _lent(conn, k["id"])
    return found


def _supervisor(conn: sqlite3.Connection, name: str | None) -> bool:
    if not name:
        return False
    row = conn.execute(
        "SELECT 1 FROM users WHERE name = ? AND role = 'admin' AND revoked_at IS NULL", (name,)
    ).fetchone()
    return row is not None


def lend(conn: sqlite3.Connection, cfg: Config, epoch: int, req: LoanRequest,
         has_picture: Callable[[str], bool], by: str, now: float) -> dict[str, Any]:  # fmt: skip
    if req.borrower_kind not in BORROWERS:
        raise DomainError(f"borrower_kind: must be one of {', '.join(BORROWERS)}")
    if not (req.borrower.strip() and req.phone.strip() and req.reason.strip()):
        raise DomainError("borrower, phone and reason: all are required (the register asks)")
    if not 1 <= req.quantity <= 100:
        raise DomainError(f"quantity: {req.quantity} is not from 1 to 100")
    if not has_picture(req.signature):
        raise DomainError(
            "signature: upload the borrower's signature first (POST /api/v1/key-loans/signatures)"
        )
    due = req.due_at if req.due_at is not None else now + cfg.keys.loan_days * DAY_S
    if not now < due <= now + 365 * DAY_S:
        raise DomainError("due_at: must be after now and within a year")
    key = get_key(conn, req.key_id)
    why = refusal(key, key["quantity"] - _lent(conn, key["id"]), req,
                  _supervisor(conn, req.approved_by))  # fmt: skip
    if why is not None:
        raise Conflict(why)
    loan_id = store.insert(conn, KeyLoan, {
        "key_id": key["id"], "quantity": req.quantity, "borrower": req.borrower.strip(),
        "borrower_kind": req.borrower_kind, "company": req.company, "phone": req.phone.strip(),
        "reason": req.reason.strip(), "signature_sha256": req.signature,
        "approved_by": req.approved_by, "lent_by": by, "lent_at": now, "due_at": due,
        "notes": req.notes,
    })  # fmt: skip
    who = mask_name(req.borrower, cfg.rules.name_mask)
    dutylog.add(conn, now, by, "keys",
                f"key {key['id']} ({key['label']}) ×{req.quantity} lent to {who}")  # fmt: skip
    return _changed(conn, epoch, loan_id, now)


def get(conn: sqlite3.Connection, loan_id: int) -> dict[str, Any]:
    found = db.row(
        conn,
        "SELECT l.*, k.label, k.unit, k.kind, k.contractor AS key_contractor "
        "FROM key_loans l JOIN keys k ON k.id = l.key_id WHERE l.id = ?",
        (loan_id,),
    )
    if found is None:
        raise NotFound(f"no key loan {loan_id}")
    return found


def _changed(conn: sqlite3.Connection, epoch: int, loan_id: int, now: float) -> dict[str, Any]:
    loan = get(conn, loan_id)
    outbox.add(conn, epoch, "key_loan", str(loan_id), loan, now)
    return loan


def _open(conn: sqlite3.Connection, loan_id: int) -> dict[str, Any]:
    loan = get(conn, loan_id)
    if loan["closed_at"] is not None:
        raise Conflict(f"key loan {loan_id} is closed already")
    return loan


def return_(conn: sqlite3.Connection, epoch: int, loan_id: int, count: int, by: str,
            now: float, notes: str | None = None) -> tuple[dict[str, Any], list[int]]:  # fmt: skip
    """The keys are back and counted by the receiver (``by``); the loan and the alarm ids
    it changed. A contractor's loan waits for the room's inspection to be closed."""
    loan = _open(conn, loan_id)
    if loan["returned_at"] is not None:
        raise Conflict(f"key loan {loan_id}: the keys are back already")
    if count != loan["quantity"]:
        raise DomainError(f"count: {count} counted of {loan['quantity']} lent; report the "
                          f"missing ones lost (POST /api/v1/key-loans/{loan_id}/lost)")  # fmt: skip
    closes = loan["key_contractor"] is None
    conn.execute(
        "UPDATE key_loans SET returned_at = ?, returned_by = ?, returned_count = ?, "
        "closed_at = ?, notes = coalesce(?, notes) WHERE id = ?",
        (now, by, count, now if closes else None, notes, loan_id),
    )
    what = "returned and crossed off" if closes else "returned; the room is to be inspected"
    dutylog.add(conn, now, by, "keys", f"key {loan['key_id']} ×{count} {what}")
    ids = _cleared(conn, loan_id, now)
    return _changed(conn, epoch, loan_id, now), ids


def inspect(conn: sqlite3.Connection, epoch: int, loan_id: int, ok: bool, inspector: str,
            notes: str | None, by: str, now: float) -> dict[str, Any]:  # fmt: skip
    """A contractor's room inspected after the keys came back: in order, the loan is
    crossed off; not, the contractor is to put it right and the loan stays open until an
    inspection passes (003 §六)."""
    loan = _open(conn, loan_id)
    if loan["key_contractor"] is None:
        raise Conflict(f"key loan {loan_id} is not a contractor's: it closed at its return")
    if loan["returned_at"] is None:
        raise Conflict(f"key loan {loan_id}: the keys are not back yet")
    if not inspector.strip():
        raise DomainError("inspected_by: name who inspected the room")
    if not ok and not (notes and notes.strip()):
        raise DomainError("notes: say what is to be put right")
    conn.execute(
        "UPDATE key_loans SET inspected_by = ?, inspected_at = ?, inspection_notes = ?, "
        "closed_at = ? WHERE id = ?",
        (inspector.strip(), now, notes, now if ok else None, loan_id),
    )
    said = "in order; crossed off" if ok else f"to be put right: {notes}"
    text = f"room of key {loan['key_id']} inspected by {inspector.strip()}: {said}"
    dutylog.add(conn, now, by, "keys", text)
    return _changed(conn, epoch, loan_id, now)


def lost(conn: sqlite3.Connection, cfg: Config, epoch: int, loan_id: int, count: int,
         notes: str | None, by: str, now: float) -> tuple[dict[str, Any], list[int]]:  # fmt: skip
    """Some or all of the keys lent are lost (the rest, if any, came back): the loan is
    closed, the cabinet holds that many fewer, and ``key_lost`` asks for the lock to be
    changed."""
    loan = _open(conn, loan_id)
    if loan["returned_at"] is not None:
        raise Conflict(f"key loan {loan_id}: the keys are back already")
    if not 1 <= count <= loan["quantity"]:
        raise DomainError(f"count: {count} is not from 1 to the {loan['quantity']} lent")
    back = loan["quantity"] - count
    conn.execute(
        "UPDATE key_loans SET lost_at = ?, lost_count = ?, returned_at = ?, returned_by = ?, "
        "returned_count = ?, closed_at = ?, notes = coalesce(?, notes) WHERE id = ?",
        (now, count, now, by, back, now, notes, loan_id),
    )
    conn.execute(
        "UPDATE keys SET quantity = quantity - ?, retired_at = CASE WHEN quantity - ? <= 0 "
        "THEN ? END WHERE id = ?",
        (count, count, now, loan["key_id"]),
    )
    where = loan["unit"] or loan["label"]
    alarm = alarms.raise_alarm(conn, cfg.alarms, "key_lost", f"key:{loan['key_id']}", now,
                               location=where, by=by,
                               notes=f"key {loan['key_id']} ({loan['label']}) ×{count} lost "
                                     f"on loan {loan_id}: the lock is to be changed")  # fmt: skip
    return _changed(conn, epoch, loan_id, now), [alarm, *_cleared(conn, loan_id, now)]


def _cleared(conn: sqlite3.Connection, loan_id: int, now: float) -> list[int]:
    cleared = alarms.normal(conn, f"key_loan:{loan_id}", "key_overdue", now)
    return [] if cleared is None else [cleared]


def overdue(conn: sqlite3.Connection, cfg: Config, now: float) -> list[int]:
    """Raise ``key_overdue`` for each loan past its due time that has none yet; the alarm
    ids (on ix_key_loans_open: the loans still open, not the register's years)."""
    late = db.rows(
        conn,
        "SELECT l.id, l.key_id, l.borrower, l.quantity, l.due_at, k.label, k.unit "
        "FROM key_loans l JOIN keys k ON k.id = l.key_id WHERE l.closed_at IS NULL "
        "AND l.due_at < ? AND l.returned_at IS NULL AND l.overdue_alarm_id IS NULL",
        (now,),
    )
    ids = []
    for loan in late:
        who = mask_name(loan["borrower"], cfg.rules.name_mask)
        alarm = alarms.raise_alarm(
            conn, cfg.alarms, "key_overdue", f"key_loan:{loan['id']}", now,
            location=loan["unit"] or loan["label"],
            notes=f"key {loan['key_id']} ({loan['label']}) ×{loan['quantity']} lent to {who}: "
                  "not back by its due time; call the borrower",
        )  # fmt: skip
        conn.execute("UPDATE key_loans SET overdue_alarm_id = ? WHERE id = ?", (alarm, loan["id"]))
        ids.append(alarm)
    return ids


def listing(conn: sqlite3.Connection, open_only: bool, key_id: str | None, limit: int,
            before: int | None) -> list[dict[str, Any]]:  # fmt: skip
    where, args = [], []
    if open_only:
        where.append("l.closed_at IS NULL")
    if key_id:
        where.append("l.key_id = ?")
        args.append(key_id)
    if before is not None:
        where.append("l.id < ?")
        args.append(before)
    sql = ("SELECT l.*, k.label, k.unit, k.kind, k.contractor AS key_contractor "
           "FROM key_loans l JOIN keys k ON k.id = l.key_id")  # fmt: skip
    if where:
        sql += " WHERE " + " AND ".join(where)
    return db.rows(conn, sql + " ORDER BY l.id DESC LIMIT ?", (*args, limit))


def state(loan: dict[str, Any], now: float) -> str:
    """out | overdue | inspecting | returned | lost, as the register reads."""
    if loan["lost_at"] is not None:
        return "lost"
    if loan["closed_at"] is not None:
        return "returned"
    if loan["returned_at"] is not None:
        return "inspecting"
    return "overdue" if now > loan["due_at"] else "out"


def out_now(conn: sqlite3.Connection, now: float, name_mask: str) -> list[dict[str, Any]]:
    """The loans still open, for the handover: who holds which keys, until when."""
    found = db.rows(
        conn,
        "SELECT l.id, l.key_id, k.label, l.quantity, l.borrower, l.company, l.lent_at, "
        "l.due_at, l.returned_at, l.lost_at, l.closed_at FROM key_loans l "
        "JOIN keys k ON k.id = l.key_id WHERE l.closed_at IS NULL ORDER BY l.due_at",
        (),
    )
    for loan in found:
        loan["state"] = state(loan, now)
        loan["borrower"] = mask_name(loan["borrower"], name_mask)
        for gone in ("returned_at", "lost_at", "closed_at"):
            del loan[gone]
    return found
