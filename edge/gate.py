"""The gate pipeline: a card read becomes a decision on disk, then its effects.

Reads arrive from reader threads and the MQTT client; each is a job for the one writer
(edge.writer). In the writer: debounce, look the card's passes up, decide (edge.decision,
pure), insert the event and its outbox row. Only after the commit: acknowledge the MQTT
swipe, publish the decision, and on a fresh grant command the barrier open.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from datetime import time as TimeOfDay
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from edge import alarms, dutylog, modes, outbox, store, views
from edge.bus import Bus
from edge.cards import CardId
from edge.clock import Clock, SystemClock
from edge.config import Config, ConfigError, ReaderCfg, parse_hours
from edge.decision import Decision, PassView, Reason, SiteRules, decide
from edge.errors import DomainError
from edge.models import AccessEvent, Pass
from edge.writer import Command, Outcome, Snap, Writer, job_level

if TYPE_CHECKING:
    from edge.cameras import Cameras
    from edge.control import ControlRoom

log = logging.getLogger(__name__)
_PASS_COLUMNS = ", ".join("p." + c for c in store.select_list(
    Pass, "id", "kind", "status", "valid_from", "valid_until", "issued_at", "gates",
    "daily_window", "name",
).split(", "))  # fmt: skip


@dataclass(frozen=True, slots=True)
class CardRead:
    reader: ReaderCfg
    card: CardId | None  # None: a scanned QR pass (``qr``)
    mono: float  # when the read was taken (monotonic): staleness is measured from here
    source: str  # serial | mqtt
    raw: bytes | None = None
    ack: Callable[[], None] | None = None  # MQTT: acknowledge once the decision is on disk
    replayed: bool = False  # redelivered after a crash: its age is unknown, so it is stale
    # the verified payload of an office-signed pass (sync.qr); with no card either, a code
    # that failed verification
    qr: dict[str, Any] | None = None


def site_rules(cfg: Config) -> SiteRules:
    return SiteRules(tz=cfg.tz, kind_hours={"worker": cfg.rules.worker_hours})


NEVER = (TimeOfDay(0, 0), TimeOfDay(0, 0, 0, 1))  # a microsecond a day: outside_hours


@lru_cache(maxsize=256)
def _window(text: str) -> tuple[TimeOfDay, TimeOfDay]:
    """A pass's daily window. One stored before the parser was strict (``25:00``) or
    signed into a QR that way is no window at all: it never admits (fail closed), rather
    than failing the swipe's job and leaving the read without a decision."""
    try:
        return parse_hours(text, "daily_window")
    except ConfigError:
        log.warning("a pass has an impossible daily window %r: it never admits", text)
        return NEVER


@lru_cache(maxsize=256)
def _gates(text: str) -> frozenset[str]:
    return frozenset(g.strip() for g in text.split(",") if g.strip())


def lookup(conn: sqlite3.Connection, card_key: int) -> list[tuple[PassView, str]]:
    """The card's passes with their holders' names."""
    # a pass still being imported ("staged") is not there yet for the gate
    # with the worker's renovation permit as this gate holds it (none: not heard of)
    rows = conn.execute(
        f"SELECT {_PASS_COLUMNS}, r.status, r.valid_until FROM passes p "
        "LEFT JOIN permits r ON r.permit_no = p.permit_no "
        "WHERE p.card_key = ? AND p.status != 'staged'",
        (card_key,),
    )
    return [
        (
            PassView(
                id=r[0],
                kind=r[1],
                status=r[2],
                valid_from=r[3],
                valid_until=r[4],
                issued_at=r[5],
                gates=_gates(r[6]) if r[6] else None,
                daily_window=_window(r[7]) if r[7] else None,
                permit_status=r[9],
                permit_until=r[10],
            ),
            r[8],
        )
        for r in rows
    ]


def check_qr(
    conn: sqlite3.Connection, payload: dict[str, Any], now: float, gate: str, rules: SiteRules
) -> tuple[Decision, str | None]:
    """The decision on a verified office-signed pass. It may have been issued after this
    gate last synced; but a revocation or confiscation the gate knows of still wins."""
    local = conn.execute("SELECT status FROM passes WHERE id = ?", (payload["p"],)).fetchone()
    view = PassView(
        id=payload["p"],
        kind=payload["k"],
        status=local[0] if local else "active",
        valid_from=payload["f"],
        valid_until=payload["t"],
        issued_at=payload["f"],
        gates=_gates(payload["g"]) if payload.get("g") else None,
        daily_window=_window(payload["w"]) if payload.get("w") else None,
    )
    return decide([view], now, gate, rules, modes.mode_of(conn, gate, now)), payload.get("n")


def check(
    conn: sqlite3.Connection, card: CardId, now: float, gate: str, rules: SiteRules
) -> tuple[Decision, str | None]:
    """The decision the gate would make, and the holder's name; records nothing."""
    found = lookup(conn, card.key)
    decision = decide([p for p, _ in found], now, gate, rules, modes.mode_of(conn, gate, now))
    names = {p.id: name for p, name in found}
    return decision, names.get(decision.pass_.id) if decision.pass_ else None


@dataclass(slots=True)
class Event:
    """An access event as recorded: a decision on a read, or a guard's manual opening."""

    event_id: str
    ts: float
    gate: str
    reader: str | None
    direction: str | None
    granted: bool
    reason: str
    pass_id: str | None
    pass_kind: str | None
    card: CardId | None
    holder: str | None
    source: str  # serial | mqtt | override
    raw: str | None = None
    read_age_ms: int | None = None
    stale: bool = False
    by: str | None = None
    notes: str | None = None


class ReadJob:
    __slots__ = ("gate", "read")

    def __init__(self, gate: GatePipeline, read: CardRead) -> None:
        self.gate, self.read = gate, read

    def run(self, conn: sqlite3.Connection) -> Outcome:
        out = Outcome()
        try:
            return self.gate.record(conn, self.read, out)
        except BaseException:
            out.rolled_back()  # a debounce mark made before the failure is not kept
            raise

    def done(self, outcome: Outcome) -> None:
        pass

    def failed(self, error: BaseException) -> None:
        """Counted, never silent. A read the database could not take is left unacknowledged
        for MQTT to deliver again once it can; one that fails for a reason of its own would
        fail again, so it is acknowledged and counted instead of holding an in-flight slot."""
        self.gate.counts["record_failed"] += 1
        self.gate.counts[f"record_failed:{self.read.source}"] += 1
        if self.read.ack is not None and job_level(error):
            self.read.ack()


class GatePipeline:
    def __init__(
        self,
        cfg: Config,
        writer: Writer,
        bus: Bus,
        epoch: int,
        control: ControlRoom | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.cfg = cfg
        self.rules = site_rules(cfg)
        self.writer = writer
        self.bus = bus
        self.epoch = epoch
        self.control = control
        self.cameras: Cameras | None = None  # set by the service when it has cameras
        clock = clock or SystemClock()
        self.clock, self.monotonic = clock.now, clock.monotonic
        self.counts: Counter[str] = Counter()
        # (reader, card) → last sighting, oldest first; writer thread only
        self._last_seen: dict[tuple[str, int], float] = {}
        # (gate, card) → times of its recent denials; writer thread only
        self._denials: dict[tuple[str, int], deque[float]] = {}
        self._debounce_horizon = max((r.debounce_ms for r in cfg.readers), default=0) / 1000

    def submit(self, read: CardRead) -> None:
        self.writer.submit(ReadJob(self, read))

    def _debounced(self, read: CardRead, out: Outcome) -> bool:  # a card read
        """Same card on the same reader within the window of its *last* sighting.

        Measured from the last sighting, so a card left on the reader never re-triggers,
        while a deliberate re-tap after lifting it does. The sighting is noted at once (the
        next read in the same batch must see it) and forgotten again if the job rolls back.
        """
        assert read.card is not None
        key = (read.reader.id, read.card.key)
        seen = self._last_seen
        last = seen.get(key)
        out.set_now(seen, key, read.mono)  # put back as it was if the job rolls back
        seen[key] = seen.pop(key)  # moved to the end: the dict stays ordered by last sighting
        # forget sightings too old to debounce anything: from the oldest end, O(1) a read
        horizon = read.mono - self._debounce_horizon
        while seen:
            oldest = next(iter(seen))
            if seen[oldest] >= horizon:
                break
            del seen[oldest]
        return last is not None and 0 <= read.mono - last < read.reader.debounce_ms / 1000

    def _decide(
        self, conn: sqlite3.Connection, read: CardRead, now: float
    ) -> tuple[Decision, str | None, CardId | None]:
        gate = read.reader.gate
        if read.card is not None:
            return (*check(conn, read.card, now, gate, self.rules), read.card)
        if read.qr is None or "p" not in read.qr:  # forged, altered, or not a pass
            return Decision(False, Reason.INVALID_QR, None), None, None
        payload = read.qr
        card = CardId(int(payload["c"], 16)) if payload.get("c") else None
        return (*check_qr(conn, payload, now, gate, self.rules), card)

    def record(self, conn: sqlite3.Connection, read: CardRead, out: Outcome) -> Outcome:
        if read.ack is not None:
            out.acks.append(read.ack)  # acknowledged only once the decision is on disk
        if read.card is not None and self._debounced(read, out):
            out.count(self.counts, "debounced")
            return out
        now = self.clock()
        age = max(0.0, self.monotonic() - read.mono)
        decision, holder, card = self._decide(conn, read, now)
        p = decision.pass_
        event = Event(
            event_id=store.new_id(), ts=now, gate=read.reader.gate, reader=read.reader.id,
            direction=read.reader.direction, granted=decision.granted,
            reason=decision.reason.value, pass_id=p.id if p else None,
            pass_kind=p.kind if p else None, card=card, holder=holder, source=read.source,
            raw=read.raw.hex() if read.raw else None, read_age_ms=int(age * 1000),
            stale=read.replayed or age > self.cfg.rules.stale_after_s,
        )  # fmt: skip
        self._write(conn, event, out, opens_until=read.mono + self.cfg.rules.stale_after_s)
        out.decided.append(read.mono)
        if not decision.granted and card is not None:
            self._repeated_denial(conn, event, card, out)
        return out

    def _repeated_denial(
        self, conn: sqlite3.Connection, e: Event, card: CardId, out: Outcome
    ) -> None:
        """One card denied again and again at a gate: someone is trying; tell the control room."""
        if self.control is None:
            return
        rules = self.cfg.alarms
        window = rules.repeated_denials_window_s
        key = (e.gate, card.key)
        denials = self._denials
        recent = [t for t in denials.get(key, ()) if t >= e.ts - window]
        recent.append(e.ts)
        out.set_now(denials, key, deque(recent))  # put back as it was if the job rolls back
        denials[key] = denials.pop(key)  # moved to the end: the map is ordered by last denial
        # forget cards not denied within the window, from the oldest end: O(1) a denial
        while denials:
            oldest = next(iter(denials))
            if denials[oldest][-1] >= e.ts - window:
                break
            del denials[oldest]
        if len(recent) < rules.repeated_denials:
            return
        alarm_id = alarms.raise_alarm(
            # masked: the source goes out on MQTT and to every console (two cards with the
            # same last 4 denied at one gate within the window fold into one alarm)
            conn, rules, "repeated_denial", f"gate:{e.gate}:card:{card.masked}", e.ts,
            gate=e.gate, location=f"gate {e.gate}",
            notes=f"card {card.masked} denied {len(recent)} times ({e.reason})",
        )  # fmt: skip
        out.merge(self.control.announce(conn, [alarm_id]))

    def override(
        self, gate: str, reason: str, by: str, card: CardId | None = None, holder: str | None = None
    ) -> dict[str, Any]:
        """A guard opens the barrier by hand: recorded with who and why, then opened.

        The answer says whether the ``open`` really went out (``opened``): with the broker
        away the opening is recorded, the guard is told, and the barrier stays shut."""
        self.cfg.known_gate(gate)
        if not reason.strip():
            raise DomainError("reason: a manual opening needs its reason")
        event = Event(
            event_id=store.new_id(), ts=self.clock(), gate=gate, reader=None, direction=None,
            granted=True, reason=Reason.MANUAL_OVERRIDE.value, pass_id=None, pass_kind=None,
            card=card, holder=holder, source="override", by=by, notes=reason.strip(),
        )  # fmt: skip
        asked = self.monotonic()

        def job(conn: sqlite3.Connection) -> Outcome:
            out = Outcome()
            self._write(conn, event, out, opens_until=asked + self.cfg.rules.stale_after_s)
            dutylog.add(
                conn, event.ts, by, "gate", f"barrier open requested by hand at {gate}: {reason}"
            )
            if self.control is not None:
                alarm_id = alarms.raise_alarm(
                    conn, self.cfg.alarms, "manual_override", "manual", event.ts, gate=gate,
                    location=f"gate {gate}", notes=f"{by}: {reason}", by=by,
                )  # fmt: skip
                out.merge(self.control.announce(conn, [alarm_id]))
            return out

        done: Outcome = self.writer.call(job)
        # the command was sent, or not, in the writer's apply step before call() returned
        return views.decision_message(event, self.cfg.tz, self.cfg.rules.name_mask) | {
            "opened": any(done.sent)
        }

    def _write(self, conn: sqlite3.Connection, e: Event, out: Outcome, opens_until: float) -> None:
        """Insert the event and its outbox row; say what to announce once they are committed:
        the decision, a picture, and on a fresh grant the barrier's ``open`` — valid until
        ``opens_until`` (monotonic) and never sent after it."""
        verdict = "grant" if e.granted else "deny"
        card_key = e.card.key if e.card else None
        card_hex = e.card.hex if e.card else None
        store.insert(conn, AccessEvent, {
            "event_id": e.event_id, "ts": e.ts, "gate": e.gate, "reader": e.reader,
            "direction": e.direction, "decision": verdict, "reason": e.reason,
            "pass_id": e.pass_id, "pass_kind": e.pass_kind, "card_key": card_key,
            "card_hex": card_hex, "holder": e.holder, "source": e.source, "raw": e.raw,
            "read_age_ms": e.read_age_ms, "stale": e.stale, "by": e.by, "notes": e.notes,
        })  # fmt: skip
        office = {
            "event_id": e.event_id, "ts": e.ts, "node": self.cfg.node_id, "gate": e.gate,
            "reader": e.reader, "direction": e.direction, "decision": verdict,
            "reason": e.reason, "pass_id": e.pass_id, "pass_kind": e.pass_kind,
            "card_key": card_key, "card_hex": card_hex, "holder": e.holder,
            "source": e.source, "stale": e.stale, "by": e.by, "notes": e.notes,
        }  # fmt: skip
        outbox.add(conn, self.epoch, "access_event", e.event_id, office, e.ts)
        out.count(self.counts, f"{verdict}:{e.reason}")
        if e.stale:
            out.count(self.counts, "stale")
        message = views.decision_message(e, self.cfg.tz, self.cfg.rules.name_mask)
        out.messages.append((f"gate/{e.gate}/decision", message))
        # only asks: the picture is taken and kept apart
        out.snapshots.append(Snap(e.gate, "event", e.event_id, e.ts))
        if e.granted and not e.stale:
            if self.control is not None:  # the door opening after this is not forced
                self.control.door_opened_by_us(e.gate, out)
            valid_s = max(0.0, opens_until - self.monotonic())
            expires = datetime.fromtimestamp(e.ts + valid_s, self.cfg.tz)
            out.commands.append(Command(
                f"gate/{e.gate}/open",
                {"event_id": e.event_id, "pulse_ms": self.cfg.rules.open_pulse_ms,
                 "ts": message["ts"], "expires": expires.isoformat(timespec="milliseconds")},
                opens_until,
            ))  # fmt: skip
