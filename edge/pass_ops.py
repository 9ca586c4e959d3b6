"""Pass records: issue, bulk import, revoke, list. Functions of a connection, so the CLI
and the service's writer run the same code."""

from __future__ import annotations

import csv
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge import db, dutylog, outbox
from edge.cards import CardId, mask_key, parse_card
from edge.config import ConfigError, parse_hours
from edge.decision import KINDS
from edge.errors import Conflict, NotFound
from edge.passes import PassError, parse_time, resolve_validity
from edge.privacy import IdHasher, mask_name

WORKER_DEPOSIT_FEN = 5000  # ¥50 (000 §七(2)1)
WORKER_FEE_FEN = 500  # ¥5

_INSERT = (
    "INSERT INTO passes (id, kind, card_key, card_hex, name, unit, id_hash, id_last4, "
    "valid_from, valid_until, status, gates, daily_window, permit_no, deposit_fen, fee_fen, "
    "photo_path, issued_at, updated_at, version, issued_by) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,'active',?,?,?,?,?,?,?,?,1,?)"
)


@dataclass(frozen=True)
class PassRequest:
    kind: str
    card: str
    name: str
    unit: str | None = None
    id_number: str | None = None
    valid_from: str | None = None
    valid_until: str | None = None
    gates: str | None = None
    daily_window: str | None = None
    permit_no: str | None = None
    photo_path: str | None = None


def new_pass_id() -> str:
    return uuid.uuid4().hex[:16]


def build_row(
    req: PassRequest, hasher: IdHasher, tz: ZoneInfo, now: float, by: str | None = None
) -> tuple[Any, ...]:
    """Check a request against the rules; the row to insert, or PassError naming the problem."""
    if req.kind not in KINDS:
        raise PassError(f"kind: {req.kind!r} is not one of {', '.join(KINDS)}")
    try:
        card: CardId = parse_card(req.card)
    except ValueError as e:
        raise PassError(f"card: {e}") from None
    name = req.name.strip()
    if not name:
        raise PassError("name: must not be empty")
    unit = (req.unit or "").strip() or None
    if req.kind == "worker" and unit is None:
        raise PassError("unit: a worker pass is tied to the unit being renovated")
    start = parse_time(req.valid_from, tz) if req.valid_from else None
    end = parse_time(req.valid_until, tz) if req.valid_until else None
    validity = resolve_validity(req.kind, now, tz, start, end)
    id_hash = id_last4 = None
    if req.id_number:
        try:
            id_hash, id_last4 = hasher.digest(req.id_number)
        except ValueError as e:
            raise PassError(f"id_number: {e}") from None
    gates = ",".join(g.strip() for g in req.gates.split(",") if g.strip()) if req.gates else None
    window = None
    if req.daily_window:
        try:
            parse_hours(req.daily_window, "daily_window")
        except ConfigError as e:
            raise PassError(str(e)) from None
        window = req.daily_window.strip()
    worker = req.kind == "worker"
    return (
        new_pass_id(), req.kind, card.key, card.hex, name, unit, id_hash, id_last4,
        validity.valid_from, validity.valid_until, gates or None, window, req.permit_no,
        WORKER_DEPOSIT_FEN if worker else None, WORKER_FEE_FEN if worker else None,
        req.photo_path, now, now, by,
    )  # fmt: skip


def issue_row(
    conn: sqlite3.Connection,
    kind: str,
    card_key: int,
    name: str,
    unit: str | None,
    valid_from: float,
    valid_until: float | None,
) -> str:
    """A pass made by the service itself (a visitor's lent card): checked against its kind."""
    validity = resolve_validity(kind, valid_from, ZoneInfo("UTC"), valid_from, valid_until)
    pass_id = new_pass_id()
    conn.execute(
        _INSERT,
        (pass_id, kind, card_key, None, name, unit, None, None, validity.valid_from,
         validity.valid_until, None, None, None, None, None, None, valid_from, valid_from,
         "service"),
    )  # fmt: skip
    return pass_id


def confiscate(
    conn: sqlite3.Connection,
    epoch: int,
    pass_id: str | None,
    card: CardId | None,
    reason: str,
    gate: str | None,
    by: str,
    now: float,
) -> dict[str, Any]:
    """予以没收: the pass stops working at once and the office will hear of it."""
    if not reason.strip():
        raise PassError("reason: a confiscation needs its reason")
    if pass_id is None:
        if card is None:
            raise PassError("pass_id or card: one is required")
        # the card's newest pass not already taken: expired ones are the usual case
        row = conn.execute(
            "SELECT id FROM passes WHERE card_key = ? AND status != 'confiscated' "
            "ORDER BY issued_at DESC LIMIT 1",
            (card.key,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no pass to confiscate for card {card.masked}")
        pass_id = row[0]
    found = conn.execute("SELECT status FROM passes WHERE id = ?", (pass_id,)).fetchone()
    if found is None:
        raise NotFound(f"no pass with id {pass_id!r}")
    if found[0] == "confiscated":
        raise Conflict(f"pass {pass_id} was confiscated already")
    conn.execute(
        "UPDATE passes SET status = 'confiscated', status_reason = ?, updated_at = ?, "
        "updated_by = ?, version = version + 1 WHERE id = ?",
        (reason, now, by, pass_id),
    )
    cur = conn.execute(
        "INSERT INTO confiscations (pass_id, gate, reason, by, at) VALUES (?,?,?,?,?)",
        (pass_id, gate, reason, by, now),
    )
    record = {"id": cur.lastrowid, "pass_id": pass_id, "gate": gate, "reason": reason,
              "by": by, "at": now}  # fmt: skip
    outbox.add(conn, epoch, "confiscation", str(record["id"]), record, now)
    dutylog.add(conn, now, by, "gate", f"pass {pass_id} confiscated at {gate or '-'}: {reason}")
    return record


def issue(
    conn: sqlite3.Connection, req: PassRequest, hasher: IdHasher, tz: ZoneInfo, by: str
) -> str:
    row = build_row(req, hasher, tz, time.time(), by)
    conn.execute(_INSERT, row)
    return row[0]


CSV_REQUIRED = ("kind", "card", "name", "unit", "valid_from", "valid_until")
CSV_OPTIONAL = ("id_number", "gates")


def read_csv(path: Path, hasher: IdHasher, tz: ZoneInfo, by: str) -> Iterator[tuple[Any, ...]]:
    """Rows to insert, checked one by one; PassError names the first bad line."""
    now = time.time()
    try:
        f = path.open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise PassError(f"{path}: {e.strerror}") from None
    with f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in CSV_REQUIRED if c not in header]
        if missing:
            raise PassError(f"{path}: header lacks column {missing[0]!r}")
        extra = [c for c in header if c not in CSV_REQUIRED + CSV_OPTIONAL]
        if extra:
            raise PassError(f"{path}: unknown column {extra[0]!r}")
        seen: dict[int, int] = {}
        try:
            for rec in reader:
                line = reader.line_num
                if None in rec or any(v is None for v in rec.values()):
                    raise PassError(f"line {line}: wrong number of fields")
                try:
                    row = build_row(
                        PassRequest(
                            kind=rec["kind"].strip(),
                            card=rec["card"],
                            name=rec["name"],
                            unit=rec["unit"],
                            id_number=rec.get("id_number") or None,
                            valid_from=rec["valid_from"] or None,
                            valid_until=rec["valid_until"] or None,
                            gates=rec.get("gates") or None,
                        ),
                        hasher,
                        tz,
                        now,
                        by,
                    )
                except PassError as e:
                    raise PassError(f"line {line}: {e}") from None
                first = seen.setdefault(row[2], line)
                if first != line:
                    raise PassError(f"line {line}: card {rec['card']!r} is already on line {first}")
                yield row
        except (csv.Error, UnicodeDecodeError) as e:
            raise PassError(f"line {reader.line_num}: {e}") from None


def import_csv(
    conn: sqlite3.Connection, path: Path, hasher: IdHasher, tz: ZoneInfo, by: str
) -> int:
    """All rows or none: one transaction, rolled back at the first bad line."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        cur = conn.executemany(_INSERT, read_csv(path, hasher, tz, by))
        count = cur.rowcount
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return count


def set_status(
    conn: sqlite3.Connection, pass_id: str, status: str, reason: str | None, by: str
) -> None:
    row = conn.execute("SELECT status FROM passes WHERE id = ?", (pass_id,)).fetchone()
    if row is None:
        raise NotFound(f"no pass with id {pass_id!r}")
    if row[0] != "active":
        raise Conflict(f"pass {pass_id} is already {row[0]}")
    conn.execute(
        "UPDATE passes SET status = ?, status_reason = ?, updated_at = ?, updated_by = ?, "
        "version = version + 1 WHERE id = ?",
        (status, reason, time.time(), by, pass_id),
    )


def shown(row: dict[str, Any], tz: ZoneInfo, name_mask: str = "surname") -> dict[str, Any]:
    """A pass as it may be shown outside the office: name and card masked."""

    def iso(t: float | None) -> str | None:
        return None if t is None else datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")

    return {
        "id": row["id"],
        "kind": row["kind"],
        "card": mask_key(row["card_key"]),
        "name": mask_name(row["name"], name_mask),
        "unit": row["unit"],
        "id_last4": row["id_last4"],
        "valid_from": iso(row["valid_from"]),
        "valid_until": iso(row["valid_until"]),
        "status": row["status"],
        "gates": row["gates"].split(",") if row["gates"] else None,
    }


def get_pass(conn: sqlite3.Connection, pass_id: str) -> dict[str, Any]:
    found = db.row(conn, "SELECT * FROM passes WHERE id = ?", (pass_id,))
    if found is None:
        raise NotFound(f"no pass with id {pass_id!r}")
    return found


def list_passes(
    conn: sqlite3.Connection, limit: int = 50, status: str | None = None, card: CardId | None = None
) -> list[dict[str, Any]]:
    where, args = [], []
    if status:
        where.append("status = ?")
        args.append(status)
    if card is not None:
        where.append("card_key = ?")
        args.append(card.key)
    sql = "SELECT * FROM passes"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return db.rows(conn, sql + " ORDER BY issued_at DESC LIMIT ?", (*args, limit))
