"""The office side of sync: nodes, users, passes (with their change log), and the gates'
records applied exactly once. Every function takes a connection inside a transaction."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

import psycopg2
import psycopg2.errors
from sqlalchemy import Connection, Text, and_, func, or_, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.exc import DBAPIError

from edge import photos, users
from edge.cards import mask_key, parse_card
from edge.errors import Conflict, DomainError, NotFound
from edge.pass_ops import PassRequest, build_row
from edge.passes import in_range, parse_time, resolve_validity
from edge.privacy import IdHasher
from edge.slips import SlipRequest
from edge.slips import validate as validate_slip
from edge.users import hash_token
from sync import expected, permits, reports, units, wire
from sync import schema as t

log = logging.getLogger(__name__)

OFFICE_ROLES = ("clerk", "admin", "host")  # a host: a unit's visitors only
PASS_COLUMNS = (
    "id", "kind", "card_key", "card_hex", "name", "unit", "id_hash", "id_last4", "valid_from",
    "valid_until", "gates", "daily_window", "permit_no", "deposit_fen", "fee_fen",
    "photo_sha256", "issued_at", "updated_at", "issued_by",
)  # fmt: skip  # the order of edge.pass_ops.build_row


# -- sites, nodes and their scopes -----------------------------------------------------------
#
# A site is an estate; a node (a guard-room PC) belongs to one site and serves some of its
# gates. A node pulls only the passes valid at its site and gates and the slips of its
# site, and what a node sends about a gate, a pass or a slip outside that scope is not
# taken as a fact (docs/sync.md, "Sites and scopes").

IDENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class Node(NamedTuple):
    node_id: str
    site: str
    gates: tuple[str, ...] | None  # None: every gate of its site

    @property
    def scope(self) -> str:
        """Names what the node may hold; a gate that holds another scope's records (its
        gates changed, or it synced before sites) drops them and pulls again."""
        gates = ",".join(sorted(self.gates)) if self.gates is not None else "*"
        return hashlib.sha256(f"{self.site}|{gates}".encode()).hexdigest()[:16]


def audit(conn: Connection, who: str, action: str, target: str, now: float,
          **detail: Any) -> None:  # fmt: skip
    conn.execute(t.audit.insert().values(at=now, who=who, action=action, target=target,
                                         detail=detail))  # fmt: skip


def _ident(value: str, what: str) -> str:
    if not IDENT.fullmatch(value):
        raise DomainError(f"{what}: {value!r} is not an id (letters, digits, _ . -; at most 64)")
    return value


def gate_list(gates: str | Iterable[str] | None) -> list[str] | None:
    """A pass's gates (comma-separated, as the gates keep them) as a list; None: all."""
    if gates is None:
        return None
    items = gates.split(",") if isinstance(gates, str) else list(gates)
    return [g.strip() for g in items if g.strip()] or None


def add_site(conn: Connection, site_id: str, name: str, gates: list[str], by: str,
             now: float) -> dict[str, Any]:  # fmt: skip
    _ident(site_id, "site")
    if not name.strip():
        raise DomainError("site: a name is required")
    if not gates:
        raise DomainError(f"site {site_id}: name its gates (--gates north,south)")
    for g in gates:
        _ident(g, "gate")
    if conn.execute(select(t.sites.c.site_id).where(t.sites.c.site_id == site_id)).first():
        raise Conflict(f"site {site_id!r} exists already")
    record = {"site_id": site_id, "name": name.strip(), "gates": sorted(set(gates)),
              "created_at": now}  # fmt: skip
    conn.execute(t.sites.insert().values(**record))
    audit(conn, by, "site_add", site_id, now, name=record["name"], gates=record["gates"])
    # the ``default`` site stands for an office from before sites: once real sites are
    # declared, an empty one would only be a wrong choice on every form
    used = [select(x.c.site).where(x.c.site == "default").limit(1)
            for x in (t.nodes, t.passes, t.slips)]  # fmt: skip
    if not any(conn.execute(q).first() for q in used):
        conn.execute(t.sites.delete().where(t.sites.c.site_id == "default"))
    return record


def list_sites(conn: Connection) -> list[dict[str, Any]]:
    rows = conn.execute(select(t.sites).order_by(t.sites.c.site_id)).mappings()
    return [dict(r) for r in rows]


def resolve_site(conn: Connection, site_id: str | None) -> dict[str, Any]:
    """The site a pass, slip or node is for: the one named, or the office's only site."""
    sites = {r["site_id"]: r for r in list_sites(conn)}
    if site_id is None:
        if len(sites) == 1:
            return next(iter(sites.values()))
        raise DomainError(f"site: name the estate, one of: {', '.join(sorted(sites))}")
    if site_id not in sites:
        raise DomainError(f"site: {site_id!r} is not a site of this office "
                          f"(one of: {', '.join(sorted(sites))})")  # fmt: skip
    return sites[site_id]


def check_gates(site: dict[str, Any], gates: Iterable[str] | None) -> None:
    """Each gate is one of the site's (a typo would give a card that never opens)."""
    if gates is None or site["gates"] is None:
        return
    unknown = sorted(set(gates) - set(site["gates"]))
    if unknown:
        raise DomainError(f"gates: {', '.join(unknown)} not a gate of site {site['site_id']} "
                          f"(its gates: {', '.join(site['gates'])})")  # fmt: skip


def add_node(conn: Connection, node_id: str, now: float, site: str | None = None,
             gates: list[str] | None = None, by: str = "cli") -> str:  # fmt: skip
    """Register a gate node of ``site`` serving ``gates`` (default: all the site's gates);
    answers its token, which is shown once and kept only as a hash."""
    _ident(node_id, "node")
    where = resolve_site(conn, site)
    check_gates(where, gates)
    if conn.execute(select(t.nodes.c.node_id).where(t.nodes.c.node_id == node_id)).first():
        raise Conflict(f"node {node_id!r} is registered already")
    token = secrets.token_urlsafe(32)
    conn.execute(t.nodes.insert().values(
        node_id=node_id, token_hash=hash_token(token), created_at=now,
        site=where["site_id"], gates=sorted(set(gates)) if gates else None,
    ))  # fmt: skip
    audit(conn, by, "node_add", node_id, now, site=where["site_id"], gates=gates)
    return token


def list_nodes(conn: Connection) -> list[dict[str, Any]]:
    c = t.nodes.c
    rows = conn.execute(
        select(c.node_id, c.site, c.gates, c.created_at, c.last_seen_at, c.revoked_at,
               c.rotated_at, c.flagged_at, c.clock_offset_s).order_by(c.node_id)
    ).mappings()  # fmt: skip
    return [dict(r) for r in rows]


def revoke_node(conn: Connection, node_id: str, by: str, now: float) -> None:
    """Its token gets 401 from the next request on (a stolen or retired gate PC)."""
    done = conn.execute(t.nodes.update().where(t.nodes.c.node_id == node_id,
                                               t.nodes.c.revoked_at.is_(None))
                        .values(revoked_at=now))  # fmt: skip
    if done.rowcount == 0:
        raise NotFound(f"no active node {node_id!r}")
    audit(conn, by, "node_revoke", node_id, now)
    _token_ended(conn, node_id)


def set_node_gates(conn: Connection, node_id: str, gates: list[str] | None, by: str,
                   now: float) -> None:  # fmt: skip
    """The gates a node serves (None: all its site's). At its next pull the gate drops what
    it no longer may hold and pulls what it now may (``Node.scope``)."""
    n = t.nodes.c
    row = conn.execute(select(n.site).where(n.node_id == node_id, n.revoked_at.is_(None))).first()
    if row is None:
        raise NotFound(f"no active node {node_id!r}")
    check_gates(resolve_site(conn, row[0]), gates)
    conn.execute(t.nodes.update().where(t.nodes.c.node_id == node_id)
                 .values(gates=sorted(set(gates)) if gates else None))  # fmt: skip
    audit(conn, by, "node_gates", node_id, now, gates=gates)


def rotate_node(conn: Connection, node_id: str, by: str, now: float) -> str:
    """A new token for the node; the old one gets 401 from the next request on."""
    token = secrets.token_urlsafe(32)
    done = conn.execute(t.nodes.update().where(t.nodes.c.node_id == node_id,
                                               t.nodes.c.revoked_at.is_(None))
                        .values(token_hash=hash_token(token), rotated_at=now))  # fmt: skip
    if done.rowcount == 0:
        raise NotFound(f"no active node {node_id!r}")
    audit(conn, by, "node_rotate", node_id, now)
    _token_ended(conn, node_id)
    return token


def _token_ended(conn: Connection, node_id: str) -> None:
    """Every office process answers the node's waiting poll at once (at commit), which
    then finds its token no longer valid: 401 now, not at the poll's end (sync.notify)."""
    conn.execute(text("SELECT pg_notify('gatehouse_changes', :p)"), {"p": f"node:{node_id}"})


def node_of(conn: Connection, token: str) -> Node | None:
    c = t.nodes.c
    row = conn.execute(
        select(c.node_id, c.site, c.gates).where(
            c.token_hash == hash_token(token), c.revoked_at.is_(None)
        )
    ).first()
    return Node(row[0], row[1], tuple(row[2]) if row[2] is not None else None) if row else None


def node_scope(conn: Connection, node_id: str) -> Node:
    c = t.nodes.c
    row = conn.execute(select(c.site, c.gates).where(c.node_id == node_id)).first()
    site, gates = row if row else ("default", None)
    return Node(node_id, site, tuple(gates) if gates is not None else None)


def _holds(node: Node) -> Any:
    """SQL: a pass ``node`` may hold, whatever its status."""
    p = t.passes.c
    held = p.site == node.site
    if node.gates is not None:
        listed = func.string_to_array(p.gates, ",", type_=ARRAY(Text))
        held = and_(held, or_(p.gates.is_(None), p.gates == "",
                              listed.overlap(list(node.gates))))  # fmt: skip
    return held


def in_scope(conn: Connection, node: Node) -> dict[str, list[str]]:
    """The ids of the office's passes, slips and permits ``node`` may hold, whatever their
    status."""
    p = t.passes.c
    passes = conn.execute(select(p.id).where(_holds(node)).order_by(p.id)).scalars().all()
    slips = conn.execute(select(t.slips.c.number).where(t.slips.c.site == node.site)
                         .order_by(t.slips.c.number)).scalars().all()  # fmt: skip
    return {"passes": list(passes), "slips": list(slips),
            "permits": permits.in_scope(conn, node.site),
            "units": units.in_scope(conn, node.site),
            "expected_visitors": expected.in_scope(conn, node.site)}  # fmt: skip


def photo_in_scope(conn: Connection, node: Node, sha: str) -> bool:
    """A photo a pass ``node`` may hold names: the only photos it may fetch."""
    found = select(t.passes.c.id).where(_holds(node), t.passes.c.photo_sha256 == sha)
    return conn.execute(found.limit(1)).first() is not None


def _sees(site: Any, gates: Any, node: Node) -> Any:
    """SQL: a change with this scope is for ``node``."""
    cond = site == node.site
    if node.gates is not None:
        cond = and_(cond, or_(gates.is_(None), gates.overlap(list(node.gates))))
    return cond


def add_user(conn: Connection, name: str, role: str, now: float, by: str = "cli",
             site: str | None = None, unit: str | None = None) -> str:  # fmt: skip
    """A person's token, shown once. A revoked user comes back under the same name (the
    duty log and signatures keep naming one person) with a new token. A host is the host
    of one unit (on the site's list, if it has one): the visitors they may announce."""
    if role not in OFFICE_ROLES:
        raise DomainError(f"role: {role!r} is not one of {', '.join(OFFICE_ROLES)} (office)")
    if role == "host":
        if not (unit or "").strip():
            raise DomainError("unit: a host is the host of one unit: give it")
        site, unit = resolve_site(conn, site)["site_id"], (unit or "").strip()
        units.check(conn, site, unit, "unit")
    elif site or unit:
        raise DomainError("unit: only a host has a unit")
    found = conn.execute(select(t.users.c.revoked_at).where(t.users.c.name == name)).first()
    if found and found[0] is None:
        raise Conflict(f"a user named {name!r} exists already")
    token = secrets.token_urlsafe(32)
    values = {"role": role, "token_hash": hash_token(token), "created_at": now,
              "revoked_at": None, "password_hash": None, "password_set_at": None,
              "site": site, "unit": unit}  # fmt: skip
    if found:
        conn.execute(t.users.update().where(t.users.c.name == name).values(**values))
    else:
        conn.execute(t.users.insert().values(name=name, **values))
    audit(conn, by, "user_add", name, now, role=role, again=bool(found),
          **({"site": site, "unit": unit} if unit else {}))  # fmt: skip
    return token


def rotate_user(conn: Connection, name: str, by: str, now: float) -> str:
    """A new token for an active user (a leaked one): the old one gets 401 from the next
    request on; the name, role and desk password stay."""
    token = secrets.token_urlsafe(32)
    done = conn.execute(t.users.update().where(t.users.c.name == name,
                                               t.users.c.revoked_at.is_(None))
                        .values(token_hash=hash_token(token)))  # fmt: skip
    if done.rowcount == 0:
        raise NotFound(f"no active user named {name!r}")
    audit(conn, by, "user_rotate", name, now)
    return token


def revoke_user(conn: Connection, name: str, by: str, now: float) -> None:
    """Token and password stop working from the next request; desk sessions end at theirs."""
    done = conn.execute(t.users.update().where(t.users.c.name == name,
                                               t.users.c.revoked_at.is_(None))
                        .values(revoked_at=now))  # fmt: skip
    if done.rowcount == 0:
        raise NotFound(f"no active user named {name!r}")
    audit(conn, by, "user_revoke", name, now)


def list_users(conn: Connection) -> list[dict[str, Any]]:
    c = t.users.c
    rows = conn.execute(select(c.name, c.role, c.site, c.unit, c.created_at, c.revoked_at,
                               c.password_set_at).order_by(c.name)).mappings()  # fmt: skip
    return [dict(r) for r in rows]


def host_of(conn: Connection, name: str) -> tuple[str, str] | None:
    """A host user's (site, unit); None for anyone else."""
    row = conn.execute(select(t.users.c.site, t.users.c.unit).where(
        t.users.c.name == name, t.users.c.role == "host")).first()  # fmt: skip
    return (row[0], row[1]) if row else None


def user_of(conn: Connection, token: str) -> tuple[str, str] | None:
    row = conn.execute(
        select(t.users.c.name, t.users.c.role).where(
            t.users.c.token_hash == hash_token(token), t.users.c.revoked_at.is_(None)
        )
    ).first()
    return (row[0], row[1]) if row else None


def set_password(conn: Connection, name: str, password: str, now: float) -> None:
    """The desk's password: for clerks and admins (a host has the token only)."""
    if host_of(conn, name):
        raise DomainError(f"{name!r} is a host: a host has the token only, no desk password")
    done = conn.execute(
        t.users.update()
        .where(t.users.c.name == name, t.users.c.revoked_at.is_(None))
        .values(password_hash=users.hash_password(password), password_set_at=now)
    )
    if done.rowcount == 0:
        raise NotFound(f"no active user named {name!r}")
    audit(conn, "cli", "user_password", name, now)


def check_password(conn: Connection, name: str, password: str) -> tuple[str, str] | None:
    row = conn.execute(
        select(t.users.c.name, t.users.c.role, t.users.c.password_hash).where(
            t.users.c.name == name, t.users.c.revoked_at.is_(None)
        )
    ).first()
    ok = users.verify_password(row[2] if row else None, password)
    return (row[0], row[1]) if ok and row else None


def active_user(conn: Connection, name: str) -> tuple[str, str] | None:
    row = conn.execute(
        select(t.users.c.name, t.users.c.role).where(
            t.users.c.name == name, t.users.c.revoked_at.is_(None)
        )
    ).first()
    return (row[0], row[1]) if row else None


def recent_passes(conn: Connection, limit: int = 20, q: str = "") -> list[dict[str, Any]]:
    """The passes issued last, newest first (the desk's list); with ``q``, the passes of
    that card, or whose holder's name or unit contains it."""
    query = select(t.passes).order_by(t.passes.c.issued_at.desc()).limit(limit)
    q = q.strip()
    if q:
        found = _like(t.passes.c.name, q) | _like(t.passes.c.unit, q)
        with contextlib.suppress(ValueError):  # not a card number: names and units only
            found = found | (t.passes.c.card_key == parse_card(q).key)
        query = query.where(found)
    return [dict(r) for r in conn.execute(query).mappings()]


def _like(column: Any, q: str) -> Any:
    """``column`` contains ``q`` as typed (LIKE's wildcards in it match themselves)."""
    pattern = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(f"%{pattern}%", escape="\\")


def sync_state(conn: Connection) -> list[dict[str, Any]]:
    """Each gate: when it was last heard from, and per epoch how far its records are in."""
    seen = conn.execute(
        select(t.nodes.c.node_id, t.nodes.c.last_seen_at).order_by(t.nodes.c.node_id)
    ).all()
    cursors = [dict(r) for r in conn.execute(select(t.edge_cursors)).mappings()]
    return [
        {"node": n, "last_seen_at": at, "epochs": [c for c in cursors if c["node_id"] == n]}
        for n, at in seen
    ]


def recent_audit(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)).mappings()
    return [dict(r) for r in rows]


def recent_anomalies(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(select(t.anomalies).order_by(t.anomalies.c.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings()]


def get_pass(conn: Connection, pass_id: str) -> dict[str, Any]:
    row = conn.execute(select(t.passes).where(t.passes.c.id == pass_id)).mappings().first()
    if row is None:
        raise NotFound(f"no pass {pass_id!r}")
    return dict(row)


# -- times the office takes ------------------------------------------------------------------
#
# A pass or slip issued here names its times for years: on the desk, on a printed QR code, in
# every gate's comparisons. Outside 2000-2099 a time is a typo or an attack (year 10000 does
# not fit Python's datetime, 1e300 no calendar at all), so the office refuses it where a
# clerk gives one, after the shared parser (edge.passes.parse_time, which checks the years
# too) has read it, and again on the numbers it keeps, whoever computed them. The bounds are
# the gates' (edge.passes): the years' first and last moments in the earliest and latest
# zones on Earth (UTC+14, UTC-12), so any local time in those years is taken anywhere.


def check_time(field: str, when: float) -> float:
    """``when`` if it falls in the years the office takes, else DomainError naming ``field``."""
    if not in_range(when):  # NaN fails this too
        raise DomainError(f"{field}: must be a time in the years 2000 to 2099")
    return when


def parse_field_time(field: str, value: str, tz: Any) -> float:
    """A time a clerk typed into ``field``, read by the shared parser and kept to the years
    the office takes; DomainError naming the field otherwise."""
    try:
        when = parse_time(value, tz)
    except (ValueError, OverflowError):  # its PassError too: said again with the field
        when = math.nan
    if not in_range(when):
        raise DomainError(f"{field}: {value!r} is not a time in the years 2000 to 2099 (ISO 8601)")
    return when


# -- what the office owns: passes, and the log the gates pull -----------------------------


def log_change(conn: Connection, entity: str, entity_id: str, version: int, op: str,
               payload: dict[str, Any], now: float,
               was: dict[str, Any] | None = None) -> int:  # fmt: skip
    """Append to the change log with an id allocated in commit order (see schema), for
    the nodes of the payload's site and gates; ``was``: the record before, whose nodes
    that are out of the new scope are told to drop it."""
    conn.execute(text("SELECT pg_advisory_xact_lock(7215)"))
    change_id = (
        int(conn.execute(select(func.coalesce(func.max(t.change_log.c.change_id), 0))).scalar_one())
        + 1
    )
    conn.execute(t.change_log.insert().values(
        change_id=change_id, entity=entity, entity_id=entity_id, version=version, op=op,
        payload=payload, committed_at=now, stamp=secrets.token_hex(8),
        site=payload["site"], gates=gate_list(payload.get("gates")) if entity == "pass" else None,
        was_site=was["site"] if was else None,
        was_gates=gate_list(was.get("gates")) if was and entity == "pass" else None,
    ))  # fmt: skip
    # every office process's listener (sync.notify) hears it at commit, in commit order, and
    # wakes its waiting gates; not at all if this transaction rolls back
    conn.execute(text("SELECT pg_notify('gatehouse_changes', :id)"), {"id": str(change_id)})
    return change_id


def pass_record(conn: Connection, pass_id: str) -> dict[str, Any]:
    row = conn.execute(select(t.passes).where(t.passes.c.id == pass_id)).mappings().first()
    if row is None:
        raise NotFound(f"no pass with id {pass_id!r}")
    return dict(row)


def issue_pass(conn: Connection, req: PassRequest, hasher: IdHasher, tz: Any, by: str,
               now: float, site: str | None = None, replace: bool = False) -> dict:  # fmt: skip
    """Issue a pass. One card, one answer, as at a gate (edge.pass_ops.issue): a card holds
    one live pass of a kind at a site; another is refused naming it, or replaces it."""
    where = resolve_site(conn, site)
    check_gates(where, gate_list(req.gates))
    for field, value in (("valid_from", req.valid_from), ("valid_until", req.valid_until)):
        if value:  # before build_row, whose arithmetic on a year-1 time fails unnamed
            parse_field_time(field, value, tz)
    # the ID number hashed under the estate's key, the one its gates hash with
    site_hasher = hasher.for_site(where["site_id"])
    row = dict(zip(PASS_COLUMNS, build_row(req, site_hasher, tz, now, by), strict=True))
    if req.photo is not None and not has_photo(conn, req.photo):
        raise NotFound(f"photo {req.photo}: upload it first (POST /api/v1/photos)")
    record = row | {"status": "active", "version": 1, "updated_by": by,
                    "site": where["site_id"]}  # fmt: skip
    p = t.passes.c
    held = conn.execute(
        select(p.id).where(
            p.card_key == record["card_key"], p.kind == record["kind"],
            p.site == record["site"], p.status == "active",
            (p.valid_until.is_(None)) | (p.valid_until > now),
        ).order_by(p.issued_at)
    ).scalars().all()  # fmt: skip
    if held and not replace:
        card = mask_key(record["card_key"])
        raise Conflict(f"card {card} already has {record['kind']} pass {held[0]}; revoke it, or "
                       "replace it (--replace, or replace: true)")  # fmt: skip
    for old in held:
        revoke_pass(conn, old, f"replaced by {record['id']}", by, now)
    conn.execute(t.passes.insert().values(**record))
    log_change(conn, "pass", record["id"], 1, "upsert", record, now)
    audit(conn, by, "pass_issue", record["id"], now, site=record["site"], kind=record["kind"],
          card=mask_key(record["card_key"]))  # fmt: skip
    return record


def revoke_pass(
    conn: Connection, pass_id: str, reason: str | None, by: str, now: float
) -> dict[str, Any]:
    current = pass_record(conn, pass_id)
    if current["status"] != "active":
        raise Conflict(f"pass {pass_id} is already {current['status']}")
    record = current | {"status": "revoked", "status_reason": reason, "updated_by": by,
                        "updated_at": now, "version": current["version"] + 1}  # fmt: skip
    conn.execute(t.passes.update().where(t.passes.c.id == pass_id).values(**record))
    log_change(conn, "pass", pass_id, record["version"], "revoke", record, now, was=current)
    audit(conn, by, "pass_revoke", pass_id, now, reason=reason)
    return record


def renew_pass(conn: Connection, pass_id: str, valid_until: float | None, tz: Any, by: str,
               now: float) -> dict[str, Any]:  # fmt: skip
    """A new period for an active pass, from now to ``valid_until`` (default: as long as its
    kind allows): the same card, holder and photo; a temporary pass is printed again."""
    current = pass_record(conn, pass_id)
    if current["status"] != "active":
        raise Conflict(f"pass {pass_id} is {current['status']}; issue a new one instead")
    if valid_until is not None:
        check_time("valid_until", valid_until)
    period = resolve_validity(current["kind"], now, tz, None, valid_until)
    record = current | {"valid_from": period.valid_from, "valid_until": period.valid_until,
                        "updated_by": by, "updated_at": now,
                        "version": current["version"] + 1}  # fmt: skip
    conn.execute(t.passes.update().where(t.passes.c.id == pass_id).values(**record))
    log_change(conn, "pass", pass_id, record["version"], "upsert", record, now, was=current)
    audit(conn, by, "pass_renew", pass_id, now, valid_until=record["valid_until"])
    return record


# -- photos ---------------------------------------------------------------------------------


def put_photo(conn: Connection, data: bytes, by: str, now: float) -> str:
    """Keep an uploaded picture, normalised as every gate keeps it; its SHA-256."""
    jpeg = photos.normalise(data)
    sha = photos.digest(jpeg)
    conn.execute(insert(t.photos).values(sha256=sha, jpeg=jpeg, created_at=now, created_by=by)
                 .on_conflict_do_nothing())  # fmt: skip
    audit(conn, by, "photo_upload", sha, now)
    return sha


def has_photo(conn: Connection, sha: str) -> bool:
    found = conn.execute(select(t.photos.c.sha256).where(t.photos.c.sha256 == sha)).first()
    return found is not None


def get_photo(conn: Connection, sha: str) -> bytes:
    found = conn.execute(select(t.photos.c.jpeg).where(t.photos.c.sha256 == sha)).first()
    if found is None:
        raise NotFound(f"no photo {sha}")
    return bytes(found[0])


def issue_slip(conn: Connection, req: SlipRequest, by: str, now: float, tz: Any,
               site: str | None = None) -> dict:  # fmt: skip
    """A slip issued by the service centre (numbered FO-<year>-<n>, apart from the gates')
    for the gates of ``site``."""
    where = resolve_site(conn, site)
    start, end = validate_slip(req, now)
    check_time("valid_from", start)
    check_time("valid_until", end)
    conn.execute(text("SELECT pg_advisory_xact_lock(7216)"))  # serial numbers, no gaps
    year = datetime.fromtimestamp(now, tz).year
    prefix = f"FO-{year}-"
    last = conn.execute(
        select(func.max(t.slips.c.number)).where(t.slips.c.number.like(prefix + "%"))
    ).scalar_one()
    number = f"{prefix}{(int(last.rsplit('-', 1)[1]) + 1) if last else 1:05d}"
    record = {
        "number": number, "unit": req.unit.strip(), "owner": req.owner.strip(),
        "bearer": req.bearer.strip(), "authorisation": req.authorisation,
        "authorisation_detail": req.detail,
        "items": [{"name": i.name, "qty": i.qty, "hazard": i.hazard} for i in req.items],
        "hazard_allowed": int(req.hazard_allowed), "valid_from": start, "valid_until": end,
        "approver": req.approver, "status": "issued", "version": 1, "issued_by": by,
        "issued_at": now, "site": where["site_id"],
    }  # fmt: skip
    conn.execute(t.slips.insert().values(**record))
    log_change(conn, "slip", number, 1, "upsert", record, now)
    audit(conn, by, "slip_issue", number, now, site=record["site"], unit=record["unit"])
    return record


def recent_slips(conn: Connection, limit: int = 20, q: str = "") -> list[dict[str, Any]]:
    """The office's slips issued last, newest first; with ``q``, those of that number,
    unit, owner or bearer."""
    query = select(t.slips).order_by(t.slips.c.issued_at.desc()).limit(limit)
    q = q.strip()
    if q:
        c = t.slips.c
        query = query.where(_like(c.number, q) | _like(c.unit, q) | _like(c.owner, q)
                            | _like(c.bearer, q))  # fmt: skip
    return [dict(r) for r in conn.execute(query).mappings()]


def get_slip(conn: Connection, number: str) -> dict[str, Any]:
    row = conn.execute(select(t.slips).where(t.slips.c.number == number)).mappings().first()
    if row is None:
        raise NotFound(f"no slip {number!r}")
    return dict(row)


def cancel_slip(conn: Connection, number: str, reason: str, by: str, now: float) -> dict[str, Any]:
    row = conn.execute(select(t.slips).where(t.slips.c.number == number)).mappings().first()
    if row is None:
        raise NotFound(f"no slip numbered {number!r}")
    if row["status"] != "issued":
        raise Conflict(f"slip {number} is {row['status']} already")
    record = dict(row) | {"status": "cancelled", "version": row["version"] + 1,
                          "closed_at": now, "closed_by": by, "notes": reason}  # fmt: skip
    conn.execute(t.slips.update().where(t.slips.c.number == number).values(**record))
    log_change(conn, "slip", number, record["version"], "cancel", record, now)
    audit(conn, by, "slip_cancel", number, now, reason=reason)
    return record


def changes_after(conn: Connection, since: int, limit: int, node: Node) -> dict[str, Any]:
    """The next ``limit`` changes after ``since`` for ``node``: those in its scope as they
    are, those that left it as a ``drop`` (no payload), the rest not at all. ``next`` is
    the cursor after them: past the changes for other sites too, so a gate never reads
    them again; ``stamp`` is that change's (the gate quotes it back, sync.recovery)."""
    c = t.change_log.c
    # the newest change first: ids commit in order (log_change), so every change up to it
    # is committed and the page below, read after, sees all of them
    top, top_stamp = conn.execute(
        select(c.change_id, c.stamp).order_by(c.change_id.desc()).limit(1)
    ).first() or (0, None)  # fmt: skip
    sees = _sees(c.site, c.gates, node)
    saw = _sees(c.was_site, c.was_gates, node)
    rows = [dict(r) for r in conn.execute(
        select(t.change_log, sees.label("sees"))
        .where(c.change_id > since, c.change_id <= top, or_(sees, saw))
        .order_by(c.change_id).limit(limit + 1)
    ).mappings()]  # fmt: skip
    more, rows = len(rows) > limit, rows[:limit]
    changes = []
    for r in rows:
        for scope in ("site", "gates", "was_site", "was_gates"):
            del r[scope]
        if not r.pop("sees"):
            r |= {"op": "drop", "payload": {}}
        changes.append(r)
    if more or (not rows and since >= top):
        return {"changes": changes, "next": rows[-1]["change_id"] if rows else since,
                "stamp": rows[-1]["stamp"] if rows else None, "has_more": more}  # fmt: skip
    return {"changes": changes, "next": top, "stamp": top_stamp, "has_more": False}


# -- what the gates own: applied once, in order, checked ---------------------------------
#
# Every row of a batch must be a record the office knows, its payload the text its sha256
# names and a JSON object that jsonb takes as it is; the rows the office acts on or counts
# (a grant it checks against its revocations, a slip fact, an alarm, a confiscation) with
# the fields it reads of their type. A refusal is a 422 naming the seq and the problem, in
# the batch's one transaction: nothing of it stays.
#
# Parsing every payload in Python would cost a drain a third of its speed (bench/
# sync_drain.py), so the bulk (denials, visitors, pictures, duty log...) is parsed once, by
# PostgreSQL as COPY reads it into jsonb; when it refuses one, the batch is checked again
# row by row in Python to name the seq. What jsonb takes that Python would not (1e400,
# nesting past 1,000 levels) is kept: it is valid JSON, and the office's reads answer it.

# every kind a gate sends (edge: the callers of outbox.add; tests/test_sync.py checks it)
KINDS = frozenset({
    "access_event", "alarm", "confiscation", "duty_log", "handover", "handover_signed",
    "pass_revoked", "slip_released", "slip_rejected", "slip_cancelled", "snapshot",
    "visitor_in", "visitor_out", "key", "key_loan", "rectification", "patrol_round",
    "fault_notice", "door_event", "gate_mode",
})  # fmt: skip
_SLIP_FACT = (("number", False, True), ("closed_at", True, False), ("closed_by", False, False),
              ("gate", False, False), ("notes", False, False))  # fmt: skip
# (field, a number (else text), required): what the office reads of each kind
_FIELDS: dict[str, tuple[tuple[str, bool, bool], ...]] = {
    "access_event": (("ts", True, True), ("decision", False, True), ("pass_id", False, False),
                     ("gate", False, False)),
    "alarm": (("at", True, True), ("action", False, True), ("type", False, True)),
    "confiscation": (("at", True, True), ("pass_id", False, True), ("gate", False, False)),
    "pass_revoked": (("at", True, True), ("pass_id", False, True)),
    "key_loan": (("lent_at", True, True), ("due_at", True, True), ("key_id", False, True)),
    "slip_released": _SLIP_FACT,
    "slip_rejected": _SLIP_FACT,
    "slip_cancelled": _SLIP_FACT,
}  # fmt: skip
NUMBER_CHARS = 40  # a float's text at most (a gate writes its shortest repr, ~20 chars)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _float(token: str) -> float:
    """A JSON number with a fraction or exponent that jsonb and Python read alike: Python
    makes 1e400 infinite (which no answer can carry) and 1e-999999 zero (which PostgreSQL
    refuses)."""
    value = float(token)
    underflow = value == 0 and any(c in "123456789" for c in token.partition("e")[0].lower())
    if len(token) > NUMBER_CHARS or not math.isfinite(value) or underflow:
        raise ValueError(f"number {token[:NUMBER_CHARS]} is out of range")
    return value


# made once: json.loads with hooks builds a decoder at every call (a fifth of the check's
# time). Integers keep int()'s own limit (4,300 digits), which jsonb's numeric holds.
_PAYLOAD = json.JSONDecoder(parse_constant=_no_constant, parse_float=_float)


def unstorable(value: Any) -> str | None:
    """What in a parsed payload jsonb refuses though JSON allows it: U+0000, and a lone
    surrogate (an escape like \\ud800 without its pair)."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            if "\x00" in v:
                return "U+0000"
            try:
                v.encode()
            except UnicodeEncodeError:
                return "a lone surrogate"
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _acted_on(kind: str, payload: str) -> bool:
    """Whether the office reads this record's fields at once: a grant (the text says so,
    or may through a \\u escape), a slip fact, an alarm, a confiscation."""
    if kind == "access_event":
        return "grant" in payload or "\\u" in payload
    return kind in _FIELDS


def checked_record(e: wire.Row, base: int, parse: bool = False) -> tuple[str, dict | None]:
    """One row of a batch as the office will keep it: (kind, its payload parsed if the
    office acts on it or ``parse``), or DomainError naming its seq and what is wrong."""
    if e.seq < base:
        raise DomainError(f"seq {e.seq}: before the epoch's first seq {base}")
    kind = wire.unescape(e.kind)
    if kind not in KINDS:
        raise DomainError(f"seq {e.seq}: kind {kind!r} is not a record the office knows")
    payload = wire.unescape(e.payload)
    if hashlib.sha256(payload.encode()).hexdigest() != e.sha256:
        raise DomainError(f"seq {e.seq}: payload does not match its sha256")
    # jsonb checks the bulk as JSON; of valid JSON, only an object starts with "{" (what
    # does not is parsed here, to say what it is)
    looks_whole = payload.lstrip(" \t\n\r").startswith("{")
    if not parse and looks_whole and not _acted_on(kind, payload):
        return kind, None
    try:
        record = _PAYLOAD.decode(payload)
    except RecursionError:
        raise DomainError(f"seq {e.seq}: payload is nested too deeply") from None
    except ValueError as err:
        raise DomainError(f"seq {e.seq}: payload is not JSON the office can keep ({err})") from None
    if not isinstance(record, dict):
        raise DomainError(f"seq {e.seq}: payload is not a JSON object")
    # U+0000 and lone surrogates reach a parsed string only through a \u escape
    if "\\u" in payload and (found := unstorable(record)) is not None:
        raise DomainError(f"seq {e.seq}: payload holds {found}, which the office cannot store")
    for name, number, required in _FIELDS.get(kind, ()):
        value = record.get(name)
        if value is None and not required:
            continue
        if number and not _is_number(value):
            raise DomainError(f"seq {e.seq}: {kind}.{name} must be a number")
        if not number and not isinstance(value, str):
            raise DomainError(f"seq {e.seq}: {kind}.{name} must be text")
    return kind, record


class _Refused(DomainError):
    """PostgreSQL refused a line of a COPY (``line``: 1-based, when it said which)."""

    def __init__(self, message: str, said: str, line: int | None) -> None:
        super().__init__(message)
        self.said, self.line = said, line


_COPY_LINE = re.compile(r"COPY \w+, line (\d+)")


def _copy(cur: Any, sql: str, lines: Iterable[str]) -> None:
    """COPY these lines; what PostgreSQL refuses in them is the batch's problem, the
    database being away is not (503)."""
    try:
        cur.copy_expert(sql, io.StringIO("".join(lines)))
    except (
        psycopg2.DataError,
        psycopg2.IntegrityError,
        psycopg2.errors.ProgramLimitExceeded,
        psycopg2.errors.StatementTooComplex,
    ) as err:  # (too deep for its stack, too big)
        said = (err.diag.message_primary or str(err)).strip().splitlines()[0]
        where = _COPY_LINE.search(err.diag.context or "")
        raise _Refused(f"push: the office's database refused the batch: {said}", said,
                       int(where[1]) if where else None) from None  # fmt: skip
    except psycopg2.Error as err:  # raw DBAPI errors: the app's 503 handler knows these
        raise DBAPIError(sql, None, err) from None


def _set_aside_line(e: wire.Row, kind: str, reason: str) -> str:
    """The stand-in ``edge_events`` keeps for a row set aside: its seq is accounted for (the
    high-water mark moves past it), a resend of the same row is a harmless duplicate (the
    gate's sha256 is kept), and the row itself is in ``set_aside``."""
    stand_in = json.dumps({"kind": kind, "reason": reason[:500]})  # ASCII, no NUL: storable
    return f"{e.seq}\tset_aside\t{e.ref}\t{stand_in}\t{e.sha256}"


def _raw(e: wire.Row) -> bytes:
    """The row as it came on the wire (fields still escaped)."""
    return f"{e.seq}\t{e.kind}\t{e.ref}\t{e.sha256}\t{e.payload}\n".encode()


def apply_push(conn: Connection, node_id: str, epoch: int, base: int, batch: list[wire.Row],
               now: float, gate_now: float | None = None,
               skip_to: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Apply one batch from a gate in one transaction, received at ``now`` (``gate_now``:
    the gate's clock when it sent it); answers the contiguous high-water mark.

    Nothing a gate sends can hold up what comes after it: a row the office can never store
    or apply (U+0000 in a text, a kind it does not know, a field of the wrong type) is set
    aside byte for byte, with an anomaly; a seq that comes again with other content (a
    database copied back, a VM rolled back) keeps both, flags the node and closes the epoch
    from that seq, which the gate answers by sending the rest under a new epoch; and
    ``skip_to`` is the gate saying it no longer has the seqs before it (a pruned backup
    restored), so the office records the gap and moves on. What is refused whole (422,
    nothing kept) is a batch that breaks the protocol itself: its lines, a seq twice or
    below the epoch's base, a base that disagrees with earlier batches."""
    records: dict[int, tuple[str, dict[str, Any] | None]] = {}
    aside: dict[int, tuple[str, str]] = {}  # seq → (kind, why it is set aside)
    for e in batch:
        if e.seq in records or e.seq in aside:
            raise DomainError(f"seq {e.seq}: twice in one batch")
        if e.seq < base:
            raise DomainError(f"seq {e.seq}: before the epoch's first seq {base}")
        try:
            records[e.seq] = checked_record(e, base)
        except DomainError as err:
            aside[e.seq] = (wire.unescape(e.kind), str(err))
    cursor = _epoch_cursor(conn, node_id, epoch, base)
    if gate_now is not None and math.isfinite(gate_now):
        conn.execute(t.nodes.update().where(t.nodes.c.node_id == node_id)
                     .values(clock_offset_s=gate_now - now))  # fmt: skip
    closed = cursor["closed_from"]
    stored: dict[int, str] = {}
    if batch:  # what of this batch the office has already (a resend), by the primary key
        e_ = t.edge_events.c
        stored = dict(conn.execute(
            select(e_.seq, e_.sha256).where(
                e_.node_id == node_id, e_.epoch == epoch,
                e_.seq.between(min(e.seq for e in batch), max(e.seq for e in batch)))
        ).all())  # fmt: skip
    conflicts = [e for e in batch if e.seq in stored and stored[e.seq] != e.sha256]
    for e in conflicts:
        conn.execute(t.set_aside.insert().values(
            received_at=now, node_id=node_id, epoch=epoch, seq=e.seq, kind=wire.unescape(e.kind),
            reason=f"sent again with other content (the office keeps sha256 {stored[e.seq]})",
            raw=_raw(e),
        ))  # fmt: skip
    if conflicts:
        first = min(e.seq for e in conflicts)
        closed = first if closed is None else min(closed, first)
        conn.execute(t.anomalies.insert().values(
            at=now, node_id=node_id, kind="integrity",
            detail=f"epoch {epoch}: {len(conflicts)} records from seq {first} sent again with "
                   "other content (a database copied back or rolled back?); both kept, the "
                   f"epoch is closed from seq {closed} and the gate goes on in a new one",
        ))  # fmt: skip
        conn.execute(t.nodes.update().where(t.nodes.c.node_id == node_id)
                     .values(flagged_at=now))  # fmt: skip
        conn.execute(t.edge_cursors.update().where(
            t.edge_cursors.c.node_id == node_id, t.edge_cursors.c.epoch == epoch
        ).values(closed_from=closed))  # fmt: skip
    # at or below the high-water mark the office has had every seq (or was told it never
    # will, skip_to): one not found there is in a month let go (sync.partitions), not new
    new = [e for e in batch if e.seq not in stored and e.seq > cursor["contiguous_hwm"]
           and (closed is None or e.seq < closed)]  # fmt: skip
    inserted = _insert_events(conn, node_id, epoch, base, new, aside, now)
    for e in new:
        if e.seq in aside:
            kind, reason = aside[e.seq]
            conn.execute(t.set_aside.insert().values(
                received_at=now, node_id=node_id, epoch=epoch, seq=e.seq, kind=kind,
                reason=reason, raw=_raw(e),
            ))  # fmt: skip
            conn.execute(t.anomalies.insert().values(
                at=now, node_id=node_id, kind="set_aside",
                detail=f"epoch {epoch} seq {e.seq} ({kind}) set aside: {reason}"[:2000],
            ))  # fmt: skip
    # (a row PostgreSQL refused is in ``records`` too, checked by Python: not a fact)
    facts = [(k, p) for k, p in (records[e.seq] for e in new
                                 if e.seq in records and e.seq not in aside)
             if p is not None]  # fmt: skip
    facts = _in_scope(conn, node_id, facts, now)
    _slip_facts(conn, node_id, [p | {"_kind": k} for k, p in facts
                                if k in ("slip_released", "slip_rejected", "slip_cancelled")],
                now)  # fmt: skip
    _pass_facts(conn, node_id, [(k, p) for k, p in facts
                                if k in ("confiscation", "pass_revoked")], now)  # fmt: skip
    # only grants can conflict with the office's revocations (every grant was parsed)
    _check_facts(conn, node_id, [p for k, p in facts if k == "access_event"], now)
    hwm = cursor["contiguous_hwm"]
    if skip_to is not None and hwm < skip_to - 1:
        conn.execute(t.anomalies.insert().values(
            at=now, node_id=node_id, kind="gap",
            detail=f"epoch {epoch}: seq {hwm + 1}..{skip_to - 1} never arrived and the gate "
                   "no longer has them (restored from a backup older than they were?)",
        ))  # fmt: skip
        hwm = skip_to - 1
    for (seq,) in conn.execute(
        select(t.edge_events.c.seq).where(t.edge_events.c.node_id == node_id,
                                          t.edge_events.c.epoch == epoch,
                                          t.edge_events.c.seq > hwm)
        .order_by(t.edge_events.c.seq)
    ):  # fmt: skip
        if seq != hwm + 1:
            break
        hwm = seq
    max_seen = max([cursor["max_seen"], *(e.seq for e in batch)])
    conn.execute(
        t.edge_cursors.update()
        .where(t.edge_cursors.c.node_id == node_id, t.edge_cursors.c.epoch == epoch)
        .values(contiguous_hwm=hwm, max_seen=max_seen)
    )
    conn.execute(t.nodes.update().where(t.nodes.c.node_id == node_id).values(last_seen_at=now))
    answer = {"acked_through": hwm if closed is None else min(hwm, closed - 1),
              "max_seen": max_seen, "inserted": len(inserted), "set_aside": len(aside)}  # fmt: skip
    return answer | ({"closed_from": closed} if closed is not None else {})


def _epoch_cursor(conn: Connection, node_id: str, epoch: int, base: int) -> dict[str, Any]:
    """The (node, epoch) cursor, locked for this batch (made at its first)."""

    def locked() -> Any:
        return conn.execute(
            select(t.edge_cursors).where(t.edge_cursors.c.node_id == node_id,
                                         t.edge_cursors.c.epoch == epoch).with_for_update()
        ).mappings().first()  # fmt: skip

    cursor = locked()
    if cursor is None:
        conn.execute(insert(t.edge_cursors).values(
            node_id=node_id, epoch=epoch, base=base, contiguous_hwm=base - 1, max_seen=base - 1,
        ).on_conflict_do_nothing())  # fmt: skip
        cursor = locked()
    assert cursor is not None
    if cursor["base"] != base:
        # the gate keeps its epoch's base once made (sync.client._base): another one means
        # it counts differently from what the office holds; acknowledging would be a guess
        raise DomainError(
            f"base {base}: this epoch began at seq {cursor['base']} in earlier batches"
        )
    return dict(cursor)


def _insert_events(conn: Connection, node_id: str, epoch: int, base: int, rows: list[wire.Row],
                   aside: dict[int, tuple[str, str]], now: float) -> set[int]:  # fmt: skip
    """COPY the rows the office does not have yet straight into ``edge_events`` (the
    fastest way into PostgreSQL; the cursor's lock keeps out another batch of the epoch).
    The fields go to COPY as they came: wire.decode took only those COPY reads as it did.
    A row PostgreSQL refuses (jsonb cannot hold it) is set aside and the rest copied again."""
    if not rows:
        return set()
    raw = conn.connection.dbapi_connection
    assert raw is not None
    fixed = f"\t{wire.escape(node_id)}\t{epoch}\t{now}\n"
    columns = "(seq, kind, ref, payload, sha256, node_id, epoch, received_at)"
    with raw.cursor() as cur:
        while True:
            lines = [
                _set_aside_line(e, *aside[e.seq]) + fixed if e.seq in aside
                else f"{e.seq}\t{e.kind}\t{e.ref}\t{e.payload}\t{e.sha256}{fixed}"
                for e in rows
            ]  # fmt: skip
            cur.execute("SAVEPOINT push_copy")
            try:
                _copy(cur, f"COPY edge_events {columns} FROM STDIN", lines)
            except _Refused as refused:
                cur.execute("ROLLBACK TO SAVEPOINT push_copy")
                if refused.line is None or not 1 <= refused.line <= len(rows):
                    raise
                e = rows[refused.line - 1]
                if e.seq in aside:  # a stand-in refused: the office's own bug, said so
                    raise
                # PostgreSQL refused the payload (as jsonb): where Python's reading of it
                # says more, say that
                try:
                    checked_record(e, base, parse=True)
                    why = f"seq {e.seq}: the office's database refused it: {refused.said}"
                except DomainError as err:
                    why = str(err)
                aside[e.seq] = (wire.unescape(e.kind), why)
                continue
            cur.execute("RELEASE SAVEPOINT push_copy")
            return {e.seq for e in rows}


def _in_scope(conn: Connection, node_id: str, facts: list[tuple[str, dict[str, Any]]],
              now: float) -> list[tuple[str, dict[str, Any]]]:  # fmt: skip
    """The facts a node may state: about its own gates, and the office's passes and slips
    of its scope. Any other (a gate it invents, a slip of another estate) is kept in
    edge_events as sent but not acted on, and is an ``out_of_scope`` anomaly."""
    if not facts:
        return facts
    node = node_scope(conn, node_id)
    site_gates = conn.execute(
        select(t.sites.c.gates).where(t.sites.c.site_id == node.site)
    ).scalar_one_or_none()  # fmt: skip
    own = node.gates if node.gates is not None else site_gates
    numbers = [p["number"] for k, p in facts if k in _CLOSED]
    slip_site = dict(conn.execute(select(t.slips.c.number, t.slips.c.site)
                                  .where(t.slips.c.number.in_(numbers))).all())  # fmt: skip
    ids = [p["pass_id"] for k, p in facts if k in ("confiscation", "pass_revoked")]
    pass_scope = {i: (site, gate_list(gates)) for i, site, gates in conn.execute(
        select(t.passes.c.id, t.passes.c.site, t.passes.c.gates).where(t.passes.c.id.in_(ids))
    )}  # fmt: skip
    kept = []
    for kind, p in facts:
        gate, why = p.get("gate"), None
        if own is not None and gate is not None and gate not in own:
            why = f"gate {gate!r} is not one of its gates ({', '.join(own)})"
        elif kind in _CLOSED and slip_site.get(p["number"], node.site) != node.site:
            why = f"slip {p['number']} is of site {slip_site[p['number']]}"
        elif kind in ("confiscation", "pass_revoked") and p["pass_id"] in pass_scope:
            site, gates = pass_scope[p["pass_id"]]
            if site != node.site or (gates and node.gates and not set(gates) & set(node.gates)):
                why = f"pass {p['pass_id']} is not valid at its gates (site {site})"
        if why is None:
            kept.append((kind, p))
            continue
        conn.execute(t.anomalies.insert().values(
            at=now, node_id=node_id, kind="out_of_scope",
            detail=f"{kind} not taken as a fact: {why}"[:2000],
        ))  # fmt: skip
    return kept


def _check_facts(conn: Connection, node_id: str, events: list[dict[str, Any]], now: float) -> None:
    """What happened at the gate stays as it happened; what conflicts with the office's own
    records becomes an exception for a person. A grant is compared with the revocation on
    the gate's clock: the office's time of the revocation moved by the gate's offset from
    the office at its last push (each clock compared with itself, not with the other)."""
    grants = {e["pass_id"]: e for e in events if e.get("decision") == "grant" and e.get("pass_id")}
    if not grants:
        return
    offset = (
        conn.execute(
            select(t.nodes.c.clock_offset_s).where(t.nodes.c.node_id == node_id)
        ).scalar_one_or_none()
        or 0.0
    )
    revoked = conn.execute(
        select(t.passes.c.id, t.passes.c.updated_at).where(
            t.passes.c.id.in_(list(grants)), t.passes.c.status == "revoked"
        )
    ).all()
    for pass_id, revoked_at in revoked:
        e = grants[pass_id]
        if revoked_at + offset <= e["ts"]:
            conn.execute(t.anomalies.insert().values(
                at=now, node_id=node_id, kind="used_after_revocation",
                detail=f"pass {pass_id} granted at gate {e.get('gate')} after its revocation",
            ))  # fmt: skip


def _pass_facts(conn: Connection, node_id: str, facts: list[tuple[str, dict[str, Any]]],
                now: float) -> None:  # fmt: skip
    """A gate confiscated or revoked an office pass: the office's pass follows, with a
    change of its own version that every gate pulls (the gate never counts the office's
    versions itself)."""
    for kind, p in facts:
        pass_id = p.get("pass_id")
        current = conn.execute(
            select(t.passes).where(t.passes.c.id == pass_id).with_for_update()
        ).mappings().first()  # fmt: skip
        if current is None or current["status"] != "active":
            continue  # a gate's own pass, or the office has it closed already
        status = "confiscated" if kind == "confiscation" else "revoked"
        record = dict(current) | {
            "status": status, "status_reason": p.get("reason"),
            "updated_by": f"{node_id}:{p.get('by') or '-'}", "updated_at": now,
            "version": current["version"] + 1,
        }  # fmt: skip
        conn.execute(t.passes.update().where(t.passes.c.id == pass_id).values(**record))
        log_change(conn, "pass", pass_id, record["version"], "revoke", record, now)


# the times a gate reports that the office copies into a row of its own (a slip's
# closed_at) and shows on the desk: a clock gone wrong may say anything, but a year past
# 9999 cannot be shown at all. The fact keeps its time as sent, in edge_events.
_SHOWABLE = (datetime(1900, 1, 1, tzinfo=UTC).timestamp(),
             datetime(9000, 1, 1, tzinfo=UTC).timestamp())  # fmt: skip
_CLOSED = {"slip_released": "released", "slip_rejected": "rejected",
           "slip_cancelled": "cancelled"}  # fmt: skip


def _slip_facts(conn: Connection, node_id: str, closed: list[dict[str, Any]], now: float) -> None:
    """A gate released, rejected or cancelled an office slip: the office's slip follows the
    first such fact, as a change every gate pulls (so a second gate refuses it too). A
    second fact about a closed slip — released at two gates while both were offline, or
    after the office cancelled it — is an exception for a person; both facts are kept (the
    first in the slip, every one in edge_events)."""
    for s in closed:
        row = conn.execute(
            select(t.slips).where(t.slips.c.number == s["number"]).with_for_update()
        ).mappings().first()  # fmt: skip
        if row is None:
            continue  # a slip the gate issued itself
        status = _CLOSED[s["_kind"]]
        closed_at = s.get("closed_at")
        if closed_at is not None and not _SHOWABLE[0] <= closed_at < _SHOWABLE[1]:
            log.warning("slip %s: gate %s closed it at %r; kept without the time",
                        s["number"], node_id, closed_at)  # fmt: skip
            closed_at = None
        fact = (f"{status} at gate {s.get('gate')} ({node_id}) by {s.get('closed_by')} "
                f"at {_when(closed_at)}")  # fmt: skip
        if row["status"] != "issued":
            same = (row["status"], row["node_id"], row["gate"], row["closed_at"]) == (
                status,
                node_id,
                s.get("gate"),
                closed_at,
            )
            if same:
                continue  # the same fact again (a gate re-sending after a restore)
            kind = ("released_after_cancellation"
                    if row["status"] == "cancelled" and status == "released"
                    else f"slip_{status}_after_{row['status']}")  # fmt: skip
            earlier = (f"{row['status']} at gate {row['gate'] or '-'} "
                       f"({row['node_id'] or 'the office'}) by {row['closed_by']} "
                       f"at {_when(row['closed_at'])}")  # fmt: skip
            conn.execute(t.anomalies.insert().values(
                at=now, node_id=node_id, kind=kind,
                detail=f"slip {s['number']} {fact}, after it was {earlier}",
            ))  # fmt: skip
            continue
        record = dict(row) | {
            "status": status, "closed_at": closed_at, "closed_by": s.get("closed_by"),
            "gate": s.get("gate"), "node_id": node_id, "notes": s.get("notes"),
            "version": row["version"] + 1,
        }  # fmt: skip
        conn.execute(t.slips.update().where(t.slips.c.number == s["number"]).values(**record))
        log_change(conn, "slip", s["number"], record["version"], status, record, now)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# -- reading what the gates sent ---------------------------------------------------------
#
# Rows stored before the checks above (or by an office of another version) may hold
# anything jsonb takes: a string where a time should be, 1e400, an array. The office's
# reads must answer all the same, so they compare times in SQL only where they are numbers
# (as numeric: 1e400 does not fit a float8 cast) and parse stored payloads leniently.


def _lenient_number(token: str) -> Any:
    """A stored number as Python reads it, or its text when Python cannot carry it in an
    answer (1e400 is infinite; 5,000 digits pass int()'s limit)."""
    try:
        value = float(token) if any(c in token for c in ".eE") else int(token)
    except ValueError:
        return token
    return value if not isinstance(value, float) or math.isfinite(value) else token


def stored_payload(text_: str) -> Any:
    """A payload read back as text from edge_events, parsed so that any row answers (one
    nested deeper than Python parses stays the text it is)."""
    try:
        return json.loads(text_, parse_float=_lenient_number, parse_int=_lenient_number)
    except RecursionError:
        return text_


def monthly_report(conn: Connection, month: str, tz: Any, now: float | None = None) -> dict:
    """The month at every gate: slips by how they ended, confiscations, alarms by type and
    by shift, decisions, key loans — from the office's own slips and what the gates sent."""
    return reports.monthly_report(conn, month, tz, now)  # counted by PostgreSQL (docs/sync.md)
