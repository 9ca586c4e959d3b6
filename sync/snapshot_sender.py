"""The gate's side of camera pictures at the office (sync.snapshots is the office's).

Each answer to the gate's pull says which pictures its site wants (``snapshots``: off,
alarms or all, and ``max_bytes``, the largest it takes); an office of an older version says
nothing, which is off. The gate then sends the pictures it still holds and has not sent,
oldest first, each once: a picture is marked ``office_at`` when the office has it, or has
refused it for good (not a JPEG it can read: sending it again would not change that). One
that is too large is made smaller here first. A picture retention has deleted meanwhile is
marked and skipped.

Runs as one of the sync client's workers: an error (the office away) is the client's to
log and back off from, and the picture is sent at the next turn.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from edge import photos
from edge.writer import Writer
from sync.snapshots import KINDS

log = logging.getLogger(__name__)

IDLE_S = 2.0  # nothing to send: look again after this (a picture is sent within it)
BATCH = 20
OFF = {"send": "off", "max_bytes": 0}
_PENDING = "office_at IS NULL AND deleted_at IS NULL AND path IS NOT NULL"


class SnapshotSender:
    def __init__(self, http: httpx.Client, writer: Writer,
                 read: Callable[[Callable[[sqlite3.Connection], Any]], Any],
                 clock: Callable[[], float], stop: threading.Event) -> None:  # fmt: skip
        self.http, self.writer, self.read, self.clock, self.stop = http, writer, read, clock, stop
        self.policy: dict[str, Any] = OFF  # until a pull says otherwise
        self.sent = 0
        self.refused = 0  # refused for good by the office (logged each)

    def learn(self, policy: Any) -> None:
        """What a pull's answer said (None: an office that takes no pictures)."""
        if not (isinstance(policy, dict) and policy.get("send") in KINDS):
            policy = OFF
        policy = {"send": str(policy["send"]), "max_bytes": int(policy["max_bytes"])}
        if policy != self.policy:
            log.info("sync: the office asks for camera pictures: %s (at most %d bytes each)",
                     policy["send"], policy["max_bytes"])  # fmt: skip
        self.policy = policy

    def once(self) -> bool:
        """Send a batch; whether more may be waiting. Waits ``IDLE_S`` when nothing is."""
        kinds = KINDS.get(self.policy["send"], ())
        rows = self.read(lambda c: _pending(c, kinds, BATCH)) if kinds else []
        for row in rows:
            if not self._send(row):
                return False  # the office's setting changed: the next pull says how
        if len(rows) < BATCH:
            self.stop.wait(IDLE_S)
        return len(rows) == BATCH

    def waiting(self, conn: sqlite3.Connection) -> int:
        """Pictures the site wants that are not sent yet (readiness shows it)."""
        kinds = KINDS.get(self.policy["send"], ())
        if not kinds:
            return 0
        marks = ",".join("?" * len(kinds))
        found = conn.execute(
            f"SELECT count(*) FROM snapshots WHERE {_PENDING} AND ref_kind IN ({marks})", kinds
        ).fetchone()
        return int(found[0])

    def health(self) -> dict[str, Any]:
        return {"send": self.policy["send"], "sent": self.sent, "refused": self.refused,
                "waiting": self.read(self.waiting)}  # fmt: skip

    def _send(self, row: tuple[int, str, str, str]) -> bool:
        """Send one picture; False when the office no longer takes it (its site's setting
        changed): none is sent until a pull says what it takes now."""
        snapshot_id, path, sha, ref_kind = row
        try:
            data = Path(path).read_bytes()
        except FileNotFoundError:  # retention deleted it after the row was read
            self._mark(snapshot_id)
            return True
        reduced = len(data) > self.policy["max_bytes"]
        try:
            if reduced:
                data = photos.shrink(data, self.policy["max_bytes"])
        except photos.PhotoError as e:
            return self._refused(snapshot_id, sha, str(e))
        params = {"snapshot_id": str(snapshot_id), "ref_kind": ref_kind,
                  "reduced": "true" if reduced else "false"}  # fmt: skip
        r = self.http.put(f"/sync/v1/snapshots/{sha}", params=params, content=data,
                          headers={"Content-Type": "image/jpeg"})  # fmt: skip
        if r.status_code in (409, 413):  # the site takes no such picture now, or its bound
            self.policy = OFF  # changed: the next pull says what it takes
            return False
        if r.status_code == 422:  # sending it again would be refused again
            return self._refused(snapshot_id, sha, r.text)
        r.raise_for_status()
        self._mark(snapshot_id)
        self.sent += 1
        return True

    def _refused(self, snapshot_id: int, sha: str, why: str) -> bool:
        log.warning("sync: the office refused picture %s (snapshot %d): %s; it stays at this "
                    "gate only", sha, snapshot_id, why[:300])  # fmt: skip
        self.refused += 1
        self._mark(snapshot_id)
        return True

    def _mark(self, snapshot_id: int) -> None:
        now = self.clock()
        self.writer.call(lambda c: c.execute(
            "UPDATE snapshots SET office_at = ? WHERE id = ?", (now, snapshot_id)
        ))  # fmt: skip


def _pending(conn: sqlite3.Connection, kinds: tuple[str, ...], limit: int) -> list[Any]:
    """The oldest pictures not yet sent, of the kinds the site wants (ix_snapshots_for_office)."""
    marks = ",".join("?" * len(kinds))
    return conn.execute(
        f"SELECT id, path, sha256, ref_kind FROM snapshots WHERE {_PENDING} "
        f"AND ref_kind IN ({marks}) ORDER BY id LIMIT ?",
        (*kinds, limit),
    ).fetchall()
