"""Reading passes: what `pass list`, the API and the console show. Apart from issuing
(edge.pass_ops) so that a read pays for no writer's imports: `gatehouse pass list` starts
in a fraction of the time (bench/cli_startup.py)."""

from __future__ import annotations

import sqlite3
from typing import Any
from zoneinfo import ZoneInfo

from edge import db
from edge.cards import CardId, mask_key
from edge.clock import iso
from edge.errors import NotFound
from edge.privacy import mask_name


def shown(row: dict[str, Any], tz: ZoneInfo, name_mask: str = "surname") -> dict[str, Any]:
    """A pass as it may be shown outside the office: name and card masked; a time no
    calendar can show never stops the list (edge.clock.iso)."""
    return {
        "id": row["id"],
        "kind": row["kind"],
        "card": mask_key(row["card_key"]),
        "name": mask_name(row["name"], name_mask),
        "unit": row["unit"],
        "id_last4": row["id_last4"],
        "valid_from": iso(row["valid_from"], tz),
        "valid_until": iso(row["valid_until"], tz),
        "status": row["status"],
        "gates": row["gates"].split(",") if row["gates"] else None,
    }


def get_pass(conn: sqlite3.Connection, pass_id: str) -> dict[str, Any]:
    found = db.row(conn, "SELECT * FROM passes WHERE id = ?", (pass_id,))
    if found is None:
        raise NotFound(f"no pass with id {pass_id!r}")
    return found


def status_filter(status: str, now: float) -> tuple[str, tuple[Any, ...]]:
    """SQL for a list's ``status``: a stored status, or ``expired`` (active, but its end has
    come: it no longer opens, and is shown so, but nobody revoked it)."""
    if status == "expired":
        return "status = 'active' AND valid_until <= ?", (now,)
    return "status = ?", (status,)


def list_passes(
    conn: sqlite3.Connection,
    now: float,
    limit: int = 50,
    status: str | None = None,
    card: CardId | None = None,
    unit: str | None = None,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first, each with its ``_row`` (the page's cursor: ``before`` reads on from
    it). ``now``: the caller's clock, which ``expired`` is judged by. A card or a unit is
    found by its index (ix_passes_card_key, ix_passes_unit), already in row order."""
    where: list[str] = []
    args: list[Any] = []
    if status:
        sql, values = status_filter(status, now)
        where.append(sql)
        args.extend(values)
    if card is not None:
        where.append("card_key = ?")
        args.append(card.key)
    if unit is not None:
        where.append("unit = ?")
        args.append(unit)
    if before is not None:
        where.append("rowid < ?")
        args.append(before)
    sql = "SELECT rowid AS _row, * FROM passes"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return db.rows(conn, sql + " ORDER BY rowid DESC LIMIT ?", (*args, limit))


def by_id_hash(conn: sqlite3.Connection, hashes: list[str]) -> list[dict[str, Any]]:
    """The passes whose ID number hashes to one of ``hashes`` (on ix_passes_id_hash),
    newest first."""
    marks = ",".join("?" * len(hashes))
    return db.rows(conn, f"SELECT rowid AS _row, * FROM passes WHERE id_hash IN ({marks}) "
                         "ORDER BY rowid DESC LIMIT 100", tuple(hashes))  # fmt: skip
