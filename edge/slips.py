"""物品放行条 Goods release slips: issued by the office or an admin, released once at a gate.

The rules (DOMAIN.md): serially numbered; the bearer is the owner or family in person, a
delegate with the owner's written authorisation naming them, the moving time and the
goods, or a company tenant's seal or authorised signer; flammable, explosive, highly toxic
and corrosive goods are refused unless explicitly allowed; one use — a used, rejected,
cancelled or expired slip is refused. Every change runs in the one writer, so two guards
pressing release at the same moment get one release and one refusal.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge import db, outbox, store
from edge.decision import Reason
from edge.errors import Conflict, DomainError, NotFound
from edge.models import GoodsSlip
from edge.passes import FIRST_YEAR, LAST_YEAR
from edge.snapshots import JOIN_COLUMNS

AUTHORISATIONS = ("in_person", "written", "company")
HAZARDS = ("flammable", "explosive", "toxic", "corrosive")
DEFAULT_VALID_S = 24 * 3600


@dataclass(frozen=True)
class Item:
    name: str
    qty: int
    hazard: str | None = None


@dataclass(frozen=True)
class SlipRequest:
    unit: str
    owner: str
    bearer: str
    authorisation: str
    items: list[Item]
    valid_from: float | None = None
    valid_until: float | None = None
    approver: str | None = None
    hazard_allowed: bool = False
    # written: {"delegate", "moving_time", "goods_list"}; company: {"seal"} or {"signer"}
    detail: dict[str, Any] = field(default_factory=dict)


def check_slip(status: str, valid_from: float, valid_until: float, now: float) -> Reason:
    """Whether a slip may be released now (pure): OK, or why not."""
    if status == "released":
        return Reason.SLIP_USED
    if status == "rejected":
        return Reason.SLIP_REJECTED
    if status == "cancelled":
        return Reason.SLIP_CANCELLED
    if now < valid_from:
        return Reason.NOT_YET_VALID
    if now >= valid_until:
        return Reason.EXPIRED
    return Reason.OK


def validate(req: SlipRequest, now: float) -> tuple[float, float]:
    """The request's moving window, or DomainError naming what is wrong."""
    for key in ("unit", "owner", "bearer"):
        if not getattr(req, key).strip():
            raise DomainError(f"{key}: must not be empty")
    if req.authorisation not in AUTHORISATIONS:
        raise DomainError(f"authorisation: must be one of {', '.join(AUTHORISATIONS)}")
    if req.authorisation == "written":
        missing = [k for k in ("delegate", "moving_time", "goods_list") if not req.detail.get(k)]
        if missing:
            raise DomainError(
                f"authorisation_detail.{missing[0]}: a written authorisation (授权委托书) names "
                "the delegate, the moving time and the goods; a phone call is not enough"
            )
        if req.detail["delegate"].strip() != req.bearer.strip():
            raise DomainError("bearer: must be the delegate the written authorisation names")
    if req.authorisation == "company" and not (req.detail.get("seal") or req.detail.get("signer")):
        raise DomainError("authorisation_detail: a company needs its seal or an authorised signer")
    if not req.items:
        raise DomainError("items: at least one item is required")
    for i, item in enumerate(req.items):
        if not item.name.strip() or item.qty < 1:
            raise DomainError(f"items[{i}]: needs a name and a quantity of at least 1")
        if item.hazard is not None and item.hazard not in HAZARDS:
            raise DomainError(f"items[{i}].hazard: must be one of {', '.join(HAZARDS)}")
        if item.hazard and not req.hazard_allowed:
            raise DomainError(
                f"items[{i}]: {item.name!r} is {item.hazard}; such goods are refused "
                "unless hazard_allowed is set by the approver"
            )
    start = now if req.valid_from is None else req.valid_from
    end = start + DEFAULT_VALID_S if req.valid_until is None else req.valid_until
    if end <= start:
        raise DomainError("valid_until: must be after valid_from")
    return start, end


def next_number(conn: sqlite3.Connection, now: float, tz: ZoneInfo) -> str:
    """Serial numbers per year: FX-2026-00001."""
    return db.yearly_serial(conn, "goods_slips", "FX", 5, now, tz)


def issue(conn: sqlite3.Connection, req: SlipRequest, by: str, now: float, tz: ZoneInfo) -> str:
    start, end = validate(req, now)
    number = next_number(conn, now, tz)
    items = [{"name": i.name, "qty": i.qty, "hazard": i.hazard} for i in req.items]
    store.insert(conn, GoodsSlip, {
        "number": number, "unit": req.unit.strip(), "owner": req.owner.strip(),
        "bearer": req.bearer.strip(), "authorisation": req.authorisation,
        "authorisation_detail": json.dumps(req.detail, ensure_ascii=False),
        "items": json.dumps(items, ensure_ascii=False), "hazard_allowed": req.hazard_allowed,
        "valid_from": start, "valid_until": end, "approver": req.approver, "status": "issued",
        "issued_by": by, "issued_at": now,
    })  # fmt: skip
    return number


def signed(conn: sqlite3.Connection, payload: dict[str, Any]) -> dict[str, Any]:
    """A verified office-signed slip as the gate sees it: its own record when it has one
    (a cancellation or release it holds wins), else what the signature vouches for."""
    try:
        return get(conn, payload["s"])
    except NotFound:
        return {"number": payload["s"], "status": "issued", "unit": payload["u"],
                "owner": payload["o"], "bearer": payload["b"], "items": payload["i"],
                "valid_from": payload["f"], "valid_until": payload["t"]}  # fmt: skip


def adopt(conn: sqlite3.Connection, payload: dict[str, Any]) -> None:
    """An office-signed slip (verified QR payload, sync.qr) this gate has not synced yet:
    taken as the office issued it, so it can be released here. Known slips are untouched:
    a cancellation the gate already holds still wins."""
    conn.execute(
        "INSERT OR IGNORE INTO goods_slips (number, unit, owner, bearer, authorisation, "
        "authorisation_detail, items, hazard_allowed, valid_from, valid_until, approver, "
        "status, issued_by, issued_at, version, origin) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,'issued','office',?,?,'office')",
        (payload["s"], payload["u"], payload["o"], payload["b"], payload["a"],
         json.dumps(payload["d"], ensure_ascii=False), json.dumps(payload["i"], ensure_ascii=False),
         bool(payload["h"]), payload["f"], payload["t"], payload["r"], payload["f"], payload["v"]),
    )  # fmt: skip


def get(conn: sqlite3.Connection, number: str) -> dict[str, Any]:
    slip = db.row(
        conn,
        f"SELECT g.*, {JOIN_COLUMNS} FROM goods_slips g "
        "LEFT JOIN snapshots s ON s.id = g.snapshot_id WHERE g.number = ?",
        (number,),
    )
    if slip is None:
        raise NotFound(f"no slip numbered {number!r}")
    slip["items"] = json.loads(slip["items"])
    slip["authorisation_detail"] = json.loads(slip["authorisation_detail"] or "{}")
    slip["hazard_allowed"] = bool(slip["hazard_allowed"])
    return slip


def status_at(slip: dict[str, Any], now: float) -> str:
    """The status a person sees: an issued slip past its window shows as expired."""
    if slip["status"] == "issued" and now >= slip["valid_until"]:
        return "expired"
    return slip["status"]


def _close(
    conn: sqlite3.Connection,
    epoch: int,
    number: str,
    status: str,
    by: str,
    now: float,
    gate: str | None,
    notes: str | None,
) -> dict[str, Any]:
    slip = get(conn, number)
    reason = check_slip(slip["status"], slip["valid_from"], slip["valid_until"], now)
    # a reject or a cancel needs the slip unused; only a release needs it in its window
    if reason is not Reason.OK and (status == "released" or slip["status"] != "issued"):
        who = f" (by {slip['closed_by']})" if slip["closed_by"] else ""
        raise Conflict(f"slip {number} cannot be {status}: {reason.value}{who}")
    conn.execute(
        "UPDATE goods_slips SET status = ?, closed_by = ?, closed_at = ?, gate = ?, notes = ? "
        "WHERE number = ? AND status = 'issued'",
        (status, by, now, gate, notes, number),
    )
    slip.update(status=status, closed_by=by, closed_at=now, gate=gate, notes=notes)
    outbox.add(conn, epoch, f"slip_{status}", number,
               {k: v for k, v in slip.items() if not k.startswith("snap_")}, now)  # fmt: skip
    return slip


def release(
    conn: sqlite3.Connection,
    epoch: int,
    number: str,
    by: str,
    now: float,
    gate: str | None,
    notes: str | None,
) -> dict[str, Any]:
    return _close(conn, epoch, number, "released", by, now, gate, notes)


def reject(
    conn: sqlite3.Connection,
    epoch: int,
    number: str,
    by: str,
    now: float,
    gate: str | None,
    reason: str,
) -> dict[str, Any]:
    if not reason.strip():
        raise DomainError("reason: a rejection needs its reason")
    return _close(conn, epoch, number, "rejected", by, now, gate, reason)


def cancel(
    conn: sqlite3.Connection, epoch: int, number: str, by: str, now: float, reason: str
) -> dict[str, Any]:
    return _close(conn, epoch, number, "cancelled", by, now, None, reason)


REPORT_COLUMNS = ("unit", "issued", "released", "rejected", "cancelled", "expired", "open")


def month_bounds(month: str, tz: ZoneInfo) -> tuple[float, float]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=tz)
    except ValueError:
        raise DomainError(f"month: {month!r} is not YYYY-MM") from None
    if not FIRST_YEAR <= start.year <= LAST_YEAR:
        raise DomainError(f"month: {month!r} is outside the years {FIRST_YEAR} to {LAST_YEAR}")
    end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start.timestamp(), end.timestamp()


def monthly_report(conn: sqlite3.Connection, month: str, tz: ZoneInfo, now: float) -> list[dict]:
    """Per unit, the month's slips by how they ended (the guards' month-end summary)."""
    start, end = month_bounds(month, tz)
    rows = conn.execute(
        "SELECT unit, status, valid_until FROM goods_slips WHERE issued_at >= ? AND issued_at < ?",
        (start, end),
    ).fetchall()
    per: dict[str, dict[str, Any]] = {}
    for unit, status, valid_until in rows:
        r = per.setdefault(unit, {c: 0 for c in REPORT_COLUMNS} | {"unit": unit})
        r["issued"] += 1
        shown = status_at({"status": status, "valid_until": valid_until}, now)
        r["open" if shown == "issued" else shown] += 1
    return [per[u] for u in sorted(per)]


def report_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, REPORT_COLUMNS)
    w.writeheader()
    w.writerows(rows)
    return out.getvalue()
