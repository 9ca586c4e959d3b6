"""The clock a driver stamps a read with: wall time and monotonic time.

The service passes its own (``edge.clock``), so a read's stamps are on the clock the
service judges them by; drivers do not import ``edge``, so this is the shape they accept.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall time, UNIX seconds."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back."""
        ...


class TimeModule:
    """The time module as a Clock: what a driver uses when given none."""

    now = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)


TIME = TimeModule()
