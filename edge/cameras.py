"""Snapshots: a picture from the gate's camera with every decision, slip release or
rejection and gate alarm — taken at that moment, hashed, recorded — and the cameras' health.

The swipe path only *asks*: the request is queued and the decision goes on. The camera's
grabber hands over the next frame it grabs; a thread of its own encodes the JPEG, writes
it and records it (path, SHA-256, the frame's distance from the event) in the writer.

Every request ends in a snapshot row, whatever happens to its picture: a camera that gives
no frame in time, a disk that refuses the file, a queue that is full — each is recorded as
"no picture", counted and shown in the cameras' health. The asking side never waits: the
queue of decoded frames is bounded and a request that finds it full is recorded at once.
The thread survives any error (a disk error costs one picture, not the thread) and beats a
heartbeat the service's readiness and watchdog read (``alive``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge import db, outbox, store
from edge.alarms import OPEN_STATES
from edge.clock import Clock, SystemClock
from edge.config import CameraCfg, Config
from edge.models import Snapshot
from edge.views import snapshot_view
from edge.writer import CallJob, Writer

if TYPE_CHECKING:
    from drivers.camera import Frame, Grabber

log = logging.getLogger(__name__)

# Decoded frames waiting for the snapshot thread. Each may hold a frame of its own (1080p:
# 6 MB), so this bounds the memory a slow or blocked thread can pin: 32 x 6 MB at worst.
QUEUE_MAX = 32
# Requests waiting for their camera's next frame (no frame held yet: a few hundred bytes).
PENDING_MAX = 256
TURN_S = 0.2  # the thread turns (and beats) at least this often when idle
RETENTION_EVERY_S = 600.0
RETENTION_RETRY_S = 60.0  # after a sweep the writer could not take
RETENTION_PAUSE_S = 0.05  # between two chunks of a sweep
RETENTION_CHUNK = 25  # pictures per writer job: one or two milliseconds with its commit
RETENTION_CALL_TIMEOUT_S = 2.0  # a chunk not begun by then waits for the next sweep
REF_TABLES = {"event": ("access_events", "event_id"), "alarm": ("alarms", "id"),
              "slip": ("goods_slips", "number")}  # fmt: skip


@dataclass
class Request:
    camera: CameraCfg
    ref_kind: str  # event | alarm | slip | request
    ref_id: str
    event_ts: float
    asked: float = field(default_factory=time.monotonic)
    done: bool = False  # claimed by whoever records it (under Cameras._lock): exactly once
    stored_at: float | None = None  # monotonic: the JPEG is on disk
    result: Future[dict[str, Any]] = field(default_factory=Future)


@dataclass
class SnapshotHealth:
    """What storing one camera's pictures has met (beside the grabber's CameraHealth)."""

    failing: bool = False  # the last picture could not be stored
    error: str | None = None  # the last error, kept after recovery (with its time)
    error_at: float | None = None  # monotonic
    errors: int = 0
    dropped: int = 0


@dataclass
class Sweep:
    """One retention pass, done a chunk per writer job."""

    horizon: float  # pictures of events before this (wall clock) are past their age
    quota: int  # bytes
    total: int  # bytes of the pictures still on disk, counted when the pass began
    after: int = 0  # the last snapshot id looked at
    finished: bool = False
    removed: int = 0


@dataclass(frozen=True)
class Chunk:
    """What one retention job did: rows marked deleted, whose files are removed once it
    is committed."""

    paths: list[str]
    after: int
    total: int
    finished: bool


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def _kind(e: BaseException) -> str:
    """An error without its file name: what "the same error again" means for the log."""
    if isinstance(e, OSError) and e.strerror:
        return f"{type(e).__name__}: [{e.errno}] {e.strerror}"
    return _describe(e)


class Cameras:
    def __init__(self, cfg: Config, writer: Writer, epoch: int, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        self.cfg = cfg
        self.writer = writer
        self.epoch = epoch
        self.dir = cfg.data_dir / "snapshots"
        self.by_gate = {c.gate: c for c in cfg.cameras}
        # OpenCV costs ~60 MB of memory: loaded only on a node that has cameras
        if cfg.cameras:
            from drivers.camera import Grabber
        self.grabbers: dict[str, Grabber] = {
            c.id: Grabber(
                c.id,
                c.source,
                c.open_timeout_ms,
                c.read_timeout_ms,
                c.decode == "every_frame",
                clock=self.clock,
            )
            for c in cfg.cameras
        }
        self.started = self.clock.monotonic()
        self.counts: dict[str, int] = {
            "snapshots": 0, "snapshots_missing": 0, "snapshot_errors": 0, "snapshots_dropped": 0,
            "retention_unlink_errors": 0, "snapshot_thread_errors": 0,
        }  # fmt: skip
        self.stats = {c.id: SnapshotHealth() for c in cfg.cameras}
        self.last_error: str | None = None  # the last error of the snapshot thread, any camera
        self.last_beat = self.clock.monotonic()  # the snapshot thread's loop turned
        self.next_retention = self.clock.monotonic()  # the first sweep soon after start
        self._work: queue.Queue[tuple[Frame, list[Request]]] = queue.Queue(QUEUE_MAX)
        self._pending: list[Request] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="snapshots", daemon=True)
        self._covered_since: dict[str, float] = {}
        self._sweep: Sweep | None = None
        self._reader: sqlite3.Connection | None = None
        self._logged: set[tuple[str, str]] = set()  # errors logged: once each, not per picture
        self._dropping = False

    def start(self) -> None:
        for g in self.grabbers.values():
            g.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop the grabbers and the thread. Requests still waiting are recorded as "no
        picture" if the writer still takes jobs; none is stored now (the service stops its
        writer first, and a file without its row would be an orphan)."""
        for g in self.grabbers.values():
            g.stop()
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def alive(self, within_s: float = 5.0) -> bool:
        """No cameras, or the snapshot thread runs and turned within ``within_s``."""
        if not self.cfg.cameras:
            return True
        return self._thread.is_alive() and self.clock.monotonic() - self.last_beat < within_s

    # -- asking -------------------------------------------------------------------------

    def snap(self, gate: str | None, ref_kind: str, ref_id: str, event_ts: float) -> Request | None:
        """Ask for a picture at ``gate`` for this record; returns at once (None: no camera).
        Never blocks: when the thread is behind, the request is recorded as "no picture"."""
        camera = self.by_gate.get(gate or "")
        if camera is None:
            return None
        req = Request(camera, ref_kind, str(ref_id), event_ts)
        if self._stopping.is_set():  # no frame is coming: said at once
            self.counts["snapshots_missing"] += 1
            self._record(req, None, None, 0, None)
            return req
        grabber = self.grabbers[camera.id]
        latest = grabber.latest
        fresh = latest is not None and event_ts - latest.captured_at < camera.stale_after_ms / 1000
        if grabber.every_frame and latest is not None and fresh:
            self._enqueue(latest, [req])  # the newest frame, decoded already
            return req
        with self._lock:
            room = len(self._pending) < PENDING_MAX
            if room:
                self._pending.append(req)
        if not room:
            self._drop([req])
            return req
        grabber.next_frame(lambda frame: self._deliver(camera.id, frame))
        return req

    def _deliver(self, camera_id: str, frame: Frame) -> None:
        """In the grabber's thread: the frame for every request still waiting at this
        camera (one queue slot, one JPEG encode, however many asked)."""
        with self._lock:
            reqs = [r for r in self._pending if r.camera.id == camera_id]
            if not reqs:
                return
            self._pending = [r for r in self._pending if r.camera.id != camera_id]
        self._enqueue(frame, reqs)

    def _enqueue(self, frame: Frame, reqs: list[Request]) -> None:
        try:
            self._work.put_nowait((frame, reqs))
        except queue.Full:
            self._drop(reqs)

    def _claim(self, reqs: list[Request]) -> list[Request]:
        """The requests not yet recorded, now marked as being recorded by the caller."""
        with self._lock:
            mine = [r for r in reqs if not r.done]
            for r in mine:
                r.done = True
        return mine

    def _drop(self, reqs: list[Request]) -> None:
        """The thread is behind: recorded as "no picture" now, rather than held."""
        mine = self._claim(reqs)
        if not mine:
            return
        with self._lock:
            self.counts["snapshots_dropped"] += len(mine)
            for r in mine:
                self.stats[r.camera.id].dropped += 1
            first, self._dropping = not self._dropping, True
        if first:
            log.warning("snapshots: %d pictures already waiting; later requests are recorded "
                        "as no picture until the queue drains", QUEUE_MAX)  # fmt: skip
        for req in mine:
            self._record(req, None, None, 0, None)

    # -- the snapshot thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self.last_beat = self.clock.monotonic()
            try:
                if not self._turn():
                    break
            except BaseException as e:  # never: but a dead thread would silence the camera
                self.counts["snapshot_thread_errors"] += 1
                self._fault("snapshot thread", e)
                self._stopping.wait(TURN_S)  # an error every turn must not spin
        with contextlib.suppress(Exception):
            self._expire(everything=True)  # stopping: no frame is coming for them
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader.close()

    def _turn(self) -> bool:
        """One turn: a frame's pictures, the requests that waited too long, a retention
        chunk. False once stopping and nothing is left in the queue."""
        stopping = self._stopping.is_set()
        try:
            # a sweep under way goes on between pictures, a chunk a turn, with a pause
            # after each so that swipes queued behind a chunk go first (as housekeeping)
            if stopping:
                item = self._work.get_nowait()
            elif self._sweep is not None:
                item = self._work.get(timeout=RETENTION_PAUSE_S)
            else:
                item = self._work.get(timeout=TURN_S)
        except queue.Empty:
            item = None
        if item is not None:
            frame, reqs = item
            try:
                if not stopping:
                    self._store(frame, reqs)
            finally:  # stopping, or a fault half-way: the rest still get their row
                for req in self._claim(reqs):
                    self.counts["snapshots_missing" if stopping else "snapshot_errors"] += 1
                    self._record(req, None, None, 0, None)
        elif self._dropping:
            with self._lock:
                self._dropping = False
        if stopping and item is None:
            return False
        self._expire()
        if not stopping:
            self._retention_turn()
        return True

    def _expire(self, everything: bool = False) -> None:
        """Requests no frame answered in time: recorded as "no picture", not left hanging."""
        now = self.clock.monotonic()
        with self._lock:
            late = [
                r for r in self._pending
                if everything or now - r.asked > r.camera.stale_after_ms / 1000
            ]  # fmt: skip
            if not late:
                return
            self._pending = [r for r in self._pending if r not in late]
        for req in self._claim(late):
            self.counts["snapshots_missing"] += 1
            self._record(req, None, None, 0, None)

    def _store(self, frame: Frame, reqs: list[Request]) -> None:
        """Encode the frame once and store it for each request; a request whose file
        cannot be written is recorded as "no picture" and the error kept."""
        import cv2

        if all(r.done for r in reqs):
            return
        try:
            ok, jpeg = cv2.imencode(
                ".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.snapshots.jpeg_quality]
            )
            if not ok:
                raise ValueError("JPEG encoding failed")
        except Exception as e:
            for req in self._claim(reqs):
                self._failed(req, e)
            return
        data = jpeg.tobytes()
        sha = hashlib.sha256(data).hexdigest()
        for req in reqs:
            if not self._claim([req]):
                continue
            try:
                path = self._write(req, frame, data)
            except Exception as e:  # a disk error costs this picture, never the thread
                self._failed(req, e)
                continue
            req.stored_at = self.clock.monotonic()
            self.counts["snapshots"] += 1
            self._stored(req.camera.id)
            self._record(req, path, sha, len(data), frame.captured_at)

    def _write(self, req: Request, frame: Frame, data: bytes) -> Path:
        day = datetime.fromtimestamp(req.event_ts, self.cfg.tz).strftime("%Y-%m-%d")
        folder = self.dir / day
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{req.camera.id}-{req.ref_kind}-{req.ref_id}-{frame.seq}.jpg"
        tmp = path.with_suffix(".tmp")
        try:
            with tmp.open("wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # evidence: on disk before its hash is recorded
            tmp.replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)  # a half-written file must not fill the disk more
            raise
        return path

    def _failed(self, req: Request, e: BaseException) -> None:
        s = self.stats[req.camera.id]
        s.failing, s.error, s.error_at = True, _describe(e), self.clock.monotonic()
        s.errors += 1
        self.counts["snapshot_errors"] += 1
        self._fault(f"camera {req.camera.id}: picture not stored", e)
        self._record(req, None, None, 0, None)

    def _stored(self, camera_id: str) -> None:
        s = self.stats[camera_id]
        if s.failing:
            s.failing = False
            what = f"camera {camera_id}: picture not stored"
            self._logged = {k for k in self._logged if k[0] != what}  # news again if it recurs
            log.warning("camera %s: pictures are stored again (%d failed so far)",
                        camera_id, s.errors)  # fmt: skip

    def _fault(self, what: str, e: BaseException) -> None:
        """Kept for health; logged once per distinct error, not once per picture."""
        self.last_error = f"{what}: {_describe(e)}"
        if (what, _kind(e)) not in self._logged:
            self._logged.add((what, _kind(e)))
            log.error("%s: %s (logged once until it changes)", what, _describe(e),
                      exc_info=not isinstance(e, OSError | ValueError))  # fmt: skip

    def _record(self, req: Request, path: Path | None, sha: str | None, size: int,
                captured_at: float | None) -> None:  # fmt: skip
        # how old the frame was at the event (negative: grabbed just after it)
        age_ms = None if captured_at is None else round((req.event_ts - captured_at) * 1000)
        stale = age_ms is None or abs(age_ms) > req.camera.stale_after_ms

        def job(conn: sqlite3.Connection) -> dict[str, Any]:
            snapshot_id = store.insert(conn, Snapshot, {
                "camera": req.camera.id, "gate": req.camera.gate, "ref_kind": req.ref_kind,
                "ref_id": req.ref_id, "path": str(path) if path else None, "sha256": sha,
                "bytes": size, "event_ts": req.event_ts, "captured_at": captured_at,
                "age_ms": age_ms, "stale": stale,
            })  # fmt: skip
            if req.ref_kind in REF_TABLES:
                table, key = REF_TABLES[req.ref_kind]
                conn.execute(
                    f"UPDATE {table} SET snapshot_id = ? WHERE {key} = ? AND snapshot_id IS NULL",
                    (snapshot_id, req.ref_id),
                )
            shown = snapshot_view(snapshot_id, sha, age_ms, stale, path is not None)
            outbox.add(conn, self.epoch, "snapshot", str(snapshot_id),
                       shown | {"ref_kind": req.ref_kind, "ref_id": req.ref_id,
                                "camera": req.camera.id}, self.clock.now())  # fmt: skip
            return shown

        job_ = CallJob(job, after=lambda shown: req.result.set_result(shown))
        self.writer.submit(job_)

    # -- retention ----------------------------------------------------------------------

    def _retention_turn(self) -> None:
        """Start a sweep when one is due, or take the next chunk of the one under way."""
        try:
            if self._sweep is None:
                if self.clock.monotonic() < self.next_retention:
                    return
                self.next_retention = self.clock.monotonic() + RETENTION_EVERY_S
                self._sweep = self.begin_retention()
            if self._sweep is not None:
                self.retention_step(self._sweep)
                if self._sweep.finished:
                    if self._sweep.removed:
                        log.info("retention: %d pictures removed", self._sweep.removed)
                    self._sweep = None
        except Exception as e:  # the writer busy or failing: the next sweep starts over
            self._sweep = None
            self.next_retention = self.clock.monotonic() + RETENTION_RETRY_S
            self._fault("retention", e)

    def begin_retention(self) -> Sweep | None:
        """A sweep, if anything is due. Reads on a connection of its own (WAL: the writer is
        not involved); the bytes on disk are summed from the on-disk index."""
        if self._reader is None:
            self._reader = db.connect(self.cfg.db_path)
        conn = self._reader
        quota = int(self.cfg.snapshots.quota_mb * 1024 * 1024)
        horizon = self.clock.now() - self.cfg.snapshots.retention_days * 86400
        on_disk = "FROM snapshots WHERE deleted_at IS NULL AND path IS NOT NULL"
        total = conn.execute(f"SELECT coalesce(sum(bytes), 0) {on_disk}").fetchone()[0]
        if total > quota:
            return Sweep(horizon, quota, int(total))
        # the oldest picture open alarms do not keep: is it past its age?
        keep = self._kept(conn)
        for snapshot_id, event_ts in conn.execute(
            f"SELECT id, event_ts {on_disk} ORDER BY id LIMIT ?", (len(keep) + 1,)
        ):
            if snapshot_id not in keep:
                return Sweep(horizon, quota, int(total)) if event_ts < horizon else None
        return None

    @staticmethod
    def _kept(conn: sqlite3.Connection) -> set[int]:
        """The pictures open alarms refer to: never removed."""
        # the states spelt out, not "!= 'closed'": that could not use ix_alarms_state and
        # read all of a busy estate's alarms (100k) for every retention chunk
        marks = ",".join("?" * len(OPEN_STATES))
        return {r[0] for r in conn.execute(
            f"SELECT snapshot_id FROM alarms WHERE state IN ({marks}) AND snapshot_id IS NOT NULL",
            OPEN_STATES,
        )}  # fmt: skip

    @staticmethod
    def _kept_among(conn: sqlite3.Connection, ids: list[int]) -> set[int]:
        """Which of ``ids`` open alarms refer to: one look-up each on ix_alarms_snapshot.
        (All of them, as ``_kept`` reads, is thousands of rows on a busy estate: done in
        every retention chunk it held the writer, and the swipes queued behind it, for
        milliseconds.)"""
        if not ids:
            return set()
        rows = conn.execute(
            f"SELECT snapshot_id FROM alarms WHERE snapshot_id IN ({','.join('?' * len(ids))})"
            f" AND state IN ({','.join('?' * len(OPEN_STATES))})",
            (*ids, *OPEN_STATES),
        )
        return {r[0] for r in rows}

    def retention_step(self, sweep: Sweep) -> None:
        """One chunk in the writer; its files are removed only once it is committed."""
        chunk: Chunk = self.writer.call(
            lambda conn: self.retention_chunk(conn, sweep), timeout=RETENTION_CALL_TIMEOUT_S
        )
        sweep.after, sweep.total, sweep.finished = chunk.after, chunk.total, chunk.finished
        sweep.removed += len(chunk.paths)
        for path in chunk.paths:
            try:
                Path(path).unlink(missing_ok=True)
            except OSError as e:
                self.counts["retention_unlink_errors"] += 1
                self._fault("retention: a picture could not be removed", e)

    def run_retention(self) -> int:
        """A whole sweep now, chunk after chunk (tests, tools); the thread does the same a
        chunk a turn. Returns how many pictures went."""
        sweep = self.begin_retention()
        while sweep is not None and not sweep.finished:
            self.retention_step(sweep)
        return sweep.removed if sweep else 0

    def retention_chunk(self, conn: sqlite3.Connection, sweep: Sweep) -> Chunk:
        """The writer job: the next RETENTION_CHUNK pictures still on disk, oldest first;
        those past their age, or while the total is above the quota, are marked deleted —
        never one an open alarm refers to. Returns their paths (to be removed after the
        commit) and where the sweep stands; ``sweep`` itself is not touched, so a job run
        again after a rollback does the same. The rows (and hashes) stay."""
        rows = conn.execute(
            "SELECT id, path, bytes, event_ts FROM snapshots "
            "WHERE deleted_at IS NULL AND path IS NOT NULL AND id > ? ORDER BY id LIMIT ?",
            (sweep.after, RETENTION_CHUNK),
        ).fetchall()
        keep = self._kept_among(conn, [r[0] for r in rows])
        total, after = sweep.total, sweep.after
        finished = len(rows) < RETENTION_CHUNK
        gone: list[tuple[int, str]] = []
        for snapshot_id, path, size, event_ts in rows:
            if event_ts >= sweep.horizon and total <= sweep.quota:
                finished = True
                break
            after = snapshot_id
            if snapshot_id in keep:
                continue
            gone.append((snapshot_id, path))
            total -= size
        now = self.clock.now()
        conn.executemany(
            "UPDATE snapshots SET deleted_at = ? WHERE id = ?", [(now, i) for i, _ in gone]
        )
        return Chunk([p for _, p in gone], after, total, finished)

    # -- health -------------------------------------------------------------------------

    def health(self) -> dict[str, dict[str, Any]]:
        now = self.clock.monotonic()
        out = {}
        for c in self.cfg.cameras:
            h = self.grabbers[c.id].health
            s = self.stats[c.id]
            age = None if h.last_frame_at is None else now - h.last_frame_at
            silent_for = age if age is not None else now - self.started
            offline = silent_for > c.offline_after_s
            frozen = h.frozen_since is not None and now - h.frozen_since > c.frozen_after_s
            if h.covered and not offline:
                since = self._covered_since.setdefault(c.id, now)
            else:
                self._covered_since.pop(c.id, None)
                since = now
            covered = h.covered and not offline and now - since >= c.covered_after_s
            out[c.id] = {
                "gate": c.gate,
                "state": h.state,
                "ok": not (offline or frozen or covered or s.failing),
                "offline": offline,
                "frozen": frozen and not offline,
                "covered": covered,
                "frame_age_s": None if age is None else round(age, 2),
                "frames": h.frames,
                "reconnects": h.reconnects,
                "brightness": h.brightness,
                "contrast": h.contrast,
                "error": h.error,
                # storing its pictures: failing now, the last error and how long ago
                "snapshots_failing": s.failing,
                "snapshot_error": s.error,
                "snapshot_error_age_s": None if s.error_at is None else round(now - s.error_at, 1),
                "snapshot_errors": s.errors,
                "snapshots_dropped": s.dropped,
            }
        return out
