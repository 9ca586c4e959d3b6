"""装修许可证 Renovation permits, at the office: issued for a unit's works, suspended by a
stop-work order (停工整顿) until the unit passes re-inspection, resumed, closed at completion.

Each change goes into the change log as entity ``permit`` for the permit's site, so every
gate of the estate holds it (sync.client.apply_changes); a worker pass names its permit
(``permit_no``), and the gate decision denies the worker while it is suspended
(``permit_suspended``) and once it is closed or its period has ended (``permit_closed``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from edge.errors import Conflict, DomainError, NotFound
from sync import schema as t

# what each change does to a permit: from which statuses, to which
MOVES = {
    "suspend": (("active",), "suspended"),
    "resume": (("suspended",), "active"),
    "close": (("active", "suspended"), "closed"),
}


def issue(conn: Connection, fields: dict[str, Any], by: str, now: float) -> dict[str, Any]:
    """A permit, in force from ``valid_from`` (default now) to ``valid_until``."""
    from sync.office import _ident, audit, log_change, resolve_site

    _ident(fields["permit_no"], "permit_no")
    site = resolve_site(conn, fields.get("site"))
    if not ((fields.get("unit") or "").strip() and (fields.get("company") or "").strip()):
        raise DomainError("unit and company: a permit names both")
    start = fields.get("valid_from") or now
    if fields.get("valid_until") is not None and fields["valid_until"] <= start:
        raise DomainError("valid_until: the permit's period ends before it starts")
    if conn.execute(select(t.permits.c.permit_no)
                    .where(t.permits.c.permit_no == fields["permit_no"])).first():  # fmt: skip
        raise Conflict(f"permit {fields['permit_no']} exists already")
    record = {
        "permit_no": fields["permit_no"], "site": site["site_id"], "unit": fields["unit"].strip(),
        "company": fields["company"].strip(), "scope": fields.get("scope"), "valid_from": start,
        "valid_until": fields.get("valid_until"), "status": "active", "status_reason": None,
        "version": 1, "issued_by": by, "issued_at": now, "updated_by": by, "updated_at": now,
    }  # fmt: skip
    conn.execute(t.permits.insert().values(**record))
    log_change(conn, "permit", record["permit_no"], 1, "upsert", record, now)
    audit(conn, by, "permit_issue", record["permit_no"], now, unit=record["unit"],
          company=record["company"])  # fmt: skip
    return record


def get(conn: Connection, permit_no: str) -> dict[str, Any]:
    row = conn.execute(select(t.permits).where(t.permits.c.permit_no == permit_no)).mappings()
    found = row.first()
    if found is None:
        raise NotFound(f"no permit {permit_no!r}")
    return dict(found)


def move(conn: Connection, permit_no: str, action: str, reason: str | None, by: str,
         now: float) -> dict[str, Any]:  # fmt: skip
    """Suspend, resume or close a permit, with the reason (a stop-work order's cause, the
    re-inspection passed, completion); its gates hear of it at their next pull."""
    from sync.office import audit, log_change

    sources, target = MOVES[action]
    current = get(conn, permit_no)
    if current["status"] not in sources:
        raise Conflict(f"permit {permit_no} is {current['status']}: it cannot be {target}")
    if action == "suspend" and not (reason or "").strip():
        raise DomainError("reason: a stop-work order names its cause")
    record = current | {"status": target, "status_reason": reason, "updated_by": by,
                        "updated_at": now, "version": current["version"] + 1}  # fmt: skip
    conn.execute(t.permits.update().where(t.permits.c.permit_no == permit_no).values(**record))
    log_change(conn, "permit", permit_no, record["version"], "upsert", record, now)
    audit(conn, by, f"permit_{action}", permit_no, now, reason=reason)
    return record


def listing(conn: Connection, site: str | None, status: str | None) -> list[dict[str, Any]]:
    q = select(t.permits).order_by(t.permits.c.permit_no)
    if site:
        q = q.where(t.permits.c.site == site)
    if status:
        q = q.where(t.permits.c.status == status)
    return [dict(r) for r in conn.execute(q).mappings()]


def in_scope(conn: Connection, site: str) -> list[str]:
    """The permits a gate of ``site`` may hold."""
    q = select(t.permits.c.permit_no).where(t.permits.c.site == site)
    return list(conn.execute(q.order_by(t.permits.c.permit_no)).scalars())
