"""Serial transport: one thread per reader, feeding a protocol parser; reopens a lost port.

pyserial with a short read timeout, so an idle port still lets the parser expire a partial
frame and the thread notice ``stop``. When the port disappears (USB reader unplugged,
socat gone) the read raises; the thread drops any partial frame (counted ``port_lost``),
closes the port and tries again every second until the device is back, without a restart.

Only the port's own faults close the port. An exception from the callback (the service's
handling of one frame) or from the parser (a bug) costs that frame, is counted
(``callback_errors``; the parser's ``parser_error`` reject) and logged with the reader id,
and reading goes on with the next frame. The thread beats (``last_beat``) on every turn of
its loops, idle or not, so ``alive()`` tells a thread that has ended or is stuck.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from drivers.clock import TIME, Clock
from drivers.protocol import Frame, Parser, Scan

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 0.05
REOPEN_EVERY_S = 1.0


class SerialReader:
    def __init__(
        self,
        reader_id: str,
        port: str,
        baudrate: int,
        parser: Parser,
        on_frame: Callable[[str, Frame | Scan, float, float], None],
        clock: Clock | None = None,
    ) -> None:
        self.reader_id = reader_id
        # stamps each read (the thread's own liveness, last_beat, stays on the time module)
        self.clock = clock or TIME
        self.port = port
        self.baudrate = baudrate
        self.parser = parser
        self.on_frame = on_frame  # (reader id, frame, monotonic time, wall time)
        self.state = "closed"
        self.error: str | None = None
        self.opens = 0
        self.last_frame_at: float | None = None  # monotonic
        # monotonic time of the thread's last loop turn (every READ_TIMEOUT_S while open,
        # every REOPEN_EVERY_S while the port is away); until it starts, when it was made
        self.last_beat = time.monotonic()
        self.callback_errors = 0  # frames whose callback raised (each frame lost, no more)
        self.last_callback_error: str | None = None
        self._logged: str | None = None  # the failure logged last: repeats are counted only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{reader_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def alive(self, within_s: float = 5.0) -> bool:
        """The thread runs and has turned its loop within ``within_s`` seconds (it is not
        stuck, e.g. in a callback that never returns)."""
        return self._thread.is_alive() and time.monotonic() - self.last_beat <= within_s

    def health(self) -> dict[str, Any]:
        """What readiness shows of this reader's transport."""
        return {
            "state": self.state,
            "error": self.error,
            "alive": self.alive(),
            "last_beat_age_s": round(time.monotonic() - self.last_beat, 1),
            "opens": self.opens,
            "frames": self.parser.accepted,
            "rejected": dict(self.parser.rejected),
            "callback_errors": self.callback_errors,
            "last_callback_error": self.last_callback_error,
        }

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.last_beat = time.monotonic()
                try:
                    with serial.Serial(
                        self.port, self.baudrate, timeout=READ_TIMEOUT_S, exclusive=True
                    ) as port:
                        self.state, self.error = "open", None
                        self.opens += 1
                        log.info("reader %s: %s open", self.reader_id, self.port)
                        self._read(port)
                except (serial.SerialException, OSError, ValueError) as e:
                    if self.state == "open" or self.error != str(e):
                        log.warning("reader %s: %s: %s", self.reader_id, self.port, e)
                    self.state, self.error = "closed", str(e)
                except Exception as e:  # a bug in the transport itself: seen, then retried
                    if self.state == "open" or self.error != repr(e):
                        log.exception("reader %s: %s failed", self.reader_id, self.port)
                    self.state, self.error = "closed", repr(e)
                if not self._stop.is_set():
                    self.parser.drop("port_lost")  # a frame cut off by the port going away
                self._stop.wait(REOPEN_EVERY_S)
        finally:  # however the thread ends, it never still says "open"
            self.state = "closed"
            if not self._stop.is_set():
                self.error = self.error or "the reader thread ended"
                log.error("reader %s: the reader thread ended", self.reader_id)

    def _read(self, port: serial.Serial) -> None:
        while not self._stop.is_set():
            self.last_beat = time.monotonic()
            data = port.read(max(1, port.in_waiting))
            now = self.clock.monotonic()
            # the wall clock is read with the bytes: staleness is judged from here
            wall = self.clock.now()
            try:
                frames = self.parser.feed(data, now)
            except Exception as e:  # a parser bug: these bytes are lost, the reader is not
                self.parser.reject("parser_error")
                self.parser.reset()
                self._log_failure("the parser failed", e)
                continue
            for frame in frames:
                self.last_frame_at = now
                self._deliver(frame, now, wall)

    def _deliver(self, frame: Frame | Scan, now: float, wall: float) -> None:
        """Hand one frame on; whatever the callback raises costs this frame only."""
        try:
            self.on_frame(self.reader_id, frame, now, wall)
        except Exception as e:
            self.callback_errors += 1
            self.last_callback_error = f"{type(e).__name__}: {e}"
            self._log_failure("handling a frame failed", e)
        else:
            self._logged = None

    def _log_failure(self, what: str, e: Exception) -> None:
        """Log a failure once, with its traceback; the same failure again right after is
        only counted (a card held on a reader repeats its frame ten times a second)."""
        key = f"{what}: {type(e).__name__}: {e}"
        if key != self._logged:
            log.exception("reader %s: %s", self.reader_id, what)
            self._logged = key
