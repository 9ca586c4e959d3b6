"""Serial transport: one thread per reader, feeding a protocol parser; reopens a lost port.

pyserial with a short read timeout, so an idle port still lets the parser expire a partial
frame and the thread notice ``stop``. When the port disappears (USB reader unplugged,
socat gone) the read raises; the thread closes it and tries again every second until the
device is back, without a restart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import serial

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
    ) -> None:
        self.reader_id = reader_id
        self.port = port
        self.baudrate = baudrate
        self.parser = parser
        self.on_frame = on_frame  # (reader id, frame, monotonic time, wall time)
        self.state = "closed"
        self.error: str | None = None
        self.opens = 0
        self.last_frame_at: float | None = None  # monotonic
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"reader-{reader_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while not self._stop.is_set():
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
            self.parser.buf.clear()
            self._stop.wait(REOPEN_EVERY_S)
        self.state = "closed"

    def _read(self, port: serial.Serial) -> None:
        while not self._stop.is_set():
            data = port.read(max(1, port.in_waiting))
            now = time.monotonic()
            # the wall clock is read with the bytes: staleness is judged from here
            wall = time.time()
            for frame in self.parser.feed(data, now):
                self.last_frame_at = now
                self.on_frame(self.reader_id, frame, now, wall)
