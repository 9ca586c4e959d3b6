"""After the office is restored (or re-created): the change log's identity, and what the
office re-learns from the gates.

A restored office's change log ends where its dump did, so the change ids after it are
handed out again, to other changes: a gate whose cursor had passed them would skip them —
revocations included. So the log has an identity (``office_meta.log_id``; ``gatehouse
restore`` makes a new one) and every change a random stamp; a gate quotes both with its
cursor, and when either does not match, the office answers ``reset`` and the gate pulls
from the start (after telling the office what it holds). The stamp catches a restore made
any other way (pg_restore by hand, point-in-time recovery): change ``since`` is not there,
or is another change.

What the gates hold of the office's passes and slips is the newest the office had before it
lost it: passes issued between the dump and the loss (which could no longer be revoked),
renewals and revocations. The office takes back what it lacks, and where a gate holds a
newer version it takes that, with a new version of its own every gate pulls; a revocation
or confiscation on either side is never undone.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from sync import office
from sync import schema as t

CLOSED_PASS = ("revoked", "confiscated")


def log_id(conn: Connection) -> str:
    found = conn.execute(
        select(t.office_meta.c.value).where(t.office_meta.c.key == "log_id")
    ).scalar_one_or_none()
    return found if found is not None else new_log_id(conn)


def new_log_id(conn: Connection) -> str:
    """A new identity for the change log: every gate pulls it from the start."""
    value = secrets.token_hex(8)
    conn.execute(
        insert(t.office_meta)
        .values(key="log_id", value=value)
        .on_conflict_do_update(index_elements=["key"], set_={"value": value})
    )
    return value


def must_reset(conn: Connection, current: str, since: int, log: str | None,
               stamp: str | None) -> bool:  # fmt: skip
    """Whether a gate's cursor belongs to another change log than this one (``current``)."""
    if log is not None and log != current:
        return True
    if since == 0:
        return False
    if stamp:
        found = conn.execute(
            select(t.change_log.c.stamp).where(t.change_log.c.change_id == since)
        ).first()
        return found is None or found[0] != stamp
    # a gate that never had a stamp (older than this office): only a cursor past the end
    # of the log can be seen to be wrong
    top = conn.execute(select(func.coalesce(func.max(t.change_log.c.change_id), 0)))
    return since > int(top.scalar_one())


class HeldPass(BaseModel):
    """An office pass as a gate holds it (the office's columns; the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")
    id: str
    kind: str
    card_key: int
    card_hex: str | None = None
    name: str
    unit: str | None = None
    id_hash: str | None = None
    id_last4: str | None = None
    valid_from: float
    valid_until: float | None = None
    status: str
    status_reason: str | None = None
    gates: str | None = None
    daily_window: str | None = None
    permit_no: str | None = None
    deposit_fen: int | None = None
    fee_fen: int | None = None
    version: int
    issued_by: str | None = None
    updated_by: str | None = None
    issued_at: float
    updated_at: float
    photo_sha256: str | None = None


class HeldSlip(BaseModel):
    model_config = ConfigDict(extra="ignore")
    number: str
    unit: str
    owner: str
    bearer: str
    authorisation: str
    authorisation_detail: dict[str, Any] | None = None
    items: list[dict[str, Any]]
    hazard_allowed: bool
    valid_from: float
    valid_until: float
    approver: str | None = None
    status: str
    version: int
    issued_by: str
    issued_at: float


class Holdings(BaseModel):
    """What a gate holds of the office's own records, sent when it finds the log reset."""

    model_config = ConfigDict(extra="forbid")
    passes: list[HeldPass] = []
    slips: list[HeldSlip] = []


def relearn(conn: Connection, node_id: str, held: Holdings, now: float) -> dict[str, int]:
    """Take back from a gate what the office lost; answers how many of each it took."""
    took = {"passes": 0, "slips": 0, "conflicts": 0, "refused": 0}
    # what it took back is of its own site: a gate cannot put a pass into another estate
    site = office.node_scope(conn, node_id).site
    storable: list[HeldPass | HeldSlip] = []
    for h in [*held.passes, *held.slips]:
        # what the office cannot store is said and passed over, never a refusal of the
        # whole: a refused holdings post would stop the gate's pull for good
        if (found := office.unstorable(h.model_dump())) is None:
            storable.append(h)
            continue
        took["refused"] += 1
        which = f"pass {h.id}" if isinstance(h, HeldPass) else f"slip {h.number}"
        _note(conn, node_id, now, f"{which} not taken back: it holds {found}")
    for h in (h for h in storable if isinstance(h, HeldPass)):
        if h.status not in ("active", *CLOSED_PASS):
            continue
        mine = conn.execute(
            select(t.passes).where(t.passes.c.id == h.id).with_for_update()
        ).mappings().first()  # fmt: skip
        if mine is not None and mine["site"] != site:
            continue  # a pass of another estate it should not hold: it is told to drop it
        theirs = h.model_dump() | {"site": site}
        if mine is None:
            conn.execute(t.passes.insert().values(**theirs))
            office.log_change(conn, "pass", h.id, h.version, _op(h.status), theirs, now)
            took["passes"] += 1
            _note(conn, node_id, now, f"pass {h.id} (v{h.version}, {h.status}) taken back from "
                  "the gate: issued after the backup the office was restored from")  # fmt: skip
            continue
        if h.version < mine["version"] or (
            h.version == mine["version"] and _same_pass(mine, theirs)
        ):
            continue  # the office has it, or newer: the gate pulls it
        # the gate holds a newer version, or another of the same number: the newest content,
        # closed if either side closed it, under a version above both
        newer = theirs if h.version > mine["version"] else dict(mine)
        status = next((s for s in (mine["status"], h.status) if s in CLOSED_PASS), "active")
        record = newer | {"status": status, "version": max(h.version, mine["version"]) + 1,
                          "updated_at": now}  # fmt: skip
        if status != newer["status"]:
            record["status_reason"] = mine["status_reason"] or h.status_reason
        conn.execute(t.passes.update().where(t.passes.c.id == h.id).values(**record))
        office.log_change(conn, "pass", h.id, record["version"], _op(status), record, now,
                          was=dict(mine))  # fmt: skip
        took["passes"] += 1
        _note(conn, node_id, now, f"pass {h.id}: the gate held v{h.version} ({h.status}) "
              f"beside the office's v{mine['version']} ({mine['status']}); now "
              f"v{record['version']} ({status})")  # fmt: skip
    for s in (h for h in storable if isinstance(h, HeldSlip)):
        mine = conn.execute(
            select(t.slips).where(t.slips.c.number == s.number).with_for_update()
        ).mappings().first()  # fmt: skip
        if mine is not None and mine["site"] != site:
            continue
        theirs = s.model_dump() | {"authorisation_detail": s.authorisation_detail or {},
                                   "hazard_allowed": int(s.hazard_allowed),
                                   "site": site}  # fmt: skip
        if mine is None:
            # its release or rejection, if any, arrives as the gate's fact (resent after
            # the restore) and closes it then; until then it is as the office issued it
            record = theirs | {"status": "cancelled" if s.status == "cancelled" else "issued"}
            conn.execute(t.slips.insert().values(**record))
            office.log_change(conn, "slip", s.number, s.version, "upsert", record, now)
            took["slips"] += 1
            _note(conn, node_id, now, f"slip {s.number} taken back from the gate: issued after "
                  "the backup the office was restored from")  # fmt: skip
        elif (mine["issued_at"], mine["unit"], mine["owner"]) != (s.issued_at, s.unit, s.owner):
            # the restored office gave the number again, to another slip: both are real
            took["conflicts"] += 1
            conn.execute(t.anomalies.insert().values(
                at=now, node_id=node_id, kind="slip_number_reused",
                detail=f"slip {s.number} was issued twice: the office's now is for "
                       f"{mine['unit']}; the gate holds the one for {s.unit}: "
                       + json.dumps(theirs, ensure_ascii=False)[:1500],
            ))  # fmt: skip
    return took


def _op(status: str) -> str:
    return "upsert" if status == "active" else "revoke"


def _same_pass(mine: Any, theirs: dict[str, Any]) -> bool:
    keys = ("status", "valid_from", "valid_until", "card_key", "name", "gates")
    return all(mine[k] == theirs[k] for k in keys)


def _note(conn: Connection, node_id: str, now: float, detail: str) -> None:
    conn.execute(t.anomalies.insert().values(at=now, node_id=node_id, kind="relearned",
                                             detail=detail))  # fmt: skip
