"""Camera pictures at the office: sent by a site's gates when the site asks for them.

A gate's snapshot *record* (camera, time, SHA-256, the event it belongs to) always reaches
the office through the outbox. The picture itself stays at the gate unless its site's
``snapshots`` setting says otherwise: ``alarms`` (the pictures taken for alarms), or ``all``.
Each pull answer tells the gate the setting; the gate then sends the pictures it still
holds, once each, to ``PUT /sync/v1/snapshots/{sha256}`` (sync.snapshot_sender), none
larger than the office's ``snapshot_max_bytes`` (a larger one is reduced at the gate first,
and marked so). They are kept ``snapshot_days`` (30), then deleted (``purge``, hourly in
the office process).

Pushed, not fetched: the office cannot reach a gate behind the estate's router, and a clerk
looking at an alarm next month should not depend on the guard-room PC being up.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from typing import Any

from PIL import Image, UnidentifiedImageError
from sqlalchemy import Connection, delete, select, update
from sqlalchemy.dialects.postgresql import insert

from edge.errors import Conflict, DomainError, NotFound
from sync import schema as t

SEND = ("off", "alarms", "all")  # a site's ``snapshots``: which pictures its gates send
KINDS = {"alarms": ("alarm",), "all": ("event", "alarm", "slip", "request")}
KEEP_DAYS = 30
MAX_KEEP_DAYS = 3650


def set_site(conn: Connection, site_id: str, send: str | None, keep_days: int | None,
             by: str, now: float) -> dict[str, Any]:  # fmt: skip
    """Change which pictures ``site_id``'s gates send, and how long they are kept here."""
    from sync.office import audit, resolve_site

    site = resolve_site(conn, site_id)
    values: dict[str, Any] = {}
    if send is not None:
        if send not in SEND:
            raise DomainError(f"snapshots: {send!r} is not one of {', '.join(SEND)}")
        values["snapshots"] = send
    if keep_days is not None:
        if not 1 <= keep_days <= MAX_KEEP_DAYS:
            raise DomainError(f"snapshot_days: {keep_days} is not from 1 to {MAX_KEEP_DAYS}")
        values["snapshot_days"] = keep_days
    if not values:
        raise DomainError("site: say what to change (--snapshots, --snapshot-days)")
    conn.execute(update(t.sites).where(t.sites.c.site_id == site["site_id"]).values(**values))
    audit(conn, by, "site_set", site["site_id"], now, **values)
    return site | values


def policy(conn: Connection, site_id: str, max_bytes: int) -> dict[str, Any]:
    """What a gate of ``site_id`` sends: ``send`` (off, alarms, all) and ``max_bytes``."""
    send = conn.execute(
        select(t.sites.c.snapshots).where(t.sites.c.site_id == site_id)
    ).scalar_one_or_none()
    return {"send": send or "off", "max_bytes": max_bytes}


class Policies:
    """Each site's :func:`policy`, read at most every ``TTL_S``: it is told with every pull
    answer, and a pull must not cost a query more (a change reaches the gates within
    ``TTL_S`` and one long poll)."""

    TTL_S = 10.0

    def __init__(self, max_bytes: int, monotonic: Callable[[], float]) -> None:
        self.max_bytes, self.monotonic = max_bytes, monotonic
        self._known: dict[str, tuple[float, dict[str, Any]]] = {}

    def of(self, conn: Connection, site_id: str) -> dict[str, Any]:
        now = self.monotonic()
        known = self._known.get(site_id)
        if known is None or known[0] <= now:
            known = (now + self.TTL_S, policy(conn, site_id, self.max_bytes))
            self._known[site_id] = known
        return known[1]


def put(conn: Connection, site_id: str, node_id: str, sha: str, data: bytes, reduced: bool,
        snapshot_id: str, ref_kind: str, max_bytes: int, now: float) -> dict[str, Any]:  # fmt: skip
    """Keep a picture a gate sent; what was kept. Refused when the site does not ask for
    this kind of picture (the gate asks again what it sends), when it is over the bound,
    not a JPEG, or (not reduced) not the picture its record names."""
    send = policy(conn, site_id, max_bytes)["send"]
    if ref_kind not in KINDS.get(send, ()):
        raise Conflict(f"site {site_id} does not take pictures of kind {ref_kind} "
                       f"(its snapshots setting is {send})")  # fmt: skip
    if len(data) > max_bytes:  # the bound was lowered since the gate was told (409: it asks)
        raise Conflict(f"snapshot: {len(data)} bytes is more than the {max_bytes} allowed")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format != "JPEG":
            raise DomainError(f"snapshot: {image.format} is not a JPEG")
        image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise DomainError("snapshot: not a JPEG this office can read") from None
    stored = hashlib.sha256(data).hexdigest()
    if not reduced and stored != sha:
        raise DomainError(f"snapshot: the bytes received are not picture {sha}")
    row = {"sha256": sha, "jpeg": data, "stored_sha256": stored, "reduced": reduced,
           "site": site_id, "node_id": node_id, "snapshot_id": snapshot_id,
           "ref_kind": ref_kind, "received_at": now}  # fmt: skip
    conn.execute(insert(t.snapshots).values(**row).on_conflict_do_nothing())
    return {"sha256": sha, "bytes": len(data), "reduced": reduced}


def get(conn: Connection, sha: str) -> dict[str, Any]:
    c = t.snapshots.c
    found = conn.execute(select(c.jpeg, c.stored_sha256, c.reduced).where(c.sha256 == sha)).first()
    if found is None:
        raise NotFound(f"no picture {sha} at the office (its site does not send it, or it "
                       "was kept its days and deleted)")  # fmt: skip
    return {"jpeg": bytes(found.jpeg), "stored_sha256": found.stored_sha256,
            "reduced": found.reduced}  # fmt: skip


def held(conn: Connection, shas: set[str]) -> set[str]:
    """Which of these pictures the office has (for the records a page of events shows)."""
    if not shas:
        return set()
    c = t.snapshots.c
    return set(conn.execute(select(c.sha256).where(c.sha256.in_(sorted(shas)))).scalars())


def purge(conn: Connection, now: float) -> int:
    """Delete every site's pictures older than its ``snapshot_days``; how many. On the
    (site, received_at) index: the cost is the pictures deleted."""
    removed = 0
    for site_id, days in conn.execute(select(t.sites.c.site_id, t.sites.c.snapshot_days)):
        c = t.snapshots.c
        removed += conn.execute(
            delete(t.snapshots).where(c.site == site_id, c.received_at < now - days * 86400.0)
        ).rowcount
    return removed
