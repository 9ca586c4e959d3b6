"""Issuing passes: the kinds' limits, checked before anything is written (pure).

临时出入证 temporary: at most 3 days, counted as 72 elapsed hours (across a daylight saving
change too). 出入证 worker (renovation): at most 3 calendar months (in the node's time
zone, to the same local time of day), tied to a unit and its renovation permit, ¥50
deposit and ¥5 fee recorded.
Residents' and staff cards have no limit.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from edge.decision import KINDS
from edge.errors import DomainError

TEMPORARY_MAX = timedelta(hours=72)  # elapsed time, never local calendar arithmetic
WORKER_MAX_MONTHS = 3

# The times a gate takes at any door (a pass's validity, a check's moment, a slip's window,
# a list's bounds). Far outside them nothing is meant: year 9999 is "forever" typed by hand,
# year 1 a default, and past year 9999 in the site's zone Python cannot show the time at all,
# so such a pass broke every list it was in (issue 11, finding 7). The bounds are the
# years' first and last moments in the earliest and latest zones on Earth (UTC+14, UTC-12),
# so any local time from 2000 to 2099 is taken, wherever the site is.
FIRST_YEAR, LAST_YEAR = 2000, 2099
EARLIEST = (datetime(FIRST_YEAR, 1, 1, tzinfo=UTC) - timedelta(hours=14)).timestamp()
LATEST = (datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC) + timedelta(hours=12)).timestamp()


class PassError(DomainError):
    """An issue request the rules refuse; the message says why."""


def add_months(t: datetime, months: int) -> datetime:
    """Calendar months, clamping the day: 30 Nov + 3 months is 28/29 Feb."""
    month0 = t.month - 1 + months
    year, month = t.year + month0 // 12, month0 % 12 + 1
    day = min(t.day, calendar.monthrange(year, month)[1])
    return t.replace(year=year, month=month, day=day)


@dataclass(frozen=True, slots=True)
class Validity:
    valid_from: float
    valid_until: float | None


def in_range(t: float) -> bool:
    """Whether a UNIX time is one a gate takes (FIRST_YEAR to LAST_YEAR). Comparisons
    only: NaN compares false, and a huge int compares exactly where math.isfinite throws."""
    return isinstance(t, int | float) and EARLIEST <= t <= LATEST


def resolve_validity(
    kind: str,
    now: float,
    tz: ZoneInfo,
    valid_from: float | None = None,
    valid_until: float | None = None,
) -> Validity:
    """Fill in a kind's default validity and refuse anything beyond its limit."""
    if kind not in KINDS:
        raise PassError(f"unknown pass kind {kind!r} (one of {', '.join(KINDS)})")
    # every caller's times, not only parse_time's: the office, a lent visitor's card
    for field, t in (("valid_from", valid_from), ("valid_until", valid_until)):
        if t is not None and not in_range(t):
            raise PassError(f"{field}: must be within the years {FIRST_YEAR} to {LAST_YEAR}")
    start = now if valid_from is None else valid_from
    start_dt = datetime.fromtimestamp(start, tz)
    if kind == "temporary":
        # UNIX seconds, not the local datetime: local + 3 days is 71 or 73 hours when a
        # daylight saving change falls inside it
        limit = start + TEMPORARY_MAX.total_seconds()
        what = "a temporary pass is valid for at most 3 days (72 hours)"
    elif kind == "worker":
        limit = add_months(start_dt, WORKER_MAX_MONTHS).timestamp()
        what = "a worker pass is valid for at most 3 months"
    else:
        limit, what = None, ""
    until = limit if valid_until is None else valid_until
    if until is not None and until <= start:
        raise PassError("valid_until must be after valid_from")
    if limit is not None and until is not None and until > limit:
        shown = datetime.fromtimestamp(limit, tz).isoformat(timespec="minutes")
        raise PassError(f"{what}: valid_until may be at most {shown}")
    return Validity(start, until)


def parse_time(text: str, tz: ZoneInfo) -> float:
    """ISO 8601; without an offset, in the node's time zone (CONTRACT.md); only from
    FIRST_YEAR to LAST_YEAR, the one check every door that takes a time shares."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise PassError(f"{text!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz)
    # the year as written (2100-01-01T00:00+08:00 is 2100 to whoever typed it), and the
    # instant inside the widest window (a long way from UTC, the year can still be fine)
    if not FIRST_YEAR <= t.year <= LAST_YEAR or not in_range(stamp := t.timestamp()):
        raise PassError(f"{text!r} is outside the years {FIRST_YEAR} to {LAST_YEAR}")
    return stamp


def parse_end(text: str, tz: ZoneInfo) -> float:
    """A validity's end as ``parse_time`` reads it, except that a date alone is the end of
    that day in the node's zone: "until 2027-02-23" includes the 23rd (as midnight at its
    start it lost the last working day)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return parse_time(text, tz)
    parse_time(text, tz)  # the years, as written: 2099-12-31 is in them, ending or not
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).timestamp()
