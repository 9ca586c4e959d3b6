"""来访 Visitors: asked whom they visit, registered, admitted once the host confirms,
let out. A temporary card lent for the visit becomes a temporary pass while they are in."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from edge import db, outbox, store
from edge.cards import parse_card
from edge.errors import Conflict, DomainError, NotFound
from edge.models import Visitor
from edge.pass_ops import issue_row
from edge.privacy import IdHasher

CONFIRM_HOW = ("intercom", "phone", "in_person")
# who comes to an estate from outside (000 §八.8): a visit, a delivery (外卖, 快递), a tutor
# (家教), a repairer (维修), milk (送奶), scrap collection (废品收购), housekeeping (家政)
CATEGORIES = ("guest", "delivery", "tutor", "repair", "milk", "scrap", "housekeeping")
VISIT_PASS_S = 12 * 3600  # a lent card works for the day of the visit, at most


@dataclass(frozen=True)
class VisitorRequest:
    name: str
    host_unit: str
    id_number: str | None = None
    purpose: str | None = None
    plate: str | None = None
    card: str | None = None
    gate: str | None = None


def register(
    conn: sqlite3.Connection, req: VisitorRequest, hasher: IdHasher, by: str, now: float
) -> int:
    if not req.name.strip() or not req.host_unit.strip():
        raise DomainError("name and host_unit: both are required (ask whom they visit first)")
    check_unit(conn, req.host_unit.strip())
    id_hash = id_last4 = None
    if req.id_number:
        try:
            id_hash, id_last4 = hasher.digest(req.id_number)
        except ValueError as e:
            raise DomainError(f"id_number: {e}") from None
    card_key = None
    if req.card:
        try:
            card_key = parse_card(req.card).key
        except ValueError as e:
            raise DomainError(f"card: {e}") from None
    return store.insert(conn, Visitor, {
        "name": req.name.strip(), "id_hash": id_hash, "id_last4": id_last4,
        "host_unit": req.host_unit.strip(), "purpose": req.purpose, "plate": req.plate,
        "card_key": card_key, "gate": req.gate, "registered_by": by, "registered_at": now,
    })  # fmt: skip


def check_unit(conn: sqlite3.Connection, unit: str) -> None:
    """The host's unit is one of the estate's (the office's list, when the gate holds one):
    a visitor for a unit that does not exist is asked to check, then politely to leave
    (003 ch.3 §一)."""
    if conn.execute("SELECT 1 FROM units LIMIT 1").fetchone() is None:
        return  # no list: any unit
    if conn.execute("SELECT 1 FROM units WHERE unit = ?", (unit,)).fetchone() is None:
        raise DomainError(f"host_unit: {unit!r} is not a unit of this estate; ask the visitor "
                          "to check, and if they insist, ask them politely to leave")  # fmt: skip


def units(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT unit FROM units ORDER BY unit")]


def get(conn: sqlite3.Connection, visitor_id: int) -> dict[str, Any]:
    found = db.row(conn, "SELECT * FROM visitors WHERE id = ?", (visitor_id,))
    if found is None:
        raise NotFound(f"no visitor with id {visitor_id}")
    return found


def confirm(
    conn: sqlite3.Connection, epoch: int, visitor_id: int, how: str, by: str, now: float
) -> dict[str, Any]:
    """The host said yes: the visitor is admitted, and a lent card starts to work."""
    if how not in CONFIRM_HOW:
        raise DomainError(f"how: must be one of {', '.join(CONFIRM_HOW)}")
    v = get(conn, visitor_id)
    if v["entered_at"] is not None:
        raise Conflict(f"visitor {visitor_id} was admitted already")
    pass_id = None
    if v["card_key"] is not None:
        pass_id = issue_row(
            conn, "temporary", v["card_key"], v["name"], v["host_unit"], now, now + VISIT_PASS_S
        )
    conn.execute(
        "UPDATE visitors SET confirmed_by = ?, confirmed_how = ?, entered_at = ?, pass_id = ? "
        "WHERE id = ?",
        (by, how, now, pass_id, visitor_id),
    )
    v = get(conn, visitor_id)
    outbox.add(conn, epoch, "visitor_in", str(visitor_id), v, now)
    return v


def exit_(conn: sqlite3.Connection, epoch: int, visitor_id: int, by: str, now: float) -> dict:
    v = get(conn, visitor_id)
    if v["exited_at"] is not None:
        raise Conflict(f"visitor {visitor_id} left already")
    conn.execute(
        "UPDATE visitors SET exited_at = ?, exited_by = ? WHERE id = ?", (now, by, visitor_id)
    )
    if v["pass_id"]:  # the card is handed back: it stops working
        conn.execute(
            "UPDATE passes SET status = 'revoked', status_reason = 'visit ended', "
            "updated_at = ?, version = version + 1 WHERE id = ? AND status = 'active'",
            (now, v["pass_id"]),
        )
    v = get(conn, visitor_id)
    outbox.add(conn, epoch, "visitor_out", str(visitor_id), v, now)
    return v


def arrive(conn: sqlite3.Connection, epoch: int, code: str, gate: str | None, by: str,
           now: float) -> dict[str, Any]:  # fmt: skip
    """A visitor the office announced shows their code: admitted inside the window while
    entries are left, registered as a visitor (the host said yes in advance)."""
    e = db.row(conn, "SELECT * FROM expected_visitors WHERE code = ?", (code.strip(),))
    if e is None:
        raise NotFound(f"no announced visitor with code {code.strip()!r}")
    if e["status"] != "active":
        raise Conflict(f"code {e['code']}: the visit was {e['status']}")
    if now < e["valid_from"]:
        raise Conflict(f"code {e['code']}: the visit's window has not started")
    if now >= e["valid_until"]:
        raise Conflict(f"code {e['code']}: the visit's window has ended")
    if e["used"] >= e["entries"]:
        raise Conflict(f"code {e['code']}: its {e['entries']} entries are used")
    conn.execute("UPDATE expected_visitors SET used = used + 1 WHERE id = ?", (e["id"],))
    visitor_id = store.insert(conn, Visitor, {
        "name": e["name"], "host_unit": e["host_unit"], "purpose": e["category"], "gate": gate,
        "registered_by": by, "registered_at": now, "confirmed_by": by,
        "confirmed_how": "announced", "entered_at": now, "expected_id": e["id"],
    })  # fmt: skip
    v = get(conn, visitor_id)
    outbox.add(conn, epoch, "visitor_in", str(visitor_id), v, now)
    return v


def expected_today(conn: sqlite3.Connection, now: float, tz: Any) -> list[dict[str, Any]]:
    """The announced visitors whose window meets today, with their state here: waiting,
    inside, overstaying (inside past the window), left, cancelled."""
    local = datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = local.timestamp(), (local + timedelta(days=1)).timestamp()
    found = db.rows(conn, "SELECT * FROM expected_visitors WHERE valid_from < ? AND "
                          "valid_until > ? ORDER BY valid_from", (end, start))  # fmt: skip
    for e in found:
        inside = conn.execute(
            "SELECT count(*) FROM visitors WHERE expected_id = ? AND exited_at IS NULL",
            (e["id"],),
        ).fetchone()[0]
        if e["status"] != "active":
            e["state"] = e["status"]
        elif inside:
            e["state"] = "overstaying" if now >= e["valid_until"] else "inside"
        else:
            e["state"] = "left" if e["used"] else "waiting"
    return found


def overstaying(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    """Visitors admitted on an announcement who are still inside past its window."""
    return db.rows(
        conn,
        "SELECT v.id, v.name, v.host_unit, v.entered_at, e.valid_until FROM visitors v "
        "JOIN expected_visitors e ON e.id = v.expected_id WHERE v.exited_at IS NULL "
        "AND e.valid_until <= ? ORDER BY e.valid_until",
        (now,),
    )


def listing(
    conn: sqlite3.Connection, inside: bool | None, limit: int, before: int | None
) -> list[dict]:
    where, args = [], []
    if inside is True:
        where.append("entered_at IS NOT NULL AND exited_at IS NULL")
    elif inside is False:
        where.append("(entered_at IS NULL OR exited_at IS NOT NULL)")
    if before is not None:
        where.append("id < ?")
        args.append(before)
    sql = "SELECT * FROM visitors" + (" WHERE " + " AND ".join(where) if where else "")
    return db.rows(conn, sql + " ORDER BY id DESC LIMIT ?", (*args, limit))


def by_id_hash(conn: sqlite3.Connection, hashes: list[str]) -> list[dict]:
    """The visits of the person whose ID number hashes to one of ``hashes`` (on
    ix_visitors_id_hash), newest first: kept [privacy] visitor_days, no longer."""
    marks = ",".join("?" * len(hashes))
    return db.rows(conn, f"SELECT * FROM visitors WHERE id_hash IN ({marks}) "
                         "ORDER BY id DESC LIMIT 100", tuple(hashes))  # fmt: skip
