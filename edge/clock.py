"""The one clock: wall time (what is recorded and shown) and monotonic time (what is
measured), passed in to everything that asks "when", so a test can fix it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> float:
        """Wall time, UNIX seconds: what records carry."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back: ages and deadlines."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class FixedClock:
    """A clock that moves only when told (tests)."""

    wall: float
    mono: float = 0.0

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


def iso(t: float | None, tz: ZoneInfo, timespec: str = "seconds") -> str | None:
    """A stored UNIX time in the site's zone; never raises, so one bad row (a pass valid
    until year 10000, stored before the doors checked, or by another program) cannot take
    a whole list down with it (issue 11, finding 7). A time past either end of the calendar
    shows as that end, 9999-12-31T23:59:59 or 0001-01-01T00:00:00, which reads as what it
    means ("forever", "always") and still parses as a time; NaN or a non-number as null."""
    if t is None:
        return None
    try:
        return datetime.fromtimestamp(t, tz).isoformat(timespec=timespec)
    except (OverflowError, ValueError, OSError, TypeError):
        pass
    if not isinstance(t, int | float) or t != t:  # NaN (math.isnan refuses a huge int)
        return None
    end = datetime.max if t > 0 else datetime.min
    return end.replace(tzinfo=tz).isoformat(timespec=timespec)
