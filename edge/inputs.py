"""What devices send, checked at the door: one model per message kind.

Every MQTT payload is parsed by its model before anything else sees it. pydantic's JSON
parser refuses nesting past its recursion limit instead of overflowing the stack, times
must be finite numbers in a sane range, and text has a bounded length; anything refused
comes back as a reason (``Refused``) that the caller counts, logs once and acknowledges.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

# Device times: UNIX seconds between 2000 and 2100; NaN, ±inf and -1e300 are refused.
EARLIEST_TS = 946_684_800.0
LATEST_TS = 4_102_444_800.0
Timestamp = Annotated[float, Field(ge=EARLIEST_TS, le=LATEST_TS, allow_inf_nan=False)]
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


class AlarmInputIn(_In):
    """``alarm-input/<source>``: ``{"type", "state": "active"|"normal", "location"?}``."""

    type: Annotated[str, StringConstraints(pattern=r"^[a-z_]{2,40}$")]
    state: Literal["active", "normal"]
    location: Text | None = None


class IntercomIn(_In):
    """``intercom/<id>/event``: ``{"event": call|answered|hangup|open_request|emergency}``."""

    event: Literal["call", "answered", "hangup", "open_request", "emergency"]


def parse(model: type[M], payload: bytes) -> M:
    """The payload as ``model``, or Refused naming the first problem."""
    try:
        return model.model_validate_json(payload)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
        raise Refused(f"{where}: {err['msg']}") from None


def read_monotonic(swipe: SwipeIn, mono: float, wall: float) -> float:
    """When a swipe was read, on the monotonic clock: its own ``ts`` if it carries one.

    A reader that stamps its swipes is protected from replays of a broker's backlog: a
    swipe queued for minutes arrives old and never opens the barrier. A ``ts`` ahead of
    this clock counts as now."""
    if swipe.ts is None:
        return mono
    return mono - max(0.0, wall - swipe.ts)
