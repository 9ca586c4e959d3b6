"""Snapshots: a picture from the gate's camera with every decision, slip release or
rejection and gate alarm — taken at that moment, hashed, recorded — and the cameras' health.

The swipe path only *asks*: the request is queued and the decision goes on. The camera's
grabber hands over the next frame it grabs; a thread of its own encodes the JPEG, writes
it and records it (path, SHA-256, the frame's distance from the event) in the writer.
"""

from __future__ import annotations

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

from edge import outbox
from edge.config import CameraCfg, Config
from edge.snapshots import view
from edge.writer import CallJob, Writer

if TYPE_CHECKING:
    from drivers.camera import Frame, Grabber

log = logging.getLogger(__name__)

RETENTION_EVERY_S = 600.0
REF_TABLES = {"event": ("access_events", "event_id"), "alarm": ("alarms", "id"),
              "slip": ("goods_slips", "number")}  # fmt: skip


@dataclass
class Request:
    camera: CameraCfg
    ref_kind: str  # event | alarm | slip | request
    ref_id: str
    event_ts: float
    asked: float = field(default_factory=time.monotonic)
    done: bool = False
    stored_at: float | None = None  # monotonic: the JPEG is on disk
    result: Future[dict[str, Any]] = field(default_factory=Future)


class Cameras:
    def __init__(self, cfg: Config, writer: Writer, epoch: int) -> None:
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
                c.id, c.source, c.open_timeout_ms, c.read_timeout_ms, c.decode == "every_frame"
            )
            for c in cfg.cameras
        }
        self.started = time.monotonic()
        self.counts: dict[str, int] = {"snapshots": 0, "snapshots_missing": 0}
        self._work: queue.SimpleQueue[tuple[Request, Frame] | None] = queue.SimpleQueue()
        self._pending: list[Request] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="snapshots", daemon=True)
        self._covered_since: dict[str, float] = {}

    def start(self) -> None:
        for g in self.grabbers.values():
            g.start()
        self._thread.start()

    def stop(self) -> None:
        for g in self.grabbers.values():
            g.stop()
        self._work.put(None)
        self._thread.join(timeout=10)

    # -- asking -------------------------------------------------------------------------

    def snap(self, gate: str | None, ref_kind: str, ref_id: str, event_ts: float) -> Request | None:
        """Ask for a picture at ``gate`` for this record; returns at once (None: no camera)."""
        camera = self.by_gate.get(gate or "")
        if camera is None:
            return None
        req = Request(camera, ref_kind, str(ref_id), event_ts)
        grabber = self.grabbers[camera.id]
        latest = grabber.latest
        fresh = latest is not None and event_ts - latest.captured_at < camera.stale_after_ms / 1000
        if grabber.every_frame and latest is not None and fresh:
            self._work.put((req, latest))  # the newest frame, decoded already
            return req
        with self._lock:
            self._pending.append(req)
        grabber.next_frame(lambda frame: self._work.put((req, frame)))
        return req

    # -- the snapshot thread ------------------------------------------------------------

    def _loop(self) -> None:
        last_retention = 0.0
        while True:
            try:
                item = self._work.get(timeout=0.2)
            except queue.Empty:
                item = ()  # type: ignore[assignment]
            if item is None:
                return
            if item:
                req, frame = item
                if not req.done:
                    self._store(req, frame)
            self._expire()
            if time.monotonic() - last_retention > RETENTION_EVERY_S:
                last_retention = time.monotonic()
                self.writer.submit(CallJob(self.retention))

    def _expire(self) -> None:
        """Requests no frame answered in time: recorded as "no picture", not left hanging."""
        now = time.monotonic()
        with self._lock:
            late = [r for r in self._pending if now - r.asked > r.camera.stale_after_ms / 1000]
            self._pending = [r for r in self._pending if r not in late and not r.done]
        for req in late:
            if not req.done:
                req.done = True
                self.counts["snapshots_missing"] += 1
                self._record(req, None, None, 0, None)

    def _store(self, req: Request, frame: Frame) -> None:
        import cv2

        req.done = True
        ok, jpeg = cv2.imencode(
            ".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.snapshots.jpeg_quality]
        )
        if not ok:
            log.error("camera %s: JPEG encoding failed", req.camera.id)
            return
        data = jpeg.tobytes()
        day = datetime.fromtimestamp(req.event_ts, self.cfg.tz).strftime("%Y-%m-%d")
        folder = self.dir / day
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{req.camera.id}-{req.ref_kind}-{req.ref_id}-{frame.seq}.jpg"
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # evidence: on disk before its hash is recorded
        tmp.replace(path)
        req.stored_at = time.monotonic()
        self.counts["snapshots"] += 1
        self._record(req, path, hashlib.sha256(data).hexdigest(), len(data), frame.captured_at)

    def _record(self, req: Request, path: Path | None, sha: str | None, size: int,
                captured_at: float | None) -> None:  # fmt: skip
        # how old the frame was at the event (negative: grabbed just after it)
        age_ms = None if captured_at is None else round((req.event_ts - captured_at) * 1000)
        stale = age_ms is None or abs(age_ms) > req.camera.stale_after_ms

        def job(conn: sqlite3.Connection) -> dict[str, Any]:
            cur = conn.execute(
                "INSERT INTO snapshots (camera, gate, ref_kind, ref_id, path, sha256, bytes, "
                "event_ts, captured_at, age_ms, stale) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (req.camera.id, req.camera.gate, req.ref_kind, req.ref_id,
                 str(path) if path else None, sha, size, req.event_ts, captured_at, age_ms,
                 stale),
            )  # fmt: skip
            snapshot_id = int(cur.lastrowid or 0)
            if req.ref_kind in REF_TABLES:
                table, key = REF_TABLES[req.ref_kind]
                conn.execute(
                    f"UPDATE {table} SET snapshot_id = ? WHERE {key} = ? AND snapshot_id IS NULL",
                    (snapshot_id, req.ref_id),
                )
            shown = view(snapshot_id, sha, age_ms, stale, path is not None)
            outbox.add(conn, self.epoch, "snapshot", str(snapshot_id),
                       shown | {"ref_kind": req.ref_kind, "ref_id": req.ref_id,
                                "camera": req.camera.id}, time.time())  # fmt: skip
            return shown

        job_ = CallJob(job, after=lambda shown: req.result.set_result(shown))
        self.writer.submit(job_)

    # -- retention ----------------------------------------------------------------------

    def retention(self, conn: sqlite3.Connection) -> int:
        """Delete pictures past their age, then oldest first past the quota; never one an
        open alarm refers to. The rows (and hashes) stay."""
        now = time.time()
        keep = {r[0] for r in conn.execute(
            "SELECT snapshot_id FROM alarms WHERE state != 'closed' AND snapshot_id IS NOT NULL"
        )}  # fmt: skip
        rows = conn.execute(
            "SELECT id, path, bytes, event_ts FROM snapshots "
            "WHERE deleted_at IS NULL AND path IS NOT NULL ORDER BY id"
        ).fetchall()
        total = sum(r[2] for r in rows)
        quota = self.cfg.snapshots.quota_mb * 1024 * 1024
        horizon = now - self.cfg.snapshots.retention_days * 86400
        removed = 0
        for snapshot_id, path, size, event_ts in rows:
            if event_ts >= horizon and total <= quota:
                break
            if snapshot_id in keep:
                continue
            Path(path).unlink(missing_ok=True)
            conn.execute("UPDATE snapshots SET deleted_at = ? WHERE id = ?", (now, snapshot_id))
            total -= size
            removed += 1
        return removed

    # -- health -------------------------------------------------------------------------

    def health(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        out = {}
        for c in self.cfg.cameras:
            h = self.grabbers[c.id].health
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
                "ok": not (offline or frozen or covered),
                "offline": offline,
                "frozen": frozen and not offline,
                "covered": covered,
                "frame_age_s": None if age is None else round(age, 2),
                "frames": h.frames,
                "reconnects": h.reconnects,
                "brightness": h.brightness,
                "contrast": h.contrast,
                "error": h.error,
            }
        return out
