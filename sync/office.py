"""The office side of sync: nodes, users, passes (with their change log), and the gates'
records applied exactly once. Every function takes a connection inside a transaction."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import secrets
from datetime import datetime
from typing import Any

import psycopg2.errors
from sqlalchemy import Connection, Float, func, select, text
from sqlalchemy.dialects.postgresql import insert

from edge import photos, users
from edge.cards import parse_card
from edge.errors import Conflict, DomainError, NotFound
from edge.pass_ops import PassRequest, build_row
from edge.passes import resolve_validity
from edge.privacy import IdHasher
from edge.slips import SlipRequest
from edge.slips import validate as validate_slip
from edge.users import hash_token
from sync import schema as t
from sync import wire

OFFICE_ROLES = ("clerk", "admin")
PASS_COLUMNS = (
    "id", "kind", "card_key", "card_hex", "name", "unit", "id_hash", "id_last4", "valid_from",
    "valid_until", "gates", "daily_window", "permit_no", "deposit_fen", "fee_fen",
    "photo_sha256", "issued_at", "updated_at", "issued_by",
)  # fmt: skip  # the order of edge.pass_ops.build_row


def add_node(conn: Connection, node_id: str, now: float) -> str:
    if conn.execute(select(t.nodes.c.node_id).where(t.nodes.c.node_id == node_id)).first():
        raise Conflict(f"node {node_id!r} is registered already")
    token = secrets.token_urlsafe(32)
    conn.execute(t.nodes.insert().values(node_id=node_id, token_hash=hash_token(token),
                                         created_at=now))  # fmt: skip
    return token


def node_of(conn: Connection, token: str) -> str | None:
    row = conn.execute(
        select(t.nodes.c.node_id).where(
            t.nodes.c.token_hash == hash_token(token), t.nodes.c.revoked_at.is_(None)
        )
    ).first()
    return row[0] if row else None


def add_user(conn: Connection, name: str, role: str, now: float) -> str:
    if role not in OFFICE_ROLES:
        raise DomainError(f"role: {role!r} is not one of {', '.join(OFFICE_ROLES)} (office)")
    if conn.execute(select(t.users.c.name).where(t.users.c.name == name)).first():
        raise Conflict(f"a user named {name!r} exists already")
    token = secrets.token_urlsafe(32)
    conn.execute(t.users.insert().values(name=name, role=role, token_hash=hash_token(token),
                                         created_at=now))  # fmt: skip
    return token


def user_of(conn: Connection, token: str) -> tuple[str, str] | None:
    row = conn.execute(
        select(t.users.c.name, t.users.c.role).where(
            t.users.c.token_hash == hash_token(token), t.users.c.revoked_at.is_(None)
        )
    ).first()
    return (row[0], row[1]) if row else None


def set_password(conn: Connection, name: str, password: str, now: float) -> None:
    done = conn.execute(
        t.users.update()
        .where(t.users.c.name == name, t.users.c.revoked_at.is_(None))
        .values(password_hash=users.hash_password(password), password_set_at=now)
    )
    if done.rowcount == 0:
        raise NotFound(f"no active user named {name!r}")


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


def recent_anomalies(conn: Connection, limit: int = 20) -> list[dict[str, Any]]:
    rows = conn.execute(select(t.anomalies).order_by(t.anomalies.c.id.desc()).limit(limit))
    return [dict(r) for r in rows.mappings()]


def get_pass(conn: Connection, pass_id: str) -> dict[str, Any]:
    row = conn.execute(select(t.passes).where(t.passes.c.id == pass_id)).mappings().first()
    if row is None:
        raise NotFound(f"no pass {pass_id!r}")
    return dict(row)


# -- what the office owns: passes, and the log the gates pull -----------------------------


def log_change(conn: Connection, entity: str, entity_id: str, version: int, op: str,
               payload: dict[str, Any], now: float) -> int:  # fmt: skip
    """Append to the change log with an id allocated in commit order (see schema)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(7215)"))
    change_id = (
        int(conn.execute(select(func.coalesce(func.max(t.change_log.c.change_id), 0))).scalar_one())
        + 1
    )
    conn.execute(t.change_log.insert().values(
        change_id=change_id, entity=entity, entity_id=entity_id, version=version, op=op,
        payload=payload, committed_at=now,
    ))  # fmt: skip
    return change_id


def pass_record(conn: Connection, pass_id: str) -> dict[str, Any]:
    row = conn.execute(select(t.passes).where(t.passes.c.id == pass_id)).mappings().first()
    if row is None:
        raise NotFound(f"no pass with id {pass_id!r}")
    return dict(row)


def issue_pass(
    conn: Connection, req: PassRequest, hasher: IdHasher, tz: Any, by: str, now: float
) -> dict:
    row = dict(zip(PASS_COLUMNS, build_row(req, hasher, tz, now, by), strict=True))
    if req.photo is not None and not has_photo(conn, req.photo):
        raise NotFound(f"photo {req.photo}: upload it first (POST /api/v1/photos)")
    record = row | {"status": "active", "version": 1, "updated_by": by}
    conn.execute(t.passes.insert().values(**record))
    log_change(conn, "pass", record["id"], 1, "upsert", record, now)
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
    log_change(conn, "pass", pass_id, record["version"], "revoke", record, now)
    return record


def renew_pass(conn: Connection, pass_id: str, valid_until: float | None, tz: Any, by: str,
               now: float) -> dict[str, Any]:  # fmt: skip
    """A new period for an active pass, from now to ``valid_until`` (default: as long as its
    kind allows): the same card, holder and photo; a temporary pass is printed again."""
    current = pass_record(conn, pass_id)
    if current["status"] != "active":
        raise Conflict(f"pass {pass_id} is {current['status']}; issue a new one instead")
    period = resolve_validity(current["kind"], now, tz, None, valid_until)
    record = current | {"valid_from": period.valid_from, "valid_until": period.valid_until,
                        "updated_by": by, "updated_at": now,
                        "version": current["version"] + 1}  # fmt: skip
    conn.execute(t.passes.update().where(t.passes.c.id == pass_id).values(**record))
    log_change(conn, "pass", pass_id, record["version"], "upsert", record, now)
    return record


# -- photos ---------------------------------------------------------------------------------


def put_photo(conn: Connection, data: bytes, by: str, now: float) -> str:
    """Keep an uploaded picture, normalised as every gate keeps it; its SHA-256."""
    jpeg = photos.normalise(data)
    sha = photos.digest(jpeg)
    conn.execute(insert(t.photos).values(sha256=sha, jpeg=jpeg, created_at=now, created_by=by)
                 .on_conflict_do_nothing())  # fmt: skip
    return sha


def has_photo(conn: Connection, sha: str) -> bool:
    found = conn.execute(select(t.photos.c.sha256).where(t.photos.c.sha256 == sha)).first()
    return found is not None


def get_photo(conn: Connection, sha: str) -> bytes:
    found = conn.execute(select(t.photos.c.jpeg).where(t.photos.c.sha256 == sha)).first()
    if found is None:
        raise NotFound(f"no photo {sha}")
    return bytes(found[0])


def issue_slip(conn: Connection, req: SlipRequest, by: str, now: float, tz: Any) -> dict:
    """A slip issued by the service centre (numbered FO-<year>-<n>, apart from the gates')."""
    start, end = validate_slip(req, now)
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
        "issued_at": now,
    }  # fmt: skip
    conn.execute(t.slips.insert().values(**record))
    log_change(conn, "slip", number, 1, "upsert", record, now)
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
    return record


def changes_after(conn: Connection, since: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(t.change_log).where(t.change_log.c.change_id > since)
        .order_by(t.change_log.c.change_id).limit(limit)
    ).mappings()  # fmt: skip
    return [dict(r) for r in rows]


# -- what the gates own: applied once, in order, checked ---------------------------------


def apply_push(conn: Connection, node_id: str, epoch: int, base: int,
               batch: list[wire.Row], now: float) -> dict[str, Any]:  # fmt: skip
    """Apply one batch from a gate in one transaction, received at ``now``; answers the
    contiguous high-water mark. A sequence number seen before with other content is an
    integrity anomaly."""
    cursor = conn.execute(
        select(t.edge_cursors).where(t.edge_cursors.c.node_id == node_id,
                                     t.edge_cursors.c.epoch == epoch).with_for_update()
    ).mappings().first()  # fmt: skip
    if cursor is None:
        conn.execute(insert(t.edge_cursors).values(
            node_id=node_id, epoch=epoch, base=base, contiguous_hwm=base - 1, max_seen=base - 1,
        ).on_conflict_do_nothing())  # fmt: skip
        cursor = conn.execute(
            select(t.edge_cursors).where(t.edge_cursors.c.node_id == node_id,
                                         t.edge_cursors.c.epoch == epoch).with_for_update()
        ).mappings().first()  # fmt: skip
    assert cursor is not None
    # COPY straight in (the fastest way into PostgreSQL); if any row is there already (a
    # batch sent again), fall back to staging it and moving across only the new rows.
    lines = []
    sent: dict[int, str] = {}
    kinds: dict[int, str] = {}
    for e in batch:
        if hashlib.sha256(wire.unescape(e.payload).encode()).hexdigest() != e.sha256:
            raise DomainError(f"seq {e.seq}: payload does not match its sha256")
        sent[e.seq], kinds[e.seq] = e.sha256, wire.unescape(e.kind)
        lines.append(f"{e.seq}\t{e.kind}\t{e.ref}\t{e.payload}\t{e.sha256}\n")
    inserted: set[int] = set()
    if sent:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        fixed = f"\t{wire.escape(node_id)}\t{epoch}\t{now}"
        columns = "(seq, kind, ref, payload, sha256, node_id, epoch, received_at)"
        with raw.cursor() as cur:
            cur.execute("SAVEPOINT push_copy")
            try:
                direct = io.StringIO("".join(line[:-1] + fixed + "\n" for line in lines))
                cur.copy_expert(f"COPY edge_events {columns} FROM STDIN", direct)
                cur.execute("RELEASE SAVEPOINT push_copy")
                inserted = set(sent)
            except psycopg2.errors.UniqueViolation:
                cur.execute("ROLLBACK TO SAVEPOINT push_copy")
                cur.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS push_stage (seq bigint, kind text, "
                    "ref text, payload jsonb, sha256 text) ON COMMIT DELETE ROWS"
                )
                cur.copy_expert("COPY push_stage FROM STDIN", io.StringIO("".join(lines)))
                cur.execute(
                    "INSERT INTO edge_events (node_id, epoch, seq, kind, ref, payload, sha256, "
                    "received_at) SELECT %s, %s, seq, kind, ref, payload, sha256, %s "
                    "FROM push_stage ON CONFLICT (node_id, epoch, seq) DO NOTHING RETURNING seq",
                    (node_id, epoch, now),
                )
                inserted = {r[0] for r in cur.fetchall()}
    duplicates = {seq: sha for seq, sha in sent.items() if seq not in inserted}
    if duplicates:
        stored = conn.execute(
            select(t.edge_events.c.seq, t.edge_events.c.sha256).where(
                t.edge_events.c.node_id == node_id, t.edge_events.c.epoch == epoch,
                t.edge_events.c.seq.in_(list(duplicates)),
            )
        ).all()  # fmt: skip
        for seq, sha in stored:
            if sha != duplicates[seq]:
                conn.execute(t.anomalies.insert().values(
                    at=now, node_id=node_id, kind="integrity",
                    detail=f"epoch {epoch} seq {seq} sent again with other content",
                ))  # fmt: skip
    # only grants can conflict with the office's revocations: parse just those
    _slip_facts(conn, node_id, [
        json.loads(wire.unescape(e.payload)) | {"_kind": kinds[e.seq]} for e in batch
        if e.seq in inserted and kinds[e.seq] in ("slip_released", "slip_rejected")
    ], now)  # fmt: skip
    new_events = [
        json.loads(wire.unescape(e.payload)) for e in batch
        if e.seq in inserted and kinds[e.seq] == "access_event" and '"grant"' in e.payload
    ]  # fmt: skip
    _check_facts(conn, node_id, new_events, now)
    hwm = cursor["contiguous_hwm"]
    for (seq,) in conn.execute(
        select(t.edge_events.c.seq).where(t.edge_events.c.node_id == node_id,
                                          t.edge_events.c.epoch == epoch,
                                          t.edge_events.c.seq > hwm)
        .order_by(t.edge_events.c.seq)
    ):  # fmt: skip
        if seq != hwm + 1:
            break
        hwm = seq
    max_seen = max([cursor["max_seen"], *sent])
    conn.execute(
        t.edge_cursors.update()
        .where(t.edge_cursors.c.node_id == node_id, t.edge_cursors.c.epoch == epoch)
        .values(contiguous_hwm=hwm, max_seen=max_seen)
    )
    conn.execute(t.nodes.update().where(t.nodes.c.node_id == node_id).values(last_seen_at=now))
    return {"acked_through": hwm, "max_seen": max_seen, "inserted": len(inserted)}


def _check_facts(conn: Connection, node_id: str, events: list[dict[str, Any]], now: float) -> None:
    """What happened at the gate stays as it happened; what conflicts with the office's own
    records becomes an exception for a person (ownership, not clocks, settles it)."""
    grants = {e["pass_id"]: e for e in events if e.get("decision") == "grant" and e.get("pass_id")}
    if not grants:
        return
    revoked = conn.execute(
        select(t.passes.c.id, t.passes.c.updated_at).where(
            t.passes.c.id.in_(list(grants)), t.passes.c.status == "revoked"
        )
    ).all()
    for pass_id, revoked_at in revoked:
        e = grants[pass_id]
        if revoked_at <= e["ts"]:
            conn.execute(t.anomalies.insert().values(
                at=now, node_id=node_id, kind="used_after_revocation",
                detail=f"pass {pass_id} granted at gate {e.get('gate')} after its revocation",
            ))  # fmt: skip


def _slip_facts(conn: Connection, node_id: str, closed: list[dict[str, Any]], now: float) -> None:
    """A gate released or rejected an office slip: the office's slip follows the fact, and a
    release of a slip the office had cancelled is an exception for a person."""
    for s in closed:
        row = (
            conn.execute(select(t.slips).where(t.slips.c.number == s["number"])).mappings().first()
        )
        if row is None:
            continue  # a slip the gate issued itself
        status = "released" if s["_kind"] == "slip_released" else "rejected"
        if row["status"] == "cancelled" and status == "released":
            conn.execute(t.anomalies.insert().values(
                at=now, node_id=node_id, kind="released_after_cancellation",
                detail=f"slip {s['number']} released at gate {s.get('gate')} by "
                       f"{s.get('closed_by')} after the office cancelled it",
            ))  # fmt: skip
            continue
        if row["status"] == "issued":
            conn.execute(t.slips.update().where(t.slips.c.number == s["number"]).values(
                status=status, closed_at=s.get("closed_at"), closed_by=s.get("closed_by"),
                gate=s.get("gate"), node_id=node_id, notes=s.get("notes"),
            ))  # fmt: skip


def monthly_report(conn: Connection, month: str, tz: Any) -> dict[str, Any]:
    """The month at every gate: slips by how they ended, confiscations, alarms by type and
    by shift, decisions — from the office's own slips and what the gates sent."""
    from collections import Counter

    from edge.config import DEFAULT_SHIFTS
    from edge.shifts import outgoing
    from edge.slips import month_bounds

    start, end = month_bounds(month, tz)
    slips_by = Counter(
        r[0] for r in conn.execute(
            select(t.slips.c.status).where(t.slips.c.issued_at >= start, t.slips.c.issued_at < end)
        )
    )  # fmt: skip

    def events(kind: str) -> list[tuple[str, dict[str, Any]]]:
        ts = t.edge_events.c.payload["at" if kind in ("alarm", "confiscation") else "ts"]
        rows = conn.execute(
            select(t.edge_events.c.node_id, t.edge_events.c.payload).where(
                t.edge_events.c.kind == kind,
                ts.astext.cast(Float) >= start, ts.astext.cast(Float) < end,
            )
        )  # fmt: skip
        return [(n, p) for n, p in rows]

    raised = [(n, p) for n, p in events("alarm") if p.get("action") == "raised"]
    return {
        "month": month,
        "office_slips": {
            s: slips_by.get(s, 0) for s in ("issued", "released", "rejected", "cancelled")
        },
        "gate_slips": dict(
            Counter(f"{n}:{k}" for k in ("slip_released", "slip_rejected") for n, _ in events(k))
        ),
        "confiscations": dict(Counter(f"{n}:{p.get('gate')}" for n, p in events("confiscation"))),
        "alarms_by_type": dict(Counter(p["type"] for _, p in raised)),
        "alarms_by_shift": dict(
            Counter(outgoing(DEFAULT_SHIFTS, p["at"], tz).name for _, p in raised)
        ),
        "decisions": dict(Counter(f"{n}:{p.get('decision')}" for n, p in events("access_event"))),
    }
