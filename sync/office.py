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
from typing import Any

import psycopg2
import psycopg2.errors
from sqlalchemy import Connection, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError

from edge import photos, users
from edge.cards import parse_card
from edge.errors import Conflict, DomainError, NotFound
from edge.pass_ops import PassRequest, build_row
from edge.passes import in_range, parse_time, resolve_validity
from edge.privacy import IdHasher
from edge.slips import SlipRequest
from edge.slips import validate as validate_slip
from edge.users import hash_token
from sync import reports, wire
from sync import schema as t

log = logging.getLogger(__name__)

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
               payload: dict[str, Any], now: float) -> int:  # fmt: skip
    """Append to the change log with an id allocated in commit order (see schema)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(7215)"))
    change_id = (
        int(conn.execute(select(func.coalesce(func.max(t.change_log.c.change_id), 0))).scalar_one())
        + 1
    )
    conn.execute(t.change_log.insert().values(
        change_id=change_id, entity=entity, entity_id=entity_id, version=version, op=op,
        payload=payload, committed_at=now, stamp=secrets.token_hex(8),
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


def issue_pass(
    conn: Connection, req: PassRequest, hasher: IdHasher, tz: Any, by: str, now: float
) -> dict:
    for field, value in (("valid_from", req.valid_from), ("valid_until", req.valid_until)):
        if value:  # before build_row, whose arithmetic on a year-1 time fails unnamed
            parse_field_time(field, value, tz)
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
    if valid_until is not None:
        check_time("valid_until", valid_until)
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
    "visitor_in", "visitor_out",
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
    new = [e for e in batch if e.seq not in stored and (closed is None or e.seq < closed)]
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


def monthly_report(conn: Connection, month: str, tz: Any) -> dict[str, Any]:
    """The month at every gate: slips by how they ended, confiscations, alarms by type and
    by shift, decisions — from the office's own slips and what the gates sent."""
    return reports.monthly_report(conn, month, tz)  # counted by PostgreSQL (docs/sync.md)
