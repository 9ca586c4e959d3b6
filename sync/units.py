"""The estates' units (房号), at the office: a site's list, pulled by its gates, which refuse
a visitor asking for a unit not on it (003 ch.3 §一: ask them to check, then politely to
leave). A site with no list: any unit is taken, as before."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert

from edge.errors import DomainError, NotFound
from sync import schema as t

MAX_UNIT = 50  # as a visitor's host_unit


def add(conn: Connection, site_id: str | None, units: list[str], by: str,
        now: float) -> dict[str, Any]:  # fmt: skip
    """Add units to a site's list (those there already are left as they are)."""
    from sync.office import audit, log_change, resolve_site

    site = resolve_site(conn, site_id)["site_id"]
    wanted = sorted({u.strip() for u in units if u.strip()})
    if not wanted:
        raise DomainError("units: give at least one unit")
    if too_long := [u for u in wanted if len(u) > MAX_UNIT]:
        raise DomainError(f"units: {too_long[0]!r} is longer than {MAX_UNIT} characters")
    rows = [{"site": site, "unit": u, "created_by": by, "created_at": now} for u in wanted]
    fresh = insert(t.units).values(rows).on_conflict_do_nothing().returning(t.units.c.unit)
    added = sorted(conn.execute(fresh).scalars().all())
    for unit in added:
        log_change(conn, "unit", unit, 1, "upsert", {"unit": unit, "site": site}, now)
    if added:
        audit(conn, by, "units_add", site, now, units=list(added))
    return {"site": site, "added": len(added), "known": len(wanted) - len(added)}


def check(conn: Connection, site: str, unit: str, field: str = "host_unit") -> None:
    """Refuse a unit not on the site's list (a site with no list takes any)."""
    listed = conn.execute(select(t.units.c.unit).where(t.units.c.site == site).limit(1)).first()
    if listed and not conn.execute(select(t.units.c.unit).where(
            t.units.c.site == site, t.units.c.unit == unit)).first():  # fmt: skip
        raise DomainError(f"{field}: {unit!r} is not a unit of site {site}")


def remove(conn: Connection, site_id: str | None, unit: str, by: str, now: float) -> None:
    from sync.office import audit, log_change, resolve_site

    site = resolve_site(conn, site_id)["site_id"]
    gone = conn.execute(delete(t.units).where(t.units.c.site == site, t.units.c.unit == unit))
    if not gone.rowcount:
        raise NotFound(f"unit {unit!r} is not on site {site}'s list")
    log_change(conn, "unit", unit, 1, "upsert", {"unit": unit, "site": site, "removed": True},
               now)  # fmt: skip
    audit(conn, by, "unit_remove", site, now, unit=unit)


def listing(conn: Connection, site: str | None) -> list[dict[str, Any]]:
    q = select(t.units.c.site, t.units.c.unit).order_by(t.units.c.site, t.units.c.unit)
    if site:
        q = q.where(t.units.c.site == site)
    return [dict(r) for r in conn.execute(q).mappings()]


def in_scope(conn: Connection, site: str) -> list[str]:
    q = select(t.units.c.unit).where(t.units.c.site == site).order_by(t.units.c.unit)
    return list(conn.execute(q).scalars())
