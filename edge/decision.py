"""The gate decision: a pure function of the card's passes, the time, the gate and the rules.

No I/O and no clock: the caller looks the passes up and passes ``now`` in. This module is
the one place that knows the deny reasons and the order they are checked in (DOMAIN.md):
known → not revoked/confiscated → inside validity → a worker's renovation permit in force →
inside daily hours → allowed gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo


class Reason(StrEnum):
    OK = "ok"
    UNKNOWN_CREDENTIAL = "unknown_credential"
    REVOKED = "revoked"
    CONFISCATED = "confiscated"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    OUTSIDE_HOURS = "outside_hours"
    WRONG_GATE = "wrong_gate"
    SLIP_USED = "slip_used"
    SLIP_REJECTED = "slip_rejected"
    SLIP_CANCELLED = "slip_cancelled"
    MANUAL_OVERRIDE = "manual_override"
    INVALID_QR = "invalid_qr"
    PERMIT_SUSPENDED = "permit_suspended"
    PERMIT_CLOSED = "permit_closed"
    GATE_LOCKED = "gate_locked"


# What each reason means, for the README and the API; one place, so they cannot drift.
REASON_TEXT: dict[Reason, str] = {
    Reason.OK: "granted",
    Reason.UNKNOWN_CREDENTIAL: "no pass is registered for this card",
    Reason.REVOKED: "the pass was revoked (or reported lost)",
    Reason.CONFISCATED: "the pass was confiscated at a gate",
    Reason.EXPIRED: "the pass's validity has ended",
    Reason.NOT_YET_VALID: "the pass's validity has not started",
    Reason.OUTSIDE_HOURS: "outside the pass's daily entry window (workers: 07:00-19:00 by default)",
    Reason.WRONG_GATE: "the pass is not valid at this gate",
    Reason.SLIP_USED: "the goods release slip was released already (a slip releases once)",
    Reason.SLIP_REJECTED: "the goods release slip was rejected at a gate",
    Reason.SLIP_CANCELLED: "the goods release slip was cancelled by the office",
    Reason.MANUAL_OVERRIDE: "a guard opened the barrier by hand, with a reason on record",
    Reason.INVALID_QR: "a QR pass the gate refuses: its office signature does not verify "
    "(forged, altered, or signed with a key this gate does not hold), or it breaks a QR rule "
    "(not a temporary pass, longer than 72 h, this gate's clock behind the office's, no "
    "entries left today); the scan message and the log say which",
    Reason.PERMIT_SUSPENDED: "the worker's renovation permit is suspended (a stop-work order, "
    "停工整顿) until the unit passes re-inspection",
    Reason.PERMIT_CLOSED: "the worker's renovation permit is closed, or its period has ended",
    Reason.GATE_LOCKED: "the control room has locked the gate (a robbery, an incident): only "
    "staff passes open it until it is unlocked",
}

KINDS = ("temporary", "worker", "resident", "staff")
# A gate's mode (edge.modes): held open (a fire: the lane kept open for the engines; every
# passage still recorded, the decision unchanged), or locked (a robbery: only the exempt
# kinds' passes open it)
MODES = ("normal", "held_open", "locked")
LOCK_EXEMPT = frozenset({"staff"})
STATUSES = ("active", "revoked", "confiscated")


@dataclass(frozen=True, slots=True)
class PassView:
    """What the decision needs to know of a pass. Times are UNIX seconds."""

    id: str
    kind: str
    status: str
    valid_from: float
    valid_until: float | None
    issued_at: float = 0.0
    gates: frozenset[str] | None = None  # None: every gate
    # (start, end) as edge.config.parse_hours gives it; see in_window. None: the kind's default
    daily_window: tuple[time, time] | None = None
    # a worker's renovation permit (装修许可证) as the gate holds it: its status (active |
    # suspended | closed) and the end of its period; None: the pass names none, or one
    # this gate has not heard of (it was issued against it: the office's word stands)
    permit_status: str | None = None
    permit_until: float | None = None


@dataclass(frozen=True, slots=True)
class SiteRules:
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    # Default daily entry windows per kind; a pass's own window overrides its kind's.
    kind_hours: dict[str, tuple[time, time]] = field(
        default_factory=lambda: {"worker": (time(7, 0), time(19, 0))}
    )


@dataclass(frozen=True, slots=True)
class Decision:
    granted: bool
    reason: Reason
    pass_: PassView | None


def in_window(t: time, window: tuple[time, time]) -> bool:
    """Whether the local time of day ``t`` is inside a daily window (start, end).

    The window runs from ``start`` (inclusive) to the next ``end`` (exclusive): an end
    before the start crosses midnight (22:00-06:00), an end of 00:00 is midnight at the end
    of the day ("19:00-24:00" is (19:00, 00:00)), and an end equal to the start is the whole
    day ("00:00-24:00" is (00:00, 00:00)); the same reading as a shift's hours
    (edge.shifts), from the same parser (edge.config.parse_hours).
    """
    start, end = window
    if start < end:
        return start <= t < end
    return t >= start or t < end  # across midnight; all day when start == end


def check_pass(p: PassView, now: float, gate: str, rules: SiteRules) -> Reason:
    """The first failing check for one pass, or OK."""
    if p.status == "revoked":
        return Reason.REVOKED
    if p.status == "confiscated":
        return Reason.CONFISCATED
    if p.status != "active":
        return Reason.REVOKED  # an unknown status never grants
    if now < p.valid_from:
        return Reason.NOT_YET_VALID
    if p.valid_until is not None and now >= p.valid_until:
        return Reason.EXPIRED
    if p.kind == "worker" and p.permit_status is not None:
        if p.permit_status == "suspended":
            return Reason.PERMIT_SUSPENDED
        if p.permit_status != "active" or (p.permit_until is not None and now >= p.permit_until):
            return Reason.PERMIT_CLOSED  # closed, ended, or a status never heard of
    window = p.daily_window or rules.kind_hours.get(p.kind)
    if window is not None:
        local = datetime.fromtimestamp(now, rules.tz).time()
        if not in_window(local, window):
            return Reason.OUTSIDE_HOURS
    if p.gates is not None and gate not in p.gates:
        return Reason.WRONG_GATE
    return Reason.OK


def decide(passes: Sequence[PassView], now: float, gate: str, rules: SiteRules,
           mode: str = "normal", exempt: frozenset[str] = LOCK_EXEMPT) -> Decision:  # fmt: skip
    """Grant if any of the card's passes grants; else deny with the newest pass's reason.

    A card can carry an old pass beside its renewal, so every pass is checked; the reason
    shown on a deny is the newest pass's, since that is the one the guard will ask about.
    At a locked gate a pass that would grant grants only if its kind is ``exempt``; else
    the card is denied ``gate_locked``. Held open changes nothing here: every passage is
    decided and recorded as usual, the barrier is simply up.
    """
    if not passes:
        return Decision(False, Reason.UNKNOWN_CREDENTIAL, None)
    locked_out = None
    for p in passes:
        if check_pass(p, now, gate, rules) is Reason.OK:
            if mode == "locked" and p.kind not in exempt:
                locked_out = p
                continue
            return Decision(True, Reason.OK, p)
    if locked_out is not None:
        return Decision(False, Reason.GATE_LOCKED, locked_out)
    newest = max(passes, key=lambda p: (p.issued_at, p.valid_from))
    return Decision(False, check_pass(newest, now, gate, rules), newest)
