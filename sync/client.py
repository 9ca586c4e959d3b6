"""The gate's side of sync: two workers, so a long backlog never delays a revocation.

* pull: long-polls the office's change log from the stored cursor and applies each page in
  one transaction with a version guard (a stale copy never undoes a revocation), moving
  the cursor in that same transaction;
* push: drains the outbox in batches, oldest epoch first, and marks what the office
  acknowledged. After any failure it waits for a successful pull first: revocations are
  pulled before a backlog is pushed.

Both back off with full jitter while the office is away (docs/sync.md).
"""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from edge import db
from edge.clock import Clock, SystemClock
from edge.config import SyncCfg
from edge.photos import PhotoStore
from edge.writer import Writer
from sync import schema, wire

log = logging.getLogger(__name__)
T = TypeVar("T")
LONG_POLL_S = 10.0
HELLO_EVERY_S = 10.0  # an empty push now and then: notices an office restored from backup

PASS_COLUMNS = tuple(c.name for c in schema.passes.columns)  # what the office sends
_UPSERT = (
    f"INSERT INTO passes ({', '.join(PASS_COLUMNS)}) VALUES ({', '.join('?' * len(PASS_COLUMNS))}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in PASS_COLUMNS if c != "id")
    + " WHERE excluded.version > passes.version"
)


SLIP_COLUMNS = (
    "number", "unit", "owner", "bearer", "authorisation", "authorisation_detail", "items",
    "hazard_allowed", "valid_from", "valid_until", "approver", "status", "issued_by",
    "issued_at", "version",
)  # fmt: skip
# The office owns a slip's contents and its cancellation; the gate owns its release or
# rejection, which an office change never undoes (the office learns of it by push).
_SLIP_UPSERT = (
    f"INSERT INTO goods_slips ({', '.join(SLIP_COLUMNS)}, origin) "
    f"VALUES ({', '.join('?' * len(SLIP_COLUMNS))}, 'office') "
    "ON CONFLICT(number) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in SLIP_COLUMNS if c not in ("number", "status"))
    + ", status = CASE WHEN goods_slips.status IN ('released', 'rejected') "
    "THEN goods_slips.status ELSE excluded.status END"
    " WHERE excluded.version > goods_slips.version"
)


def slip_row(s: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        json.dumps(s[c], ensure_ascii=False) if c in ("authorisation_detail", "items") else s.get(c)
        for c in SLIP_COLUMNS
    )


def apply_changes(conn: sqlite3.Connection, changes: list[dict[str, Any]], cursor: int) -> int:
    """One page of the office's change log, and the cursor after it, in one transaction."""
    applied = 0
    for ch in changes:
        p = ch["payload"]
        if ch["entity"] == "pass":
            applied += conn.execute(_UPSERT, tuple(p.get(c) for c in PASS_COLUMNS)).rowcount
        elif ch["entity"] == "slip":
            applied += conn.execute(_SLIP_UPSERT, slip_row(p)).rowcount
    db.set_meta(conn, "pull_cursor", str(cursor))
    return applied


class SyncClient:
    def __init__(self, cfg: SyncCfg, writer: Writer, read: Callable[[Callable[..., Any]], Any],
                 epoch: int, photos: PhotoStore, clock: Clock | None = None) -> None:  # fmt: skip
        self.clock = clock or SystemClock()
        self.photos = photos
        self.cfg = cfg
        self.writer = writer
        self.read = read
        self.epoch = epoch
        self.http = httpx.Client(
            base_url=cfg.office_url,
            headers={"Authorization": f"Bearer {cfg.token}"},
            timeout=httpx.Timeout(LONG_POLL_S + 20, connect=5),
            verify=cfg.ca_file or True,
        )
        self.fresh = threading.Event()  # a pull succeeded since the last failure
        self._last_hello = -HELLO_EVERY_S
        self.stop_event = threading.Event()
        self.status: dict[str, Any] = {
            "last_push_ok": None, "last_pull_ok": None, "last_error": None,
            "pushed": 0, "pulled": 0,
        }  # fmt: skip
        # two pushers: while the office applies one batch, the next is on its way
        self._claim_lock = threading.Lock()
        self._claimed: dict[int, int] = {}  # epoch → highest seq handed to a pusher
        self._inflight = 0
        self._hello_running = False
        workers = [(self._pull_once, "sync-pull"), (self._push_once, "sync-push-1"),
                   (self._push_once, "sync-push-2")]  # fmt: skip
        self._threads = [
            threading.Thread(target=self._loop, args=(once,), name=name, daemon=True)
            for once, name in workers
        ]

    def start(self) -> None:
        for th in self._threads:
            th.start()

    def stop(self) -> None:
        self.stop_event.set()
        for th in self._threads:
            th.join(timeout=5)
        self.http.close()

    def alive(self) -> bool:
        """Every sync worker is running (they catch their own errors; this is the check)."""
        return self.stop_event.is_set() or all(th.is_alive() for th in self._threads)

    def health(self) -> dict[str, Any]:
        backlog, oldest = self.read(
            lambda c: c.execute(
                "SELECT count(*), min(created_at) FROM outbox WHERE acked_at IS NULL"
            ).fetchone()
        )
        cursor = self.read(lambda c: db.get_meta(c, "pull_cursor"))
        lag = None if oldest is None else round(self.clock.now() - oldest, 1)
        return self.status | {
            "backlog": backlog,
            "push_lag_s": lag,
            "pull_cursor": int(cursor or 0),
            "connected": self.fresh.is_set(),
            "threads_alive": self.alive(),
        }

    def _loop(self, once: Callable[[], bool]) -> None:
        failures = 0
        while not self.stop_event.is_set():
            try:
                more = once()
                failures = 0
                if not more:
                    self.stop_event.wait(0.2)
            except Exception as e:  # the office away, or a bad answer: never a dead worker
                self.fresh.clear()
                with self._claim_lock:
                    self._claimed.clear()  # what was in flight is sent again
                failures += 1
                self.status["last_error"] = f"{type(e).__name__}: {e}"
                # full jitter: retries from many gates do not arrive together
                delay = random.uniform(0, min(self.cfg.retry_max_s, 0.5 * 2**failures))
                if failures == 1:
                    log.warning("sync: %s; retrying", self.status["last_error"],
                                exc_info=not isinstance(e, httpx.HTTPError))  # fmt: skip
                self.stop_event.wait(delay)

    def _pull_once(self) -> bool:
        cursor = int(self.read(lambda c: db.get_meta(c, "pull_cursor")) or 0)
        wait = 0 if not self.fresh.is_set() else LONG_POLL_S
        r = self.http.get("/sync/v1/pull", params={"since": cursor, "wait": wait})
        r.raise_for_status()
        body = r.json()
        # the photos a page's passes name, before the page: a pass does not arrive without
        # its photo (a fetch that fails fails the pull, which is tried again) unless the
        # office no longer has it (purged): the pass is not held back for a picture
        for sha in {ch["payload"].get("photo_sha256") for ch in body["changes"]} - {None}:
            if not self.photos.has(sha):
                got = self.http.get(f"/sync/v1/photos/{sha}")
                if got.status_code == 404:
                    log.warning("sync: the office has no photo %s any more", sha)
                    continue
                got.raise_for_status()
                self.photos.put_exact(sha, got.content)
        if body["changes"]:
            self.writer.call(lambda c: apply_changes(c, body["changes"], body["next"]))
            self.status["pulled"] += len(body["changes"])
        self.status["last_pull_ok"] = self.clock.now()
        self.fresh.set()
        return bool(body["has_more"])

    def _push_once(self) -> bool:
        if not self.fresh.wait(0.5):
            return False  # after a failure, a pull must come first
        if time.monotonic() - self._last_hello >= HELLO_EVERY_S and self._hello():
            return True
        found = self.read(
            lambda c: c.execute(
                "SELECT epoch FROM outbox WHERE acked_at IS NULL ORDER BY seq LIMIT 1"
            ).fetchone()
        )
        if found is None:
            return False
        epoch = found[0]
        base = self._base(epoch)
        with self._claim_lock:  # each pusher takes the next rows nobody has taken
            if self._hello_running:
                return False
            rows = self.read(
                lambda c: c.execute(
                    "SELECT seq, kind, ref, payload FROM outbox WHERE epoch = ? "
                    "AND acked_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                    (epoch, self._claimed.get(epoch, 0), self.cfg.push_batch),
                ).fetchall()
            )
            if not rows:
                return False  # the rest is in flight with the other pusher
            self._claimed[epoch] = rows[-1][0]
            self._inflight += 1
        try:
            acked = self._send(epoch, base, rows)
        finally:
            with self._claim_lock:
                self._inflight -= 1
        now = self.clock.now()
        self.writer.call(
            lambda c: c.execute(
                "UPDATE outbox SET acked_at = ? WHERE epoch = ? AND seq <= ? AND acked_at IS NULL",
                (now, epoch, acked),
            )
        )
        self.status["pushed"] += len(rows)
        self.status["last_push_ok"] = now
        return len(rows) == self.cfg.push_batch

    def _send(self, epoch: int, base: int, rows: list[tuple[int, str, str, str]]) -> int:
        r = self.http.post(
            "/sync/v1/push",
            params={"epoch": epoch, "base": base},
            content=wire.encode(rows).encode(),
            headers={"Content-Type": "text/tab-separated-values; charset=utf-8"},
        )
        r.raise_for_status()
        return int(r.json()["acked_through"])

    def _hello(self) -> bool:
        """An empty push with nothing else in flight: the office's answer is then exactly how
        far it has each epoch. Less than it once acknowledged means it was restored from a
        backup; the rows are still here, so they are sent again."""
        with self._claim_lock:
            if self._inflight or self._hello_running:
                return False
            self._hello_running = True
        try:
            epochs = self.read(lambda c: [r[0] for r in c.execute(
                "SELECT DISTINCT epoch FROM outbox WHERE acked_at IS NOT NULL")])  # fmt: skip
            for epoch in sorted(set(epochs) | {self.epoch}):
                acked = self._send(epoch, self._base(epoch), [])

                def reset(c: sqlite3.Connection, epoch: int = epoch, acked: int = acked) -> int:
                    return c.execute(
                        "UPDATE outbox SET acked_at = NULL WHERE epoch = ? AND seq > ? "
                        "AND acked_at IS NOT NULL",
                        (epoch, acked),
                    ).rowcount

                lost = self.writer.call(reset)
                if lost:
                    log.warning("sync: the office lost %d records of epoch %d; resending",
                                lost, epoch)  # fmt: skip
                    with self._claim_lock:
                        self._claimed.pop(epoch, None)
            self._last_hello = time.monotonic()
            return True
        finally:
            with self._claim_lock:
                self._hello_running = False

    def _base(self, epoch: int) -> int:
        """The epoch's first sequence number, as the office counts from it."""
        key = f"epoch_base:{epoch}"
        stored = self.read(lambda c: db.get_meta(c, key))
        if stored is not None:
            return int(stored)

        def first_seq(c: sqlite3.Connection) -> int:
            first = c.execute("SELECT min(seq) FROM outbox WHERE epoch = ?", (epoch,)).fetchone()
            if first[0] is not None:
                return int(first[0])
            # nothing recorded in this epoch yet: it starts after everything before it
            return int(c.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()[0]) + 1

        base = self.read(first_seq)
        self.writer.call(lambda c: db.set_meta(c, key, str(base)))
        return base
