"""The one clock: wall time (what is recorded and shown) and monotonic time (what is
measured), passed in to everything that asks "when", so a test can fix it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol


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
