"""The control room's live side: alarm inputs and intercoms from MQTT, the gate's own
alarms, escalation and reader watch — each change committed, then published."""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from edge import alarms, dutylog, inputs, keys, modes, notify, outbox, patrol, permits, store, views
from edge.bus import Bus
from edge.clock import Clock, SystemClock, iso
from edge.config import Config
from edge.door import Door
from edge.inputs import AlarmInputIn, ContactIn, IntercomIn, PatrolReadIn, Refused
from edge.logs import scrub
from edge.models import DoorEvent
from edge.writer import CallJob, Command, Outcome, Snap, Writer, job_level

if TYPE_CHECKING:
    from edge.cameras import Cameras

log = logging.getLogger(__name__)
KEYS_EVERY_S = 30.0  # key loans due, the end of work: looked at twice a minute is plenty
FIRE = ("fire", "smoke")  # alarm types that hold the open_on_fire gates open
HOLD_EVERY_S = 5.0  # a gate held open: its open re-sent this often
HOLD_PULSE_MS = 10_000  # ... with a pulse longer than that, so the barrier stays up

Views = list[dict[str, Any]]


class InputJob(CallJob):
    """An MQTT input's job: if it fails it is counted, never silent. One the database could
    not take is left unacknowledged for the broker to deliver again; one that failed for a
    reason of its own would fail again, so it is acknowledged."""

    def __init__(self, fn: Callable[[sqlite3.Connection], Any], ack: Callable[[], None],
                 counts: Counter[str], what: str) -> None:  # fmt: skip
        super().__init__(fn)
        self.ack, self.counts, self.what = ack, counts, what

    def failed(self, error: BaseException) -> None:
        self.counts[f"record_failed:{self.what}"] += 1
        if job_level(error):
            self.ack()
        super().failed(error)


class ControlRoom:
    def __init__(self, cfg: Config, writer: Writer, bus: Bus, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.writer = writer
        self.bus = bus
        self.counts: Counter[str] = Counter()
        self._condition: dict[tuple[str, str], bool] = {}  # the ticker's last view
        self._taken_up = False  # the last run's active watch alarms (alarms.carried_over)
        self._keys_at = 0.0  # when to look for overdue key loans next (monotonic)
        self._hold_at = 0.0  # when to re-send the open of the gates held open (monotonic)
        self.cameras: Cameras | None = None  # set by the service when it has cameras
        self._pictured: dict[int, bool] = {}  # alarms whose picture was asked for
        # when the ticker's last job was committed (monotonic): escalation is life-safety,
        # so a ticker that stopped committing is as bad as a thread that died
        self.ticked: dict[str, float] = {}
        # the gates whose door or barrier reports its position (edge.door)
        self.doors = {gate: Door(door) for gate, door in cfg.doors.items()}

    # -- changes ------------------------------------------------------------------------

    def views(self, conn: sqlite3.Connection, ids: Iterable[int]) -> Views:
        now = self.clock.now()
        return [views.alarm_view(alarms.get(conn, i), now, self.cfg.tz) for i in dict.fromkeys(ids)]

    def announce(self, conn: sqlite3.Connection, ids: Iterable[int]) -> Outcome:
        """What to publish once the changes to ``ids`` are committed: each alarm on
        ``alarm/<id>``, and a new alarm at a gate with a camera gets its picture, once.
        What is news off the box is queued here, in the same transaction (edge.notify)."""
        views = self.views(conn, ids)
        notify.enqueue(conn, self.cfg.notify, views, self.clock.now(), self.cfg.tz,
                       self.cfg.node_id)  # fmt: skip
        out = Outcome(reply=views)
        for v in views:
            out.messages.append((f"alarm/{v['id']}", v))
            if (
                self.cameras
                and v["gate"]
                and v["snapshot"] is None
                and v["id"] not in self._pictured
            ):
                out.state.append((self._pictured, v["id"], True))
                out.snapshots.append(Snap(v["gate"], "alarm", str(v["id"]), self.clock.now()))
        return out

    def _announcing(
        self, fn: Callable[[sqlite3.Connection], list[int] | None],
        ack: Callable[[], None] | None = None, door: Door | None = None,
    ) -> Callable[[sqlite3.Connection], Outcome]:  # fmt: skip
        """``door``: the door whose state ``fn`` changes, put back as it was if the job
        fails or its transaction rolls back: a report the broker delivers again (or the
        contact repeats) must be judged afresh, not taken as known and never recorded."""

        def run(c: sqlite3.Connection) -> Outcome:
            before = dict(vars(door)) if door is not None else {}
            try:
                out = self.announce(c, fn(c) or [])
            except BaseException:
                if door is not None:
                    vars(door).update(before)
                raise
            if door is not None:
                out.undo += [(vars(door), key, value) for key, value in before.items()]
            if ack is not None:
                out.acks.insert(0, ack)
            return out

        return run

    def change(self, fn: Callable[[sqlite3.Connection], list[int] | None]) -> Views:
        """Run ``fn`` in the writer; once committed, publish the alarms it changed."""
        job = CallJob(self._announcing(fn))
        self.writer.submit(job)
        done: Outcome = job.future.result(30)
        return done.reply  # type: ignore[no-any-return]

    def submit(self, fn: Callable[[sqlite3.Connection], list[int] | None],
               ack: Callable[[], None], what: str, door: Door | None = None) -> None:  # fmt: skip
        """The same for an MQTT input (``what``), without waiting: acknowledged after the
        commit, and counted if it fails."""
        self.writer.submit(InputJob(self._announcing(fn, ack, door), ack, self.counts, what))

    def _refuse(self, what: str, why: str, ack: Callable[[], None]) -> None:
        self.counts[f"refused:{what}"] += 1
        log.warning("%s refused: %s", what, scrub(why))
        ack()  # refused for good: redelivering it would not make it valid

    # -- MQTT inputs --------------------------------------------------------------------

    def on_alarm_input(self, parts: list[str], payload: bytes, _dup: bool,
                       ack: Callable[[], None]) -> None:  # fmt: skip
        """``alarm-input/<source>`` ``{"type", "state": "active"|"normal", "location"?}``."""
        source_id = parts[1]
        try:
            body = inputs.parse(AlarmInputIn, payload)
        except Refused as e:
            return self._refuse("alarm_input", f"{source_id}: {e}", ack)
        kind, location = body.type, body.location
        gate, where = self.cfg.alarms.sources.get(source_id, (None, None))
        source = f"alarm-input:{source_id}"
        now = self.clock.now()
        self.counts["alarm_input"] += 1
        notes = None
        if not alarms.declared(kind, self.cfg.alarms):
            # a panel's typo of "fire" must not become a P3 with no procedure: raised as
            # unknown_type (P2), saying what the panel sent
            self.counts["alarm_input:undeclared"] += 1
            log.warning("alarm input %s: type %r is not declared; raised as unknown_type",
                        source_id, kind)  # fmt: skip
            notes = f"the panel sent type {kind!r}, which is not declared"
            kind = "unknown_type"
        if body.state == "active":

            def raised(c: sqlite3.Connection) -> Outcome:
                out = self.announce(c, [alarms.raise_alarm(
                    c, self.cfg.alarms, kind, source, now, location=location or where,
                    gate=gate, notes=notes)])  # fmt: skip
                if kind in FIRE:  # the lane kept open for the fire engines
                    out.merge(self.hold_open_for_fire(c, source_id, now))
                out.acks.insert(0, ack)
                return out

            self.writer.submit(InputJob(raised, ack, self.counts, "alarm_input"))
        else:
            self.submit(
                lambda c: [i] if (i := alarms.normal(c, source, kind, now)) else [],
                ack, "alarm_input",
            )  # fmt: skip
        return None

    def on_patrol_read(self, parts: list[str], payload: bytes, _dup: bool,
                       ack: Callable[[], None]) -> None:  # fmt: skip
        """``patrol/<device>/read`` ``{"tag", "guard"?, "ts"?}``: kept, then acknowledged."""
        device = parts[1]
        try:
            body = inputs.parse(PatrolReadIn, payload, self.clock.now())
        except Refused as e:
            return self._refuse("patrol_read", f"{device}: {e}", ack)
        now = self.clock.now()
        self.counts["patrol_read"] += 1
        # a stored read keeps its time; one ahead of this clock is taken as read now
        read = patrol.Read(body.tag, min(body.ts or now, now), body.guard, device)

        def keep(c: sqlite3.Connection) -> list[int]:  # a round done late clears its alarm
            return list(patrol.record(c, self.cfg, [read], "mqtt", now)["alarms_cleared"])

        self.submit(keep, ack, "patrol_read")
        return None

    def on_contact(self, parts: list[str], payload: bytes, _dup: bool,
                   ack: Callable[[], None]) -> None:  # fmt: skip
        """``gate/<id>/contact`` ``{"state": "open"|"closed"}``: each change in the gate's
        log; an opening nothing accounted for raises ``door_forced``, a closing clears it."""
        gate = parts[1]
        door = self.doors.get(gate)
        try:
            if door is None:
                raise Refused(f"gate {gate!r} has no door contact in the config")
            body = inputs.parse(ContactIn, payload)
        except Refused as e:
            return self._refuse("contact", f"{gate}: {e}", ack)
        self.counts["contact"] += 1
        is_open = body.state == "open"

        def keep(c: sqlite3.Connection) -> list[int]:
            now = self.clock.now()
            what = door.contact(is_open, self.clock.monotonic())
            if what is None:
                return []  # what was known (a retained report after a reconnect)
            self._door_event(c, gate, what, now)
            source = f"door:{gate}"
            if what == "forced":
                return [alarms.raise_alarm(
                    c, self.cfg.alarms, "door_forced", source, now, gate=gate,
                    location=f"gate {gate}",
                    notes=f"opened with no grant, manual opening or exit request in the "
                          f"{door.cfg.window_s:g} s before",
                )]  # fmt: skip
            if what == "closed" and (cleared := alarms.normal(c, source, "door_forced", now)):
                return [cleared]
            return []

        self.submit(keep, ack, "contact", door)
        return None

    def on_exit_request(self, parts: list[str], payload: bytes, _dup: bool,
                        ack: Callable[[], None]) -> None:  # fmt: skip
        """``gate/<id>/exit``: the request-to-exit button; the opening after it is not forced."""
        gate = parts[1]
        door = self.doors.get(gate)
        if door is None:
            return self._refuse("exit_request", f"{gate}: no door contact in the config", ack)
        self.counts["exit_request"] += 1

        def keep(c: sqlite3.Connection) -> list[int]:
            door.authorise(self.clock.monotonic(), grant=False)
            self._door_event(c, gate, "exit_request", self.clock.now())
            return []

        self.submit(keep, ack, "exit_request", door)
        return None

    def hold_open_for_fire(self, c: sqlite3.Connection, source_id: str, now: float) -> Outcome:
        """The gates with ``open_on_fire`` held open (until the control room sets them back),
        each in the duty log, the mode published retained."""
        out = Outcome()
        for g in self.cfg.fire_gates:
            if modes.mode_of(c, g, now) != "held_open":
                got = modes.set_mode(c, g, "held_open", None, f"fire alarm ({source_id})",
                                     "system", now, self.cfg.notify, self.cfg.tz)  # fmt: skip
                out.retained.append(modes.message(got, self.cfg.tz))
                out.state.append((self.__dict__, "_hold_at", 0.0))  # opened at the next tick
        return out

    def hold_open(self, c: sqlite3.Connection, now: float) -> Outcome:
        """An ``open`` for each gate held open, re-sent every few seconds: a relay that
        restarted opens again, and one that hears nothing more closes after the pulse. A
        supervised door of such a gate is opened by us, not forced nor held too long."""
        out = Outcome()
        held = frozenset(m["gate"] for m in modes.not_normal(c, now) if m["mode"] == "held_open")
        expires = self.clock.monotonic() + 2.0  # as a grant's: dropped, never sent late
        payload = {"event_id": None, "pulse_ms": HOLD_PULSE_MS, "hold": True,
                   "ts": iso(now, self.cfg.tz), "expires": iso(now + 2.0, self.cfg.tz)}  # fmt: skip
        for gate in sorted(held):
            out.commands.append(Command(f"gate/{gate}/open", payload, expires))
        for gate, door in self.doors.items():
            door.hold(gate in held, self.clock.monotonic())
        return out

    def mode_changed(self) -> None:
        """A gate's mode was set: the next tick re-sends the holds and tells the doors."""
        self._hold_at = 0.0

    def door_opened_by_us(self, gate: str, out: Outcome) -> None:
        """In the writer, with a grant or a manual opening: the barrier was told to open
        (undone with ``out``'s transaction if it rolls back: no grant, no opening)."""
        if (door := self.doors.get(gate)) is not None:
            out.undo += [(vars(door), key, value) for key, value in vars(door).items()]
            door.authorise(self.clock.monotonic())

    def _door_event(self, c: sqlite3.Connection, gate: str, what: str, now: float) -> None:
        store.insert(c, DoorEvent, {"gate": gate, "ts": now, "what": what})
        outbox.add(c, None, "door_event", f"{gate}:{now:.3f}",
                   {"gate": gate, "ts": now, "what": what}, now)  # fmt: skip

    def door_conditions(self) -> dict[tuple[str, str], tuple[bool | None, str | None, str]]:
        """For the ticker's watch: each supervised gate open too long, or its contact stuck
        (neither for a gate held open by its mode: edge.door)."""
        now = self.clock.monotonic()
        out: dict[tuple[str, str], tuple[bool | None, str | None, str]] = {}
        for gate, door in self.doors.items():
            out[(f"door:{gate}", "door_held")] = (door.held(now), gate, f"gate {gate}")
            out[(f"door:{gate}", "contact_stuck")] = (door.stuck(), gate, f"gate {gate}")
        return out

    def on_intercom(self, parts: list[str], payload: bytes, _dup: bool,
                    ack: Callable[[], None]) -> None:  # fmt: skip
        """``intercom/<id>/event``: an emergency is a priority-1 alarm; calls and open
        requests go in the duty log."""
        intercom = parts[1]
        try:
            event = inputs.parse(IntercomIn, payload).event
        except Refused as e:
            return self._refuse("intercom", f"{intercom}: {e}", ack)
        now = self.clock.now()
        self.counts[f"intercom:{event}"] += 1
        if event == "emergency":
            self.submit(
                lambda c: [alarms.raise_alarm(c, self.cfg.alarms, "intercom_emergency",
                                              f"intercom:{intercom}", now, location=intercom)],
                ack, "intercom",
            )  # fmt: skip
        else:
            text = f"intercom {intercom}: {event.replace('_', ' ')}"

            def note(c: sqlite3.Connection) -> list[int]:
                dutylog.add(c, now, "system", "intercom", text)
                return []

            self.submit(note, ack, "intercom")
        return None

    # -- the ticker ---------------------------------------------------------------------

    def _duties(self, c: sqlite3.Connection, now: float) -> list[int]:
        """The duties looked at twice a minute: key loans past their due time, the end of
        the working day, patrol rounds whose time is up, the day's fault notices handed in.
        In a savepoint of their own: one that fails is rolled back, logged and counted, and
        never takes the escalation of the same tick with it."""
        c.execute("SAVEPOINT duties")
        try:
            ids = keys.overdue(c, self.cfg, now)
            permits.end_of_work(c, self.cfg, now)  # the workers still inside, once a day
            ids += patrol.evaluate(c, self.cfg, now)
            patrol.faults_handed_in(c, self.cfg, now)  # the day's fault notices, at 17:30
        except sqlite3.DatabaseError:
            raise  # the database itself: the writer's to handle, as for any job
        except Exception as e:  # a bug in one of them: the alarms go on
            c.execute("ROLLBACK TO duties")
            c.execute("RELEASE duties")
            self.counts["duties_failed"] += 1
            log.exception("control room: the due checks failed (tried again in %.0f s): %s",
                          KEYS_EVERY_S, e)  # fmt: skip
            return []
        c.execute("RELEASE duties")
        return ids

    def tick(
        self,
        conditions: dict[tuple[str, str], tuple[bool | None, str | None, str]],
        probe: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """Once a second: escalate what nobody acknowledged, and raise or clear the alarms of
        the service's own watch — ``(source, type) → (active, gate, location)``: a reader
        gone, a camera offline, frozen or covered."""
        now = self.clock.now()

        def job(c: sqlite3.Connection) -> Outcome:
            out = Outcome()
            if probe is not None:
                probe(c)
            ids = alarms.escalate_due(c, self.cfg.alarms, now)
            ids += alarms.deadlines_due(c, now)  # a help request's stage past its due time
            if self.clock.monotonic() >= self._hold_at:  # gates held open: open again
                out.merge(self.hold_open(c, now))
                out.state.append((self.__dict__, "_hold_at",
                                  self.clock.monotonic() + HOLD_EVERY_S))  # fmt: skip
            if self.clock.monotonic() >= self._keys_at:
                ids += self._duties(c, now)
                out.state.append((self.__dict__, "_keys_at", self.clock.monotonic() + KEYS_EVERY_S))
            if not self._taken_up:  # the first tick: what the last run left active
                kept, closed = alarms.carried_over(c, set(conditions), now)
                for key in kept:
                    out.set_now(self._condition, key, True)
                ids += closed
                out.state.append((self.__dict__, "_taken_up", True))  # once committed
            # compared here, in the writer, and noted with the transaction: a failed commit
            # puts it back, so the change is seen again next tick, never an alarm lost
            for key, (active, gate, location) in conditions.items():
                if active is None or self._condition.get(key, False) == active:
                    continue  # (None: not known yet)
                out.set_now(self._condition, key, active)
                source, kind = key
                if active:
                    ids.append(alarms.raise_alarm(c, self.cfg.alarms, kind, source, now,
                                                  location=location, gate=gate))  # fmt: skip
                elif cleared := alarms.normal(c, source, kind, now):
                    ids.append(cleared)
            out.state.append((self.ticked, "at", self.clock.monotonic()))
            return out.merge(self.announce(c, ids))

        self.writer.submit(CallJob(job))
