"""The gate's side of sync: two workers, so a long backlog never delays a revocation.

* pull: long-polls the office's change log from the stored cursor and applies each page in
  one transaction with a version guard (a stale copy never undoes a revocation), moving
  the cursor in that same transaction;
* push: drains the outbox in batches, oldest epoch first, and marks what the office
  acknowledged. After the pull fails (the office unreachable) it waits for a successful
  pull first: revocations are pulled before a backlog is pushed.

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
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from edge import alarms, db, outbox
from edge.clock import Clock, SystemClock
from edge.config import AlarmsCfg, SyncCfg
from edge.photos import PhotoStore
from edge.privacy import IdHasher
from edge.writer import Writer
from sync import schema, wire
from sync.snapshot_sender import SnapshotSender

log = logging.getLogger(__name__)
T = TypeVar("T")
LONG_POLL_S = 10.0
HELLO_EVERY_S = 10.0  # an empty push now and then: notices an office restored from backup

# what the office sends of a pass, but its site: a gate holds only its own site's passes
PASS_COLUMNS = tuple(c.name for c in schema.passes.columns if c.name != "site")
_CLOSED = "passes.status IN ('revoked', 'confiscated')"
# A pass the gate confiscated or revoked stays so whatever the office sends (the office
# hears of it by push, and follows with a version of its own); otherwise the office's
# newer version wins. The version is the office's alone: the gate never bumps it.
_UPSERT = (
    f"INSERT INTO passes ({', '.join(PASS_COLUMNS)}, origin) "
    f"VALUES ({', '.join('?' * len(PASS_COLUMNS))}, 'office') "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}" for c in PASS_COLUMNS if c not in ("id", "status", "status_reason")
    )
    + f", status = CASE WHEN {_CLOSED} THEN passes.status ELSE excluded.status END"
    + f", status_reason = CASE WHEN {_CLOSED} THEN passes.status_reason "
    "ELSE excluded.status_reason END, origin = 'office'"
    " WHERE excluded.version > passes.version"
)


PERMIT_COLUMNS = ("permit_no", "unit", "company", "scope", "valid_from", "valid_until",
                  "status", "status_reason", "version", "updated_at")  # fmt: skip
# the office's permit, newer versions only (the gate never changes a permit)
_PERMIT_UPSERT = (
    f"INSERT INTO permits ({', '.join(PERMIT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(PERMIT_COLUMNS))}) ON CONFLICT(permit_no) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in PERMIT_COLUMNS if c != "permit_no")
    + " WHERE excluded.version > permits.version"
)

EXPECTED_COLUMNS = ("id", "code", "host_unit", "name", "category", "valid_from",
                    "valid_until", "entries", "status", "version")  # fmt: skip
# an announced visitor: the office's newer version, with the entries made here kept
_EXPECTED_UPSERT = (
    f"INSERT INTO expected_visitors ({', '.join(EXPECTED_COLUMNS)}, used) "
    f"VALUES ({', '.join('?' * len(EXPECTED_COLUMNS))}, 0) ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in EXPECTED_COLUMNS if c != "id")
    + " WHERE excluded.version > expected_visitors.version"
)

SLIP_COLUMNS = (
    "number", "unit", "owner", "bearer", "authorisation", "authorisation_detail", "items",
    "hazard_allowed", "valid_from", "valid_until", "approver", "status", "issued_by",
    "issued_at", "version", "closed_by", "closed_at", "gate", "notes",
)  # fmt: skip
_GATE_OWNS = ("status", "closed_by", "closed_at", "gate", "notes")
# The office owns a slip's contents and its cancellation; the gate owns its release or
# rejection, which an office change never undoes (the office learns of it by push). A
# release at another gate arrives as the office's change, with who released it and where.
_SLIP_UPSERT = (
    f"INSERT INTO goods_slips ({', '.join(SLIP_COLUMNS)}, origin) "
    f"VALUES ({', '.join('?' * len(SLIP_COLUMNS))}, 'office') "
    "ON CONFLICT(number) DO UPDATE SET "
    + ", ".join(
        f"{c} = excluded.{c}" for c in SLIP_COLUMNS if c != "number" and c not in _GATE_OWNS
    )
    + "".join(
        f", {c} = CASE WHEN goods_slips.status IN ('released', 'rejected') "
        f"THEN goods_slips.{c} ELSE excluded.{c} END"
        for c in _GATE_OWNS
    )
    + " WHERE excluded.version > goods_slips.version"
)
HOLDINGS_BATCH = 1000  # records per POST /sync/v1/holdings


def slip_row(s: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        json.dumps(s[c], ensure_ascii=False) if c in ("authorisation_detail", "items") else s.get(c)
        for c in SLIP_COLUMNS
    )


def _unit(conn: sqlite3.Connection, p: dict[str, Any]) -> int:
    sql = ("DELETE FROM units WHERE unit = ?" if p.get("removed")
           else "INSERT OR IGNORE INTO units (unit) VALUES (?)")  # fmt: skip
    return conn.execute(sql, (p["unit"],)).rowcount


def _upsert(sql: str, columns: tuple[str, ...]) -> Callable[[sqlite3.Connection, dict], int]:
    return lambda conn, p: conn.execute(sql, tuple(p.get(c) for c in columns)).rowcount


@dataclass(frozen=True)
class Entity:
    """A kind of office record a gate pulls (the change log's ``entity``): the table it is
    kept in, by which key; how a change to it is applied; and which of its rows are the
    office's (a pass or slip made at this gate stays when the office's leave)."""

    table: str
    key: str
    scope: str  # its ids in the office's answer to /sync/v1/scope
    apply: Callable[[sqlite3.Connection, dict[str, Any]], int]
    office_rows: str = ""  # SQL narrowing a drop to the office's rows


_OFFICE = " AND origin = 'office'"
ENTITIES: dict[str, Entity] = {
    "pass": Entity("passes", "id", "passes", _upsert(_UPSERT, PASS_COLUMNS), _OFFICE),
    "slip": Entity("goods_slips", "number", "slips",
                   lambda conn, p: conn.execute(_SLIP_UPSERT, slip_row(p)).rowcount, _OFFICE),
    "permit": Entity("permits", "permit_no", "permits", _upsert(_PERMIT_UPSERT, PERMIT_COLUMNS)),
    "unit": Entity("units", "unit", "units", _unit),
    "expected_visitor": Entity("expected_visitors", "id", "expected_visitors",
                               _upsert(_EXPECTED_UPSERT, EXPECTED_COLUMNS)),
}  # fmt: skip


def apply_changes(conn: sqlite3.Connection, changes: list[dict[str, Any]], cursor: int,
                  log_id: str | None = None, stamp: str | None = None) -> int:  # fmt: skip
    """One page of the office's change log, and the cursor after it (with the log it is in
    and the stamp of the cursor's change, which the next pull quotes), in one transaction.
    A ``drop`` is a record that left this gate's scope: it is no longer kept here. An
    entity this gate does not know (a newer office's) is passed over."""
    applied = 0
    for ch in changes:
        entity = ENTITIES.get(ch["entity"])
        if entity is None:
            continue
        if ch["op"] == "drop":
            applied += conn.execute(
                f"DELETE FROM {entity.table} WHERE {entity.key} = ?{entity.office_rows}",
                (ch["entity_id"],),
            ).rowcount
        else:
            applied += entity.apply(conn, ch["payload"])
    db.set_meta(conn, "pull_cursor", str(cursor))
    if stamp is not None or changes:
        db.set_meta(conn, "pull_stamp", stamp or changes[-1].get("stamp") or "")
        # the office's clock at its newest change: a gate clock behind it is wrong (sync.qr)
        newest = max((float(ch.get("committed_at") or 0) for ch in changes), default=0.0)
        if newest > float(db.get_meta(conn, "pull_newest_at") or 0):
            db.set_meta(conn, "pull_newest_at", repr(newest))
    if log_id:
        db.set_meta(conn, "pull_log", log_id)
    return applied


def rescope(conn: sqlite3.Connection, keep: dict[str, Any], scope: str) -> int:
    """Keep only the office's records of this gate's scope (``keep``: their ids, by kind),
    and pull from the start so what the scope newly holds arrives: the version guard keeps
    what is here already. Answers how many records it dropped. A kind the answer does not
    list (an office of an older version has no permits) is left as it is."""
    dropped = 0
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS scope_keep (id TEXT PRIMARY KEY)")
    for e in ENTITIES.values():
        if e.scope not in keep:
            continue
        conn.execute("DELETE FROM scope_keep")
        conn.executemany("INSERT OR IGNORE INTO scope_keep VALUES (?)",
                         ((i,) for i in keep[e.scope]))  # fmt: skip
        kept = f"{e.key} IN (SELECT id FROM scope_keep)"
        dropped += conn.execute(f"DELETE FROM {e.table} WHERE NOT {kept}{e.office_rows}").rowcount
    conn.execute("DROP TABLE scope_keep")
    db.set_meta(conn, "pull_cursor", "0")
    db.set_meta(conn, "pull_stamp", "")
    db.set_meta(conn, "pull_scope", scope)
    if keep.get("site"):  # the estate this gate is at: a QR code of another is refused
        db.set_meta(conn, "site", str(keep["site"]))
    return dropped


def holdings(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The office's passes and slips as this gate holds them (sync.recovery)."""
    before, conn.row_factory = conn.row_factory, sqlite3.Row
    try:
        passes = [dict(r) for r in conn.execute("SELECT * FROM passes WHERE origin = 'office'")]
        slips = [dict(r) for r in conn.execute("SELECT * FROM goods_slips WHERE origin = 'office'")]
    finally:
        conn.row_factory = before  # the reader's connection is shared
    for s in slips:
        s["items"] = json.loads(s["items"])
        s["authorisation_detail"] = json.loads(s["authorisation_detail"] or "{}")
        s["hazard_allowed"] = bool(s["hazard_allowed"])
    return passes, slips


class SyncClient:
    def __init__(self, cfg: SyncCfg, writer: Writer, read: Callable[[Callable[..., Any]], Any],
                 epoch: int, photos: PhotoStore, clock: Clock | None = None,
                 alarms_cfg: AlarmsCfg | None = None,
                 hasher: IdHasher | None = None) -> None:  # fmt: skip
        self.clock = clock or SystemClock()
        self.hasher = hasher  # takes the estate's ID-number key from the office
        self._id_key_taken = hasher is None  # (asked once a run, and after a new scope)
        self.alarms_cfg = alarms_cfg or AlarmsCfg()  # for sync_gap and sync_conflict
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
        self._errors: dict[str, str | None] = {"pull": None, "push": None, "snapshots": None}
        self._closed: dict[int, tuple[int, int]] | None = None  # epoch → (first seq, new epoch)
        # two pushers: while the office applies one batch, the next is on its way
        self._claim_lock = threading.Lock()
        self._claimed: dict[int, int] = {}  # epoch → highest seq handed to a pusher
        self._inflight = 0
        self._hello_running = False
        # camera pictures, when the gate's site asks for them (sync.snapshot_sender)
        self.pictures = SnapshotSender(self.http, writer, read, self.clock.now, self.stop_event)
        workers = [(self._pull_once, "sync-pull", "pull"), (self._push_once, "sync-push-1", "push"),
                   (self._push_once, "sync-push-2", "push"),
                   (self.pictures.once, "sync-snapshots", "snapshots")]  # fmt: skip
        self._threads = [
            threading.Thread(target=self._loop, args=(once, worker), name=name, daemon=True)
            for once, name, worker in workers
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
        cursor, site = self.read(lambda c: [db.get_meta(c, k) for k in ("pull_cursor", "site")])
        lag = None if oldest is None else round(self.clock.now() - oldest, 1)
        return self.status | {
            "backlog": backlog,
            "push_lag_s": lag,
            "pull_cursor": int(cursor or 0),
            "site": site,  # the estate the office says this gate is at (None: not yet told)
            "connected": self.fresh.is_set(),
            "threads_alive": self.alive(),
            "snapshots": self.pictures.health(),
        }

    def _loop(self, once: Callable[[], bool], worker: str) -> None:
        pulling = worker == "pull"
        failures = 0
        while not self.stop_event.is_set():
            try:
                more = once()
                failures = 0
                self._errors[worker] = None
                self.status["last_error"] = next((e for e in self._errors.values() if e), None)
                if not more:
                    self.stop_event.wait(0.2)
            except Exception as e:  # the office away, or a bad answer: never a dead worker
                if pulling:
                    # the office unreachable: revocations are pulled before any backlog is
                    # pushed again. A push's own failure (one batch refused) pauses only
                    # the pushers, which back off below.
                    self.fresh.clear()
                if worker != "snapshots":
                    with self._claim_lock:
                        self._claimed.clear()  # what was in flight is sent again
                failures += 1
                self._errors[worker] = self.status["last_error"] = f"{type(e).__name__}: {e}"
                # full jitter: retries from many gates do not arrive together
                delay = random.uniform(0, min(self.cfg.retry_max_s, 0.5 * 2**failures))
                if failures == 1:
                    log.warning("sync: %s; retrying", self.status["last_error"],
                                exc_info=not isinstance(e, httpx.HTTPError))  # fmt: skip
                self.stop_event.wait(delay)

    def _take_id_key(self) -> None:
        """The estate's ID-number key, so a number hashed here matches one hashed at its
        other gates and at the office. An office of an older version has none to give: the
        gate keeps its own key, and asks again at its next start."""
        assert self.hasher is not None
        r = self.http.get("/sync/v1/id-key")
        if r.status_code == 404:
            log.warning("sync: the office gives no ID-number key; this gate keeps its own")
        else:
            r.raise_for_status()
            body = r.json()
            if self.hasher.adopt(bytes.fromhex(body["key"])):
                log.warning("sync: ID numbers are now hashed with estate %s's key (the "
                            "earlier key is kept for its records)", body["site"])  # fmt: skip
        self._id_key_taken = True

    def _pull_once(self) -> bool:
        if not self._id_key_taken:
            self._take_id_key()
        cursor, log_id, stamp, scope = self.read(lambda c: [
            db.get_meta(c, k) for k in ("pull_cursor", "pull_log", "pull_stamp", "pull_scope")
        ])  # fmt: skip
        wait = 0 if not self.fresh.is_set() else LONG_POLL_S
        params = {"since": int(cursor or 0), "wait": wait}
        params |= ({"log": log_id} if log_id else {}) | ({"stamp": stamp} if stamp else {})
        params["scope"] = scope or ""  # none yet: the office names it (rescope)
        r = self.http.get("/sync/v1/pull", params=params)
        r.raise_for_status()
        body = r.json()
        if body.get("reset"):
            self._relearn(body["log"])
            return True
        if body.get("rescope"):
            self._rescope(body["rescope"])
            return True
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
        moved = body["next"] != int(cursor or 0)  # past changes for other sites too
        if body["changes"] or moved or (body.get("log") and body["log"] != log_id):
            page = (body["changes"], body["next"], body.get("log"), body.get("stamp"))
            self.writer.call(lambda c: apply_changes(c, *page))
            self.status["pulled"] += len(body["changes"])
        self.pictures.learn(body.get("snapshots"))
        self.status["last_pull_ok"] = self.clock.now()
        self.fresh.set()
        return bool(body["has_more"])

    def _rescope(self, scope: str) -> None:
        """The office says this gate may hold another scope than it does (its site or gates
        changed, or it synced before sites): drop what is not its own, pull again."""
        self._id_key_taken = self.hasher is None  # its estate may have changed too
        keep = self.http.get("/sync/v1/scope")
        keep.raise_for_status()
        body = keep.json()
        dropped = self.writer.call(lambda c: rescope(c, body, body["scope"]))
        log.warning(
            "sync: the office gave this gate scope %s: dropped %d passes and slips "
            "of other gates or sites; pulling its own again",
            body["scope"],
            dropped,
        )

    def _relearn(self, log_id: str) -> None:
        """The office's change log is another one (the office was restored or re-created):
        tell it what this gate holds of its passes and slips, then pull it from the start
        (the version guard keeps what is newer here)."""
        passes, slips = self.read(holdings)
        log.warning("sync: the office's change log is new (%s): it was restored or re-created; "
                    "sending it the %d passes and %d slips held here, then pulling it again",
                    log_id, len(passes), len(slips))  # fmt: skip
        for i in range(0, max(len(passes), len(slips), 1), HOLDINGS_BATCH):
            end = i + HOLDINGS_BATCH
            part = {"passes": passes[i:end], "slips": slips[i:end]}
            self.http.post("/sync/v1/holdings", json=part).raise_for_status()

        def restart(c: sqlite3.Connection) -> None:
            db.set_meta(c, "pull_cursor", "0")
            db.set_meta(c, "pull_stamp", "")
            db.set_meta(c, "pull_log", log_id)

        self.writer.call(restart)

    def _push_once(self) -> bool:
        if not self.fresh.wait(0.5):
            return False  # after a failure, a pull must come first
        self._move_closed()
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
            answer = self._send(epoch, base, rows)
        finally:
            with self._claim_lock:
                self._inflight -= 1
        now = self.clock.now()
        acked = int(answer["acked_through"])
        self.writer.call(
            lambda c: c.execute(
                "UPDATE outbox SET acked_at = ? WHERE epoch = ? AND seq <= ? AND acked_at IS NULL",
                (now, epoch, acked),
            )
        )
        if answer.get("closed_from") is not None:
            self._close(epoch, int(answer["closed_from"]))
            return True
        self.status["pushed"] += len(rows)
        self.status["last_push_ok"] = now
        return len(rows) == self.cfg.push_batch

    def _send(self, epoch: int, base: int, rows: list[tuple[int, str, str, str]],
              skip_to: int | None = None) -> dict[str, Any]:  # fmt: skip
        params = {"epoch": epoch, "base": base, "now": self.clock.now()}
        r = self.http.post(
            "/sync/v1/push",
            params=params | ({"skip_to": skip_to} if skip_to else {}),
            content=wire.encode(rows).encode(),
            headers={"Content-Type": "text/tab-separated-values; charset=utf-8"},
        )
        r.raise_for_status()
        return dict(r.json())

    def _close(self, epoch: int, first: int) -> None:
        """The office holds other content under this epoch's seqs from ``first`` on (this
        database was copied back, or its machine rolled back): it keeps both and takes
        nothing more of the epoch. What is left of it here goes on under a new epoch from
        ``first``, and so does everything this node records from now on."""

        def close(c: sqlite3.Connection) -> int | None:
            key = f"epoch_closed:{epoch}"
            if db.get_meta(c, key) is not None:
                return None  # the other pusher got the same answer
            moved = db.new_epoch(c)  # the node's epoch from now on (and after a restart)
            db.set_meta(c, key, f"{first}:{moved}")
            db.set_meta(c, f"epoch_base:{moved}", str(first))
            alarms.raise_alarm(
                c, self.alarms_cfg, "sync_conflict", "sync", self.clock.now(),
                notes=f"the office holds other records under epoch {epoch} from seq {first}: "
                      f"this database was copied back or rolled back; records go on under "
                      f"epoch {moved}",
            )  # fmt: skip
            return moved

        moved = self.writer.call(close)
        if moved is not None:
            log.error("sync: the office holds other records under epoch %d from seq %d (this "
                      "database was copied back or rolled back?); both are kept, and records "
                      "go on under epoch %d", epoch, first, moved)  # fmt: skip
        with self._claim_lock:
            self._claimed.pop(epoch, None)
        self._closed = None  # read again, with this one
        self._move_closed()

    def _move_closed(self) -> None:
        """Rows still recorded under a closed epoch (by parts of the service started before
        it closed, which hold its number until a restart) move to the epoch that replaced
        it. The closed epochs are read once and then kept: almost always there are none."""
        if self._closed is None:
            self._closed = {
                int(key.split(":")[1]): (int(first), int(moved))
                for key, value in self.read(lambda c: c.execute(
                    "SELECT key, value FROM node_meta WHERE key LIKE 'epoch_closed:%'"
                ).fetchall())
                for first, moved in [value.split(":")]
            }  # fmt: skip
        closed = self._closed
        if not closed:
            return

        def move(c: sqlite3.Connection) -> None:
            for epoch, (first, moved) in closed.items():
                c.execute(
                    "UPDATE outbox SET epoch = ? WHERE epoch = ? AND seq >= ? AND acked_at IS NULL",
                    (moved, epoch, first),
                )

        self.writer.call(move)

    def _hello(self) -> bool:
        """An empty push with nothing else in flight: the office's answer is then exactly how
        far it has each epoch. Less than it once acknowledged means it was restored from a
        backup; the rows are still here, so they are sent again. Less than the oldest row
        still here (pruned: the office's dump is older than 30 days, or this database came
        from a backup) is a gap nobody can fill: the office is told to move past it, and
        both sides raise it for a person."""
        with self._claim_lock:
            if self._inflight or self._hello_running:
                return False
            self._hello_running = True
        try:
            epochs = self.read(lambda c: [r[0] for r in c.execute(
                "SELECT DISTINCT epoch FROM outbox WHERE acked_at IS NOT NULL")])  # fmt: skip
            current = int(self.read(lambda c: db.get_meta(c, "epoch")) or self.epoch)
            for epoch in sorted(set(epochs) | {self.epoch, current}):
                base = self._base(epoch)
                answer = self._send(epoch, base, [])
                acked = int(answer["acked_through"])
                if answer.get("closed_from") is not None:
                    self._close(epoch, int(answer["closed_from"]))
                    continue

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
                lowest = self.read(lambda c, epoch=epoch, acked=acked: c.execute(
                    "SELECT min(seq) FROM outbox WHERE epoch = ? AND seq > ?",
                    (epoch, acked)).fetchone()[0])  # fmt: skip
                if lowest is not None and lowest > acked + 1:
                    self._skip(epoch, base, acked, lowest)
            self._last_hello = time.monotonic()
            return True
        finally:
            with self._claim_lock:
                self._hello_running = False

    def _skip(self, epoch: int, base: int, acked: int, lowest: int) -> None:
        log.error("sync: the office has epoch %d only up to seq %d and this gate no longer has "
                  "seq %d..%d (pruned, or restored from an older backup): they are lost; "
                  "moving on", epoch, acked, acked + 1, lowest - 1)  # fmt: skip
        self._send(epoch, base, [], skip_to=lowest)
        self.writer.call(lambda c: alarms.raise_alarm(
            c, self.alarms_cfg, "sync_gap", "sync", self.clock.now(),
            notes=f"epoch {epoch}: records {acked + 1}..{lowest - 1} never reached the office "
                  "and are no longer on this gate",
        ))  # fmt: skip

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
            return outbox.next_seq(c)

        base = self.read(first_seq)
        self.writer.call(lambda c: db.set_meta(c, key, str(base)))
        return base
