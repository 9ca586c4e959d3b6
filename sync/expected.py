"""预约访客 Visitors announced in advance, at the office: registered for a host's unit with a
time window and a number of entries, given a code; the site's gates pull them and admit
the code inside its window (edge.visitors.arrive)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select

from edge.errors import Conflict, DomainError, Forbidden, NotFound
from edge.visitors import CATEGORIES
from sync import schema as t
from sync import units

MAX_WINDOW_S = 7 * 86400  # an announcement is for a visit, not a standing pass
HOST_MAX_ACTIVE = 20  # a host's codes not yet over: a household's visitors, not a flood


@dataclass(frozen=True)
class Announcer:
    """Who announces: a clerk or admin (any unit of any site), or a host (``unit`` of
    ``site`` only)."""

    name: str
    site: str | None = None
    unit: str | None = None

    @property
    def host(self) -> bool:
        return self.unit is not None


def announce(conn: Connection, fields: dict[str, Any], who: Announcer,
             now: float) -> dict[str, Any]:  # fmt: skip
    from sync.office import audit, log_change, resolve_site

    if who.host:  # a host announces for their own unit, whatever the request says
        asked = (fields.get("site") or who.site, fields.get("host_unit") or who.unit)
        if asked != (who.site, who.unit):
            raise Forbidden(f"host_unit: a host announces visitors for {who.unit} only")
        fields = fields | {"site": who.site, "host_unit": who.unit}
        active = conn.execute(select(func.count()).select_from(t.expected_visitors).where(
            t.expected_visitors.c.site == who.site, t.expected_visitors.c.host_unit == who.unit,
            t.expected_visitors.c.status == "active",
            t.expected_visitors.c.valid_until > now)).scalar_one()  # fmt: skip
        if active >= HOST_MAX_ACTIVE:
            raise Conflict(f"{who.unit} has {active} visitors announced already; "
                           f"at most {HOST_MAX_ACTIVE} at a time")  # fmt: skip
    if not fields.get("host_unit"):
        raise DomainError("host_unit: name the unit the visitor is for")
    site = resolve_site(conn, fields.get("site"))["site_id"]
    unit = fields["host_unit"].strip()
    units.check(conn, site, unit)
    if fields["category"] not in CATEGORIES:
        raise DomainError(f"category: must be one of {', '.join(CATEGORIES)}")
    start = fields.get("valid_from") or now
    end = fields["valid_until"]
    if not start < end <= start + MAX_WINDOW_S:
        raise DomainError("valid_until: after valid_from, and within 7 days of it")
    if end <= now:
        raise DomainError("valid_until: the window has ended already")
    while True:  # 8 digits a guard can type; unique among the office's codes
        code = f"{secrets.randbelow(10**8):08d}"
        if not conn.execute(select(t.expected_visitors.c.id)
                            .where(t.expected_visitors.c.code == code)).first():  # fmt: skip
            break
    record = {
        "id": uuid.uuid4().hex, "code": code, "site": site, "host_unit": unit,
        "name": fields["name"].strip(), "category": fields["category"], "valid_from": start,
        "valid_until": end, "entries": fields.get("entries") or 1, "status": "active",
        "version": 1, "created_by": who.name, "created_at": now, "updated_at": now,
    }  # fmt: skip
    conn.execute(t.expected_visitors.insert().values(**record))
    log_change(conn, "expected_visitor", record["id"], 1, "upsert", record, now)
    audit(conn, who.name, "visitor_announce", record["id"], now, host_unit=unit)
    return record


def get(conn: Connection, visitor_id: str) -> dict[str, Any]:
    e = t.expected_visitors
    row = conn.execute(select(e).where(e.c.id == visitor_id)).mappings().first()
    if row is None:
        raise NotFound(f"no announced visitor {visitor_id!r}")
    return dict(row)


def cancel(conn: Connection, visitor_id: str, who: Announcer, now: float) -> dict[str, Any]:
    from sync.office import audit, log_change

    row = get(conn, visitor_id)
    if who.host and (row["site"], row["host_unit"]) != (who.site, who.unit):
        raise NotFound(f"no announced visitor {visitor_id!r}")  # another unit's: not said
    if row["status"] != "active":
        raise Conflict(f"announced visitor {visitor_id} is {row['status']} already")
    record = row | {"status": "cancelled", "version": row["version"] + 1,
                          "updated_at": now}  # fmt: skip
    conn.execute(t.expected_visitors.update().where(t.expected_visitors.c.id == visitor_id)
                 .values(**record))  # fmt: skip
    log_change(conn, "expected_visitor", visitor_id, record["version"], "upsert", record, now)
    audit(conn, who.name, "visitor_cancel", visitor_id, now)
    return record


def listing(conn: Connection, site: str | None, who: Announcer,
            ending_after: float | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The announcements, by their start; a host's own unit's only; ``ending_after``: only
    those whose window ends after it (the desk's today and upcoming, not every visit ever
    announced)."""
    q = select(t.expected_visitors).order_by(t.expected_visitors.c.valid_from)
    if who.host:
        q = q.where(t.expected_visitors.c.site == who.site,
                    t.expected_visitors.c.host_unit == who.unit)  # fmt: skip
    if site:
        q = q.where(t.expected_visitors.c.site == site)
    if ending_after is not None:
        q = q.where(t.expected_visitors.c.valid_until > ending_after)
    return [dict(r) for r in conn.execute(q).mappings()]


def in_scope(conn: Connection, site: str) -> list[str]:
    q = select(t.expected_visitors.c.id).where(t.expected_visitors.c.site == site)
    return list(conn.execute(q.order_by(t.expected_visitors.c.id)).scalars())
