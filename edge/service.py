"""``gatehouse run``: wires readers, the writer, MQTT and the API, and feeds the watchdog."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

import uvicorn

from drivers.protocol import Frame, Scan
from drivers.registry import PARSERS
from drivers.serial_port import SerialReader
from edge import db, ha, health, inputs, modes, photos, slips, systemd
from edge.api import create_app
from edge.api.deps import Throttle
from edge.api.limits import listen_socket, server_config
from edge.bus import Bus
from edge.cameras import Cameras
from edge.cards import parse_card
from edge.clock import Clock, SystemClock
from edge.config import Config, ConfigError, ReaderCfg
from edge.control import ControlRoom
from edge.errors import DomainError, NotFound
from edge.gate import CardRead, GatePipeline, ReadJob, check_qr
from edge.housekeeping import (
    DAY_S,
    Housekeeper,
    forget_holders,
    forget_photos,
    prune_outbox,
    purge_key_loans,
    purge_notifications,
    purge_visitors,
    task,
)
from edge.inputs import Refused, SwipeIn
from edge.live import LiveFeed
from edge.logs import scrub
from edge.lookups import Lookups
from edge.messages import zh
from edge.metrics import EdgeMetrics
from edge.mqtt import MqttLink
from edge.notify import Notifier
from edge.privacy import IdHasher
from edge.sessions import Sessions
from edge.writer import Outcome, Writer, apply_state
from sync import qr
from sync.client import SyncClient

log = logging.getLogger(__name__)
T = TypeVar("T")


class Service:
    def __init__(self, cfg: Config, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.started = self.clock.monotonic()
        self.counts: Counter[str] = Counter()
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        try:  # one service per database; and no restore under it
            self._held = db.hold(cfg.db_path)
        except db.InUse:
            raise ConfigError(
                f"another Gatehouse service (or a restore) is using {cfg.db_path}"
            ) from None
        db.migrate(cfg.db_path)
        self.conn = db.connect(cfg.db_path)
        self.epoch = db.ensure_epoch(self.conn)
        self.bus = Bus(self.clock.monotonic)
        self.metrics = EdgeMetrics()
        self.writer = Writer(
            self.conn, apply=self.apply, effects=self.bus.batch, monotonic=self.clock.monotonic,
            on_commit=self.metrics.commit.observe,
        )  # fmt: skip
        self.control = ControlRoom(cfg, self.writer, self.bus, self.clock)
        self.gate = GatePipeline(cfg, self.writer, self.bus, self.epoch, self.control, self.clock)
        self.cameras = Cameras(cfg, self.writer, self.epoch, self.clock)
        self.gate.cameras = self.control.cameras = self.cameras
        self._device_states: dict[str, dict[str, Any]] = {}  # as last published (retained)
        self.mqtt: MqttLink | None = None
        if cfg.mqtt is not None:
            announce = ha.discovery(cfg, cfg.mqtt.ha_prefix) if cfg.mqtt.ha_discovery else []
            self.mqtt = MqttLink(cfg.mqtt, cfg.node_id, self.clock.monotonic, announce)
            self.mqtt.route("reader/+/swipe", self.on_mqtt_swipe, "mqtt_swipe")
            self.mqtt.route("alarm-input/+", self.control.on_alarm_input, "alarm_input")
            self.mqtt.route("intercom/+/event", self.control.on_intercom, "intercom")
            self.mqtt.route("patrol/+/read", self.control.on_patrol_read, "patrol_read")
            self.mqtt.route("gate/+/contact", self.control.on_contact, "contact")
            self.mqtt.route("gate/+/exit", self.control.on_exit_request, "exit_request")
            self.bus.attach(self.mqtt)
            self.mqtt.on_connected.append(self.publish_modes)  # retained, again on each connect
            self.mqtt.on_connected.append(self._device_states.clear)  # ... and the devices'
        self.readers_cfg = {r.id: r for r in cfg.readers}
        self.serial = {
            r.id: SerialReader(
                r.id,
                r.port or "",
                r.baudrate,
                PARSERS[r.protocol](r.inter_byte_timeout_ms / 1000, r.card_format),
                self.on_frame,
                clock=self.clock,
            )
            for r in cfg.readers
            if r.transport == "serial"
        }
        # clean-ups in small chunks through the writer, off the swipe path; the first run is
        # at start, so a backlog left by a long stop is worked off at once
        self.photos = photos.store_for(cfg.data_dir)
        keep, office = cfg.privacy, cfg.sync is not None
        self.housekeeper = Housekeeper(
            self.writer,
            self.clock.now,
            monotonic=self.clock.monotonic,
            run_at_start=True,
            tasks=[
                task("outbox", prune_outbox),
                task("visitors", purge_visitors, keep.visitor_days * DAY_S),
                # with an office, a name goes only once the office has the event
                task("holder_names", forget_holders, keep.holder_days * DAY_S, office),
                task("photos", forget_photos, self.photos, keep.photo_days * DAY_S),
                task("key_loans", purge_key_loans, self.photos, cfg.keys.keep_days * DAY_S),
                task("notifications", purge_notifications, keep.visitor_days * DAY_S),
            ],
        )
        self.hasher = IdHasher.from_data_dir(cfg.data_dir)
        self.sync: SyncClient | None = None
        if cfg.sync is not None:
            self.sync = SyncClient(cfg.sync, self.writer, self.read, self.epoch, self.photos,
                                   self.clock, cfg.alarms, self.hasher)  # fmt: skip
        # news off the box (edge.notify): one thread sends what the alarms' changes queued
        self.notifier = Notifier(cfg.notify, self.read, self.write, self.clock)
        self.last_mqtt_swipe: dict[str, float] = {}
        self.throttle = Throttle()
        self.lookups = Lookups()
        self.sessions = Sessions(self.clock.monotonic)
        self.live = LiveFeed()
        self.bus.watchers.append(self.live.on_record)
        self._local = threading.local()  # one read connection per API worker thread
        self.stop_event = threading.Event()
        self._server: uvicorn.Server | None = None
        self.api_thread: threading.Thread | None = None
        self.ticking_since: float | None = None  # set once run() ticks (not in-process tests)
        self.metrics.attach(self)

    # -- the database, for the API ------------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a read on this thread's own connection (WAL: readers never wait for the writer)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = db.connect(self.cfg.db_path)
        return fn(conn)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run a write in the one writer; returns once it is committed."""
        return self.writer.call(fn)  # type: ignore[no-any-return]

    def count(self, what: str) -> None:
        self.counts[what] += 1

    def publish_modes(self) -> None:
        """Each gate's mode (edge.modes), retained on ``gate/<id>/mode``, on each connect to
        the broker: the relays and other systems know it, even from a broker restarted with
        nothing kept."""
        now = self.clock.now()
        found = self.read(lambda c: [modes.current(c, g, now) for g in self.cfg.gates])
        for m in found:
            self.bus.publish(*modes.message(m, self.cfg.tz), True)

    def publish_device_states(self) -> None:
        """Each reader's and camera's state, retained, when it changed since it was last
        published (everything again after a reconnect: the broker may have lost it)."""
        if self.mqtt is None or not self.mqtt.connected:
            return
        for topic, state in health.device_states(self).items():
            if self._device_states.get(topic) != state:
                self._device_states[topic] = state
                self.bus.publish(topic, state, True)

    def apply(self, outcome: Outcome) -> None:
        """Carry out what a committed job says, in order; one failing step never stops the
        others (each is counted)."""
        apply_state(outcome)
        for ack in outcome.acks:
            self._step("ack", ack)
        for topic, payload in outcome.messages:
            self._step("publish", self.bus.publish, topic, payload)
        for topic, payload in outcome.retained:  # a state (a gate's mode): the last one stays
            self._step("publish", self.bus.publish, topic, payload, True)
        for read_at in outcome.decided:  # published: the guard's screen and the relay know
            self.metrics.swipe.observe(self.clock.monotonic() - read_at)
        outcome.sent = [
            bool(self._step("command", self.bus.command, c.topic, c.payload, c.expires))
            for c in outcome.commands
        ]
        for s in outcome.snapshots:
            self._step("snapshot", self.cameras.snap, s.gate, s.ref_kind, s.ref_id, s.ts)

    def _step(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:
            self.counts[f"effect_failed:{what}"] += 1
            log.exception("after-commit %s failed", what)
            return None

    # -- inputs -------------------------------------------------------------------------

    def on_frame(self, reader_id: str, frame: Frame | Scan, mono: float, _wall: float) -> None:
        reader = self.readers_cfg[reader_id]
        if isinstance(frame, Frame):
            self.gate.submit(CardRead(reader, frame.card, mono, "serial", frame.raw))
        elif frame.text.startswith(qr.PREFIX):
            self.on_qr(reader, frame, mono)
        else:
            try:
                slip = self.read(lambda c: slips.get(c, frame.text))
            except NotFound:
                slip = None
            self.show_slip(reader.gate, frame.text, slip)

    def on_qr(self, reader: ReaderCfg, frame: Scan, mono: float) -> None:
        """A scanned code, verified here, once: its signature, then the gate's clock against
        the office's, then what a pass's code may be (sync.qr); a slip goes to the screen, a
        pass to the pipeline, where its entries today are counted beside the grant."""
        payload: dict[str, Any] | None
        try:
            payload = qr.verify(frame.text, list(self.cfg.qr_keys))
        except DomainError:
            payload = None  # recorded as a denial: invalid_qr
        if payload is not None:
            signed = payload
            try:
                self.read(lambda c: qr.admit(c, signed, self.clock.now()))
            except qr.QrRefused as e:
                self.qr_refused(reader.gate, e)
                if "s" in signed:
                    return  # a slip: its state is not shown on the strength of a wrong clock
                payload = None  # recorded as a denial: invalid_qr
        if payload is not None and "s" in payload:
            slip_payload = payload
            slip = self.read(lambda c: slips.signed(c, slip_payload))
            self.show_slip(reader.gate, payload["s"], slip, signed=True)
            return
        read = CardRead(reader, None, mono, "serial", frame.raw, qr=payload)
        if payload is None:
            self.gate.submit(read)
        else:
            self.writer.submit(_QrEntry(self, read))

    def qr_refused(self, gate: str, e: qr.QrRefused, out: Outcome | None = None) -> None:
        """A verified code refused by a rule: logged, counted (``refused:qr:<rule>``), and
        said on ``gate/<gate>/scan`` with the reason, in Chinese too (after the commit when
        it is part of one: ``out``)."""
        log.warning("QR refused at gate %s: %s", scrub(gate), scrub(e))
        message = {"kind": "qr", "refused": e.what, "detail": str(e), "detail_zh": zh(str(e))}
        if out is None:
            self.count(f"refused:qr:{e.what}")
            self.bus.publish(f"gate/{gate}/scan", message)
        else:
            out.count(self.counts, f"refused:qr:{e.what}")
            out.messages.append((f"gate/{gate}/scan", message))

    def show_slip(
        self, gate: str, number: str, slip: dict[str, Any] | None, signed: bool = False
    ) -> None:
        """A slip scanned at the gate: its state goes to the guard's screen at once; the
        details are a GET away (GET /api/v1/slips/{number})."""
        message: dict[str, Any] = {"kind": "slip", "number": number, "found": slip is not None}
        if slip is not None:
            message |= {
                "status": slips.status_at(slip, self.clock.now()),
                "unit": slip["unit"],
                "items": sum(i["qty"] for i in slip["items"]),
            }
        if signed:
            message["signed"] = True
        self.bus.publish(f"gate/{gate}/scan", message)

    def on_mqtt_swipe(
        self, parts: list[str], payload: bytes, replayed: bool, ack: Callable[[], None]
    ) -> None:
        reader_id = parts[1]
        mono, wall = self.clock.monotonic(), self.clock.now()
        try:
            reader = self.readers_cfg.get(reader_id)
            if reader is None or reader.transport != "mqtt":
                raise Refused(f"no MQTT reader {reader_id!r} is configured")
            swipe = inputs.parse(SwipeIn, payload, now=wall)
            try:
                card = parse_card(swipe.card, reader.card_format)
            except ValueError as e:
                raise Refused(f"card: {e}") from None
        except Refused as e:
            self.counts["refused:mqtt_swipe"] += 1
            log.warning("swipe on reader %s refused: %s", scrub(reader_id), scrub(e))
            ack()  # refused for good: redelivering it would not make it valid
            return
        self.last_mqtt_swipe[reader_id] = mono
        read_at = inputs.read_monotonic(swipe, mono, wall)
        self.gate.submit(
            CardRead(reader, card, read_at, "mqtt", swipe.card.encode(), ack, replayed)
        )

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        # fails here, before any thread, with one line if the port is taken
        sock = listen_socket(self.cfg.api_host, self.cfg.api_port, "api.listen")
        self.writer.start()
        self.housekeeper.start()
        if self.mqtt is not None:
            self.mqtt.start()  # once connected, each gate's mode is published (publish_modes)
        for sr in self.serial.values():
            sr.start()
        self.cameras.start()
        if self.sync is not None:
            self.sync.start()
        self.notifier.start()
        self._server = uvicorn.Server(server_config(create_app(self), lifespan="off"))
        self.api_thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="api", daemon=True
        )
        self.api_thread.start()

    def run(self) -> None:
        """Start, tell systemd we are ready, feed the watchdog until told to stop."""
        self.start()
        while self._server is not None and not self._server.started:
            time.sleep(0.01)
        systemd.notify("READY=1")
        log.info(
            "gatehouse %s ready on %s:%s", self.cfg.node_id, self.cfg.api_host, self.cfg.api_port
        )
        interval = min(systemd.watchdog_interval() or 1.0, 1.0)
        self.ticking_since = self.clock.monotonic()
        while not self.stop_event.wait(interval):
            # only a working service earns a ping: a hung pipeline gets the unit restarted
            if health.watchdog_ok(self):
                systemd.notify("WATCHDOG=1")
            try:  # one failing turn must not end the loop that feeds the watchdog
                if self.mqtt is not None:
                    self.mqtt.supervise()
                self.control.tick(health.conditions(self), probe=lambda c: health.probe(self, c))
                self.publish_device_states()
            except Exception:
                self.counts["ticker_errors"] += 1
                log.exception("the control room's ticker failed; it tries again in a second")
        systemd.notify("STOPPING=1")
        self.shutdown()

    def shutdown(self) -> None:
        """Stop taking reads, decide and publish every read already taken, then the rest:
        a hung camera or an unreachable office must not hold the queued swipes past
        systemd's stop timeout."""
        for sr in self.serial.values():
            sr.stop()
        self.live.close()  # open pages' streams end, or the HTTP server waits for them
        if self._server is not None:
            self._server.should_exit = True
        with contextlib.suppress(Exception):  # every read queued so far is on disk, and out
            self.writer.call(lambda _c: None, timeout=20)
        self.housekeeper.stop()
        self.cameras.stop()  # its last requests are recorded ("no picture") by the writer
        if self.sync is not None:
            self.sync.stop()
        self.notifier.stop()
        self.writer.stop()
        if self.mqtt is not None:
            self.mqtt.stop()
        self.conn.close()
        db.release(self._held)
        log.info("gatehouse %s stopped", self.cfg.node_id)


class _QrEntry(ReadJob):
    """A pass's verified code, in the writer: granted only while it has entries left today
    at this gate (sync.qr.QR_ENTRIES_PER_DAY), counted from this gate's own grants in the
    same transaction as the one it adds, so two quick scans cannot both take the last."""

    def __init__(self, svc: Service, read: CardRead) -> None:
        super().__init__(svc.gate, read)
        self.svc = svc

    def run(self, conn: sqlite3.Connection) -> Outcome:
        svc, read = self.svc, self.read
        assert read.qr is not None
        gate_id, now = read.reader.gate, svc.clock.now()
        decision, _ = check_qr(conn, read.qr, now, gate_id, svc.gate.rules)
        if decision.granted:  # a deny keeps its own reason (revoked, expired...)
            try:
                qr.check_entries(
                    read.qr, qr.entries_used(conn, read.qr["p"], gate_id, now, svc.cfg.tz), gate_id
                )
            except qr.QrRefused as e:
                out = ReadJob(self.gate, replace(read, qr=None)).run(conn)  # invalid_qr
                svc.qr_refused(gate_id, e, out)
                return out
        return super().run(conn)
