"""The control room's live side: alarm inputs and intercoms from MQTT, the gate's own
alarms, escalation and reader watch — each change committed, then published."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from edge import alarms, dutylog
from edge.bus import Bus
from edge.config import Config
from edge.mqtt import parse_object
from edge.writer import CallJob, Writer

if TYPE_CHECKING:
    from edge.cameras import Cameras

log = logging.getLogger(__name__)

_TYPE = re.compile(r"^[a-z_]{2,40}$")
INTERCOM_EVENTS = ("call", "answered", "hangup", "open_request", "emergency")

Views = list[dict[str, Any]]


class ControlRoom:
    def __init__(self, cfg: Config, writer: Writer, bus: Bus) -> None:
        self.cfg = cfg
        self.writer = writer
        self.bus = bus
        self.counts: Counter[str] = Counter()
        self._condition: dict[tuple[str, str], bool] = {}  # the ticker's last view
        self.cameras: Cameras | None = None  # set by the service when it has cameras
        self._pictured: set[int] = set()

    # -- changes ------------------------------------------------------------------------

    def views(self, conn: sqlite3.Connection, ids: Iterable[int]) -> Views:
        now = time.time()
        return [alarms.view(alarms.get(conn, i), now, self.cfg.tz) for i in dict.fromkeys(ids)]

    def publish(self, views: Views) -> None:
        for v in views:
            self.bus.publish(f"alarm/{v['id']}", v)
            # a new alarm at a gate with a camera gets its picture, once
            if (
                self.cameras
                and v["gate"]
                and v["snapshot"] is None
                and v["id"] not in self._pictured
            ):
                self._pictured.add(v["id"])
                self.cameras.snap(v["gate"], "alarm", str(v["id"]), time.time())

    def _job(self, fn: Callable[[sqlite3.Connection], list[int] | None],
             ack: Callable[[], None] | None) -> CallJob:  # fmt: skip
        def after(views: Views) -> None:
            if ack is not None:
                ack()
            self.publish(views)

        return CallJob(lambda c: self.views(c, fn(c) or []), after)

    def change(self, fn: Callable[[sqlite3.Connection], list[int] | None]) -> Views:
        """Run ``fn`` in the writer; once committed, publish the alarms it changed."""
        job = self._job(fn, None)
        self.writer.submit(job)
        return job.future.result(10)  # type: ignore[no-any-return]

    def submit(self, fn: Callable[[sqlite3.Connection], list[int] | None],
               ack: Callable[[], None] | None = None) -> None:  # fmt: skip
        """The same, without waiting (MQTT inputs: acknowledged after the commit)."""
        self.writer.submit(self._job(fn, ack))

    def _refuse(self, what: str, why: str, ack: Callable[[], None]) -> None:
        self.counts[f"refused:{what}"] += 1
        log.warning("%s refused: %s", what, why)
        ack()  # refused for good: redelivering it would not make it valid

    # -- MQTT inputs --------------------------------------------------------------------

    def on_alarm_input(self, parts: list[str], payload: bytes, _dup: bool,
                       ack: Callable[[], None]) -> None:  # fmt: skip
        """``alarm-input/<source>`` ``{"type", "state": "active"|"normal", "location"?}``."""
        source_id = parts[1]
        body, error = parse_object(payload)
        if body is None:
            return self._refuse("alarm_input", f"{source_id}: {error}", ack)
        kind, state = body.get("type"), body.get("state")
        if not isinstance(kind, str) or not _TYPE.match(kind):
            return self._refuse("alarm_input", f"{source_id}: 'type' must be like door_forced", ack)
        if state not in ("active", "normal"):
            return self._refuse(
                "alarm_input", f"{source_id}: 'state' must be active or normal", ack
            )
        location = body.get("location")
        if location is not None and (not isinstance(location, str) or len(location) > 200):
            return self._refuse("alarm_input", f"{source_id}: 'location' must be text", ack)
        gate, where = self.cfg.alarms.sources.get(source_id, (None, None))
        source = f"alarm-input:{source_id}"
        now = time.time()
        self.counts["alarm_input"] += 1
        if state == "active":
            self.submit(
                lambda c: [alarms.raise_alarm(c, self.cfg.alarms, kind, source, now,
                                              location=location or where, gate=gate)],
                ack,
            )  # fmt: skip
        else:
            self.submit(lambda c: [i] if (i := alarms.normal(c, source, kind, now)) else [], ack)
        return None

    def on_intercom(self, parts: list[str], payload: bytes, _dup: bool,
                    ack: Callable[[], None]) -> None:  # fmt: skip
        """``intercom/<id>/event``: an emergency is a priority-1 alarm; calls and open
        requests go in the duty log."""
        intercom = parts[1]
        body, error = parse_object(payload)
        event = body.get("event") if body else None
        if body is None or event not in INTERCOM_EVENTS:
            why = error or f"'event' must be one of {', '.join(INTERCOM_EVENTS)}"
            return self._refuse("intercom", f"{intercom}: {why}", ack)
        now = time.time()
        self.counts[f"intercom:{event}"] += 1
        if event == "emergency":
            self.submit(
                lambda c: [alarms.raise_alarm(c, self.cfg.alarms, "intercom_emergency",
                                              f"intercom:{intercom}", now, location=intercom)],
                ack,
            )  # fmt: skip
        else:
            text = f"intercom {intercom}: {event.replace('_', ' ')}"

            def note(c: sqlite3.Connection) -> list[int]:
                dutylog.add(c, now, "system", "intercom", text)
                return []

            self.submit(note, ack)
        return None

    # -- the ticker ---------------------------------------------------------------------

    def tick(self, conditions: dict[tuple[str, str], tuple[bool, str | None, str]]) -> None:
        """Once a second: escalate what nobody acknowledged, and raise or clear the alarms of
        the service's own watch — ``(source, type) → (active, gate, location)``: a reader
        gone, a camera offline, frozen or covered."""
        now = time.time()
        changed = []
        for key, (active, gate, location) in conditions.items():
            if self._condition.get(key, False) != active:
                changed.append((key, active, gate, location))
            self._condition[key] = active

        def job(c: sqlite3.Connection) -> list[int]:
            ids = alarms.escalate_due(c, self.cfg.alarms, now)
            for (source, kind), active, gate, location in changed:
                if active:
                    ids.append(alarms.raise_alarm(c, self.cfg.alarms, kind, source, now,
                                                  location=location, gate=gate))  # fmt: skip
                elif cleared := alarms.normal(c, source, kind, now):
                    ids.append(cleared)
            return ids

        self.submit(job)
