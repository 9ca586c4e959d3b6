"""Shifts (班次): which shift a moment belongs to. Pure; the shifts are settings because the
manuals disagree (08:00-16:30 / 15:30-24:00 / 23:30-08:00 by default, overlapping so the
incoming shift arrives early)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from edge.config import ShiftCfg


@dataclass(frozen=True)
class ShiftInstance:
    name: str
    start: float
    end: float


def instances_at(shifts: Sequence[ShiftCfg], now: float, tz: ZoneInfo) -> list[ShiftInstance]:
    """Every shift on duty at ``now``, the one ending first first (two during an overlap).

    A shift whose end is at or before its start ends the next day: "15:30-24:00" (read as
    15:30-00:00) ends at midnight, "08:00-08:00" lasts 24 hours; the reading a pass's daily
    window gets (edge.decision.in_window), from the same parser."""
    local = datetime.fromtimestamp(now, tz)
    found = []
    for sh in shifts:
        for days_back in (1, 0):
            day = (local - timedelta(days=days_back)).date()
            start = datetime.combine(day, sh.start, tz)
            end_day = day + timedelta(days=1) if sh.end <= sh.start else day
            end = datetime.combine(end_day, sh.end, tz)
            if start.timestamp() <= now < end.timestamp():
                found.append(ShiftInstance(sh.name, start.timestamp(), end.timestamp()))
    return sorted(found, key=lambda s: s.end)


def outgoing(shifts: Sequence[ShiftCfg], now: float, tz: ZoneInfo) -> ShiftInstance:
    """The shift being handed over at ``now``: of those on duty, the one ending first."""
    on_duty = instances_at(shifts, now, tz)
    if not on_duty:  # a gap in the roster: the shift that ended last
        return max(
            (s for back in range(1, 25) for s in instances_at(shifts, now - back * 3600, tz)),
            key=lambda s: s.end,
        )
    return on_duty[0]
