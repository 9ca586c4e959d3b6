"""Cameras: event → JPEG on disk, frame age at the snapshot, CPU per 1080p 25 fps stream,
and a decision's latency with a dead camera.

ffmpeg serves a 1920x1080 25 fps H.264 test pattern over TCP (MPEG-TS) on localhost.

1. In this process, a real ``Cameras`` (grabber thread, snapshot thread, writer on a scratch
   SQLite) takes 200 snapshots ~100 ms apart: time from ``snap()`` (the event) to the JPEG
   being on disk, and the frame's age at the event. Baseline in the same run: a bare
   ``cv2.imencode`` of the same 1080p frame. RATIO = p95 snapshot / p95 imencode
   (target <= 2); frame age p95 in frame intervals (target <= 2).
2. CPU of a grabber per stream, as a share of one core, over 20 s, from the process's
   own CPU time: decoding every frame (``decode = "every_frame"``) and converting only on
   demand (``on_demand``), each with and without 5 snapshots a second.
3. A node with a serial reader on a pty and a camera that accepts the connection and never
   sends: swipe-to-decision p99 against the same node with no camera. RATIO dead / none.

Run: .venv/bin/python bench/camera.py   (about 3 minutes; needs ffmpeg and mosquitto)
"""

from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import cv2
from common import Stats, main_guard

from drivers.camera import Grabber
from edge import db
from edge.cameras import Cameras
from edge.config import parse
from edge.writer import Writer
from tests.helpers import free_port

FPS = 25
SNAPS = 200


def serve_1080p() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [shutil.which("ffmpeg") or "ffmpeg", "-loglevel", "error", "-re", "-f", "lavfi",
         "-i", f"testsrc2=size=1920x1080:rate={FPS}", "-c:v", "libx264", "-preset", "ultrafast",
         "-tune", "zerolatency", "-g", str(FPS * 2), "-f", "mpegts", f"{url}?listen=1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    return proc, url


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def snapshots(url: str, tmp: Path) -> None:
    cfg = parse({
        "node": {"id": "bench", "data_dir": str(tmp)},
        "database": {"url": f"sqlite:///{tmp}/e.db"},
        "gates": [{"id": "main"}],
        "cameras": [{"id": "cam", "gate": "main", "source": url}],
    })  # fmt: skip
    db.migrate(cfg.db_path)
    writer = Writer(db.connect(cfg.db_path))
    writer.start()
    cams = Cameras(cfg, writer, 1)
    cams.start()
    try:
        grabber = cams.grabbers["cam"]
        deadline = time.monotonic() + 20
        while grabber.latest is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if grabber.latest is None:
            raise RuntimeError("no frame from the 1080p stream")
        took, ages, encodes = [], [], []
        for _ in range(SNAPS + 10):
            time.sleep(0.1)
            t0 = time.monotonic()
            req = cams.snap("main", "event", f"e{t0}", time.time())
            assert req is not None
            shown = req.result.result(10)
            took.append((req.stored_at or time.monotonic()) - t0)
            ages.append(shown["age_ms"] / 1000)
            frame = grabber.latest.image  # the baseline: encoding the same kind of frame
            e0 = time.perf_counter()
            cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
            encodes.append(time.perf_counter() - e0)
        snap, enc = Stats.of_seconds(took[10:]), Stats.of_seconds(encodes[10:])
        age = Stats.of_seconds([abs(a) for a in ages[10:]])
        interval_ms = 1000 / FPS
        print(snap.row("event -> JPEG on disk (1080p)"))
        print(enc.row("bare cv2.imencode (baseline)"))
        print(f"RATIO snapshot p95 / imencode p95 = {snap.p95:.2f} / {enc.p95:.2f} ms "
              f"= {snap.p95 / enc.p95:.2f} (target <= 2)")  # fmt: skip
        print(age.row("frame age at the event"))
        print(f"RATIO frame age p95 / frame interval = {age.p95:.1f} / {interval_ms:.0f} ms "
              f"= {age.p95 / interval_ms:.2f} (target <= 2)")  # fmt: skip
    finally:
        cams.stop()
        writer.stop()


def cpu(url: str, every_frame: bool, snaps_per_s: float, seconds: float = 20.0) -> float:
    g = Grabber("cpu", url, every_frame=every_frame)
    g.start()
    try:
        deadline = time.monotonic() + 20
        while g.health.frames < FPS and time.monotonic() < deadline:
            time.sleep(0.05)
        c0, t0, f0 = cpu_seconds(), time.monotonic(), g.health.frames
        while time.monotonic() - t0 < seconds:
            if snaps_per_s:
                frame = g.latest
                if every_frame and frame is not None:
                    cv2.imencode(".jpg", frame.image)
                else:
                    g.next_frame(lambda f: cv2.imencode(".jpg", f.image))
                time.sleep(1 / snaps_per_s)
            else:
                time.sleep(0.5)
        used = (cpu_seconds() - c0) / (time.monotonic() - t0)
        fps = (g.health.frames - f0) / (time.monotonic() - t0)
        mode = "every_frame" if every_frame else "on_demand"
        print(f"  CPU {mode:<11} {snaps_per_s:g} snapshots/s: {used * 100:5.1f} % of a core "
              f"({fps:.1f} fps grabbed)")  # fmt: skip
        return used
    finally:
        g.stop()


def dead_camera_latency() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from swipe_latency import swipe_p99_with_camera  # type: ignore[import-not-found]

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(5)
    conns: list[socket.socket] = []
    threading.Thread(target=lambda: conns.append(hung.accept()[0]), daemon=True).start()
    try:
        none = swipe_p99_with_camera(None)
        dead = swipe_p99_with_camera(f"http://127.0.0.1:{hung.getsockname()[1]}/cam")
    finally:
        hung.close()
    print(none.row("swipe -> decision, no camera"))
    print(dead.row("swipe -> decision, hung camera"))
    print(f"RATIO dead camera p99 / no camera p99 = {dead.p99:.2f} / {none.p99:.2f} ms "
          f"= {dead.p99 / none.p99:.2f}")  # fmt: skip


def main() -> None:
    proc, url = serve_1080p()
    try:
        print(
            f"camera bench: 1920x1080 {FPS} fps H.264 over TCP from ffmpeg, {os.cpu_count()} cores"
        )
        with tempfile.TemporaryDirectory(prefix="gh-bench-cam-") as tmp:
            snapshots(url, Path(tmp))
    finally:
        proc.kill()
        proc.wait()
    print("CPU per stream (this process's CPU time / wall time):")
    for every_frame in (True, False):
        for rate in (0.0, 5.0):
            proc, url = serve_1080p()
            try:
                cpu(url, every_frame, rate)
            finally:
                proc.kill()
                proc.wait()
    dead_camera_latency()


if __name__ == "__main__":
    main_guard(main)
