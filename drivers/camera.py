"""Camera capture on OpenCV: one grabber thread per camera, always holding the newest frame.

OpenCV's FFmpeg backend buffers (a frame read "now" can be seconds old) and a dead RTSP
stream can hang ``read()`` for a minute and a half (research §7.3). So a thread grabs every
packet as it comes — the decoder's buffer never fills — with open and read timeouts, and
reopens the stream with backoff when it drops. Frames are converted to pixels either
every time (``every_frame``: a snapshot is then one JPEG encode of the newest frame) or only
when someone needs one — a snapshot, or the once-a-second health look — to save CPU. Callers never
touch the VideoCapture; they ask for the next frame and get it from the grabber thread,
so a slow or dead camera can delay nothing but its own snapshots.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from drivers.clock import TIME, Clock

log = logging.getLogger(__name__)

HEALTH_EVERY_S = 1.0
THUMB = (64, 36)


@dataclass
class Frame:
    image: Any  # numpy BGR array
    captured_at: float  # wall clock when the grab returned
    seq: int


@dataclass
class CameraHealth:
    """What the grabber has seen: the inputs to camera_offline / _frozen / _covered."""

    state: str = "connecting"  # connecting | streaming | offline
    last_frame_at: float | None = None  # monotonic
    frames: int = 0
    reconnects: int = 0
    error: str | None = None
    frozen_since: float | None = None  # monotonic: identical frames since
    covered: bool = False
    brightness: float | None = None
    contrast: float | None = None


def open_capture(source: str, open_timeout_ms: int, read_timeout_ms: int) -> cv2.VideoCapture:
    """A device index ("0") opens the device; anything else goes to FFmpeg with timeouts."""
    if source.isdigit():
        return cv2.VideoCapture(int(source))
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_timeout_ms,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_timeout_ms,
    ]  # fmt: skip
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)


def looks(image: Any) -> tuple[Any, float, float]:
    """A small grey thumbnail, its mean brightness and its contrast (standard deviation)."""
    small = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), THUMB, interpolation=cv2.INTER_AREA)
    return small, float(small.mean()), float(small.std())


def is_covered(brightness: float, contrast: float) -> bool:
    """Near-black, or near-uniform (a lens taped over, sprayed, or turned to a wall)."""
    return brightness < 12 or contrast < 4


class Grabber:
    def __init__(
        self,
        camera_id: str,
        source: str,
        open_timeout_ms: int = 5000,
        read_timeout_ms: int = 5000,
        every_frame: bool = True,
        clock: Clock | None = None,
    ) -> None:
        self.camera_id = camera_id
        self.clock = clock or TIME  # stamps each grab: frames, health and freeze times
        self.source = source
        self.open_timeout_ms = open_timeout_ms
        self.read_timeout_ms = read_timeout_ms
        # True: convert every frame, so a snapshot is one JPEG encode of a frame at most one
        # interval old. False: convert only on demand (less CPU; a snapshot waits for the
        # next frame instead).
        self.every_frame = every_frame
        self.health = CameraHealth()
        self.latest: Frame | None = None
        self._waiting: list[Callable[[Frame], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)
        self._last_health = 0.0
        self._thumb: Any = None
        self._seq = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.read_timeout_ms / 1000 + 2)

    def next_frame(self, deliver: Callable[[Frame], None]) -> None:
        """Ask for the next frame grabbed from now on; ``deliver`` runs in the grabber thread.
        Never blocks: a camera that is gone simply never calls back."""
        with self._lock:
            self._waiting.append(deliver)

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            cap = None
            try:
                cap = open_capture(self.source, self.open_timeout_ms, self.read_timeout_ms)
                if not cap.isOpened():
                    raise OSError("the stream did not open")
                self.health.state, self.health.error = "streaming", None
                log.info("camera %s: streaming from %s", self.camera_id, self.source)
                backoff = 1.0
                self._grab_loop(cap)
                raise OSError("the stream ended")
            except (OSError, cv2.error) as e:
                if self._stop.is_set():
                    break  # we closed it ourselves
                if self.health.state != "offline" or self.health.error != str(e):
                    log.warning("camera %s: %s", self.camera_id, e)
                self.health.state, self.health.error = "offline", str(e)
                with self._lock:  # no frame is coming for them: their receivers time out
                    self._waiting.clear()
            finally:
                if cap is not None:
                    cap.release()
            self.health.reconnects += 1
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def _grab_loop(self, cap: Any) -> None:
        while not self._stop.is_set():
            if not cap.grab():
                return
            now, wall = self.clock.monotonic(), self.clock.now()
            self._seq += 1
            self.health.frames += 1
            self.health.last_frame_at = now
            with self._lock:
                waiting, self._waiting = self._waiting, []
            if not (waiting or self.every_frame) and now - self._last_health < HEALTH_EVERY_S:
                continue  # no one needs pixels: skip the conversion
            ok, image = cap.retrieve()
            if not ok:
                return
            frame = Frame(image, wall, self._seq)
            self.latest = frame
            for deliver in waiting:
                try:
                    deliver(frame)
                except Exception:
                    log.exception("camera %s: a frame's receiver failed", self.camera_id)
            if now - self._last_health >= HEALTH_EVERY_S:
                self._look(image, now)

    def _look(self, image: Any, now: float) -> None:
        thumb, brightness, contrast = looks(image)
        h = self.health
        h.brightness, h.contrast = round(brightness, 1), round(contrast, 1)
        h.covered = is_covered(brightness, contrast)
        same = (
            self._thumb is not None
            and float(np.abs(thumb.astype(np.int16) - self._thumb).mean()) < 0.5
        )
        if not same:
            h.frozen_since = None
        elif h.frozen_since is None:
            h.frozen_since = self._last_health
        self._thumb = thumb.astype(np.int16)
        self._last_health = now
