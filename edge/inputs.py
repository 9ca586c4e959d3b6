"""What devices send, checked at the door: one model per message kind.

Every MQTT payload is parsed by its model before anything else sees it. pydantic's JSON
parser refuses nesting past its recursion limit instead of overflowing the stack, times
must be finite numbers in a sane range, and text has a bounded length; anything refused
comes back as a reason (``Refused``) that the caller counts, logs once and acknowledges.

A swipe's ``ts`` says how old the read is, and a read older than ``stale_after_s`` never
opens the barrier. A ``ts`` ahead of the node's clock cannot be aged at all: counted as
"now", a swipe stamped an hour ahead stays fresh for an hour (held in a broker's backlog
or replayed, it opens when a fresh one would not). So a ``ts`` more than FUTURE_SKEW_S
ahead of the node's clock is refused: the reader's clock is wrong, or the swipe forged.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
)

# Device times: UNIX seconds between 2000 and 2100; NaN, ±inf and -1e300 are refused.
EARLIEST_TS = 946_684_800.0
LATEST_TS = 4_102_444_800.0
Timestamp = Annotated[float, Field(ge=EARLIEST_TS, le=LATEST_TS, allow_inf_nan=False)]
# How far a device's ts may run ahead of the node's clock. Clocks kept by NTP agree to a
# few milliseconds; this only absorbs a reader's rounding and a little drift. Within it a
# swipe counts as read "now", so it opens at most this much later than a fresh one would.
FUTURE_SKEW_S = 1.0
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]

INTERCOM_EVENTS = ("call", "answered", "hangup", "open_request", "emergency")


class Refused(ValueError):
    """A device message that can never be valid; the text names the problem."""


class _In(BaseModel):
    # unknown keys are ignored: a device firmware that adds a field keeps working
    model_config = ConfigDict(extra="ignore", frozen=True)


M = TypeVar("M", bound=_In)


class SwipeIn(_In):
    """``reader/<id>/swipe``: ``{"card": "...", "ts"?: UNIX seconds}``."""

    card: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
    ts: Timestamp | None = None

    @field_validator("ts")
    @classmethod
    def _not_ahead(cls, ts: float | None, info: ValidationInfo) -> float | None:
        """A ts from the future is no read time: refused (see the module's docstring)."""
        if ts is None:
            return ts
        now = (info.context or {}).get("now")
        ahead = ts - (time.time() if now is None else now)
        if ahead > FUTURE_SKEW_S:
            raise ValueError(
                f"{ahead:.1f} s ahead of this node's clock (at most {FUTURE_SKEW_S:g} s): "
                "the reader's clock is wrong, or the swipe is forged"
            )
        return ts


class AlarmInputIn(_In):
    """``alarm-input/<source>``: ``{"type", "state": "active"|"normal", "location"?}``."""

    type: Annotated[str, StringConstraints(pattern=r"^[a-z_]{2,40}$")]
    state: Literal["active", "normal"]
    location: Text | None = None


class ContactIn(_In):
    """``gate/<id>/contact``: ``{"state": "open"|"closed"}``, the door or barrier's position."""

    state: Literal["open", "closed"]


class IntercomIn(_In):
    """``intercom/<id>/event``: ``{"event": call|answered|hangup|open_request|emergency}``."""

    event: Literal["call", "answered", "hangup", "open_request", "emergency"]


class PatrolReadIn(_In):
    """``patrol/<device>/read``: ``{"tag", "guard"?, "ts"?}`` from a handheld or a fixed
    patrol reader (``ts``: when it was read, if it was stored a while)."""

    tag: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z._:-]{1,64}$")]
    guard: Text | None = None
    ts: Timestamp | None = None


def parse(model: type[M], payload: bytes, now: float | None = None) -> M:
    """The payload as ``model``, or Refused naming the first problem. ``now`` is the node's
    wall clock (UNIX seconds) that device times are judged by; the time module's if None."""
    try:
        return model.model_validate_json(payload, context=None if now is None else {"now": now})
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
        raise Refused(f"{where}: {err['msg']}") from None


def read_monotonic(swipe: SwipeIn, mono: float, wall: float) -> float:
    """When a swipe was read, on the monotonic clock: its own ``ts`` if it carries one.

    A reader that stamps its swipes is protected from replays of a broker's backlog: a
    swipe queued for minutes arrives old and never opens the barrier. A ``ts`` ahead of
    this clock (by at most FUTURE_SKEW_S, or parse refused it) counts as now: never fresher
    than a read taken on arrival."""
    if swipe.ts is None:
        return mono
    return mono - max(0.0, wall - swipe.ts)
