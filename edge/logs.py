"""What untrusted input may put in the log: a bounded, masked line, once a minute per kind.

A device or a client controls some of the text of a refusal (a topic, a card string, a
frame). Unchecked, a 1 MB card string is a 1 MB log line, a flood of poison messages is a
log line each, and a card number typed or sent whole is kept in plain text wherever the
journal goes. ``scrub`` bounds and masks such text; ``OncePerMinute`` passes the first
record of each kind a minute and counts the rest.
"""

from __future__ import annotations

import logging
import os
import re
import threading

MAX_TEXT = 120  # characters of an untrusted text kept in a log line
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NUMBERS = re.compile(r"[0-9A-Fa-f]{6,}")  # a card number, decimal or hex, or part of one
# (the serial reader logs a repeated failure once by itself, and counts every one)
FLOODED = ("edge.service", "edge.control", "edge.mqtt", "edge.api", "edge.api.flood",
           "uvicorn.error", "asyncio")  # fmt: skip


def scrub(text: object) -> str:
    """``text`` fit for a log: at most MAX_TEXT characters, every run of 6 or more hex or
    decimal digits shown as its last 4 (``****6C3A``), control characters escaped."""
    s = str(text)
    clipped = len(s) > MAX_TEXT
    s = _CONTROL.sub(lambda m: f"\\x{ord(m[0]):02x}", s[:MAX_TEXT])  # no forged log lines
    s = _NUMBERS.sub(lambda m: "*" * (len(m[0]) - 4) + m[0][-4:], s)
    return f"{s}… ({len(str(text))} characters)" if clipped else s


class OncePerMinute(logging.Filter):
    """Passes the first record of each kind a minute, then says how many it held back: a
    flood of bad requests is one line a minute, not 140 MB of tracebacks."""

    def __init__(self, window_s: float = 60.0) -> None:
        super().__init__()
        self.window_s = window_s
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))  # the template: a flood varies only its args
        now = record.created
        with self._lock:
            since, held = self._seen.get(key, (-self.window_s, 0))
            if now - since < self.window_s:
                self._seen[key] = (since, held + 1)
                return False
            if len(self._seen) > 1000:  # bounded: forget the kinds of an old flood
                self._seen.clear()
            self._seen[key] = (now, 0)
        if held:  # the count, without another traceback
            record.msg = f"{record.msg} (and {held} more like it in the last minute)"
            record.exc_info = None
        return True


def quiet_floods() -> None:
    """Put a OncePerMinute on the loggers untrusted input can make speak."""
    for name in FLOODED:
        logger = logging.getLogger(name)
        if not any(isinstance(f, OncePerMinute) for f in logger.filters):
            logger.addFilter(OncePerMinute())


# syslog priorities, by logging level: journald reads a "<N>" at the start of a line written
# to it as the entry's priority (sd-daemon(3)), so `journalctl -p warning` finds refusals
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}  # fmt: skip


class JournalFormatter(logging.Formatter):
    """One journal entry per event: the priority prefix, the component (the logger's name)
    and the message, a traceback folded onto the same line (journald timestamps it)."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).replace("\n", " | ")
        return f"<{_PRIORITY.get(record.levelno, 6)}>{line}"


def configure(level: int) -> None:
    """The program's logging: under systemd (journald on stderr), entries with priorities
    and no second timestamp; on a terminal, a time and a level on each line."""
    handler = logging.StreamHandler()
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("alembic", "httpx", "apprise"):  # apprise: our own lines say what was sent
        logging.getLogger(noisy).setLevel(logging.WARNING)
