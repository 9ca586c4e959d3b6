"""The node's one MQTT client: a bus sink for what happened, and the device inbox.

paho's network thread reconnects by itself and is started again should it ever end; the
service works on with no broker at all. The session is persistent and inputs are
acknowledged by hand, only after what they caused is committed, so a message the broker
handed over is never lost to a crash: unacknowledged, it is delivered again. No handler
can raise into paho: an exception is counted, logged, and the message acknowledged (it
would fail again), and the link goes on.

A broker that stops answering (stalled, or a dead link TCP has not noticed yet) is seen
from its missing acknowledgements; the link then reports itself not connected, so barrier
commands are dropped rather than delivered late.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from pydantic_core import to_json

from edge.config import MqttCfg
from edge.logs import scrub

log = logging.getLogger(__name__)

# (topic below the node's prefix, split at "/"; payload; redelivered?; ack)
Handler = Callable[[list[str], bytes, bool, Callable[[], None]], None]

STALL_AFTER_S = 2.0  # a publish the broker has not acknowledged for this long: stalled
WRITE_BUFFER = 256 * 1024  # bytes gathered for the broker before paho is told to wait


class _Buffered:
    """The broker's socket, read and written in large chunks.

    paho reads each packet with three or more ``recv`` calls (its type byte, each length
    byte, then the body) and writes each packet with a ``send`` of its own. Every call gives
    up the interpreter lock and waits to take it back from the writer, so in a burst the
    network thread spends most of its time waiting. Here reads are served from 64 KiB
    chunks, and the packets paho writes in one pass go out in one ``send`` when the pass
    ends (``_Client._packet_write``). ``pending()`` is paho's own hook (it asks an SSL
    socket the same): with bytes still buffered it reads on instead of sleeping in
    ``select``. Writes to a TLS socket are not gathered: OpenSSL wants a write it refused
    retried with the same buffer, which a growing one is not.
    """

    __slots__ = ("_buf", "_gather", "_out", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self._out = bytearray()
        self._gather = not isinstance(sock, ssl.SSLSocket)

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf = self._sock.recv(65536)  # BlockingIOError, SSL errors: paho's to handle
            self._pos = 0
        start = self._pos
        self._pos = min(start + size, len(self._buf))
        return self._buf[start : self._pos]

    def pending(self) -> int:
        inner = getattr(self._sock, "pending", None)
        return len(self._buf) - self._pos + (inner() if inner else 0)

    def send(self, data: bytes) -> int:
        if not self._gather:
            return self._sock.send(data)  # type: ignore[no-any-return]
        if len(self._out) >= WRITE_BUFFER:
            self.flush()  # a broker that does not read: BlockingIOError, and paho keeps
            if len(self._out) >= WRITE_BUFFER:  # the packet queued (its backpressure)
                raise BlockingIOError
        self._out += data
        return len(data)

    def flush(self) -> None:
        """Send what was gathered; BlockingIOError if the socket takes no more for now."""
        while self._out:
            sent = self._sock.send(self._out)
            del self._out[:sent]

    def unsent(self) -> int:
        return len(self._out)

    def close(self) -> None:
        # paho closes right after writing DISCONNECT (or its last will's trigger): send it
        with contextlib.suppress(OSError, ValueError):
            self.flush()
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Wake:
    """paho's wake-up socket: every publish or ack from another thread writes one byte to
    it, to break paho's ``select``. That is one system call (and one hand-over of the
    interpreter lock) per packet; inside ``held()`` a thread's bytes are owed instead, and
    one is sent when it leaves."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._local = threading.local()

    def send(self, data: bytes) -> int:
        if getattr(self._local, "holding", False):
            self._local.owed = True
            return len(data)
        return self._sock.send(data)  # type: ignore[no-any-return]

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._local.holding, self._local.owed = True, False
        try:
            yield
        finally:
            self._local.holding = False
            if self._local.owed:
                with contextlib.suppress(OSError):  # full: paho has a wake-up to read already
                    self._sock.send(b"\0")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _Client(mqtt.Client):
    """paho's client with the two sockets above. The hooks are paho's private methods; if
    one is ever renamed, paho's own unbuffered calls are used: correct, and slower."""

    def _create_socket(self) -> Any:
        return _Buffered(super()._create_socket())

    def _packet_write(self) -> Any:
        rc = super()._packet_write()
        sock = self._sock
        if isinstance(sock, _Buffered):
            try:
                sock.flush()
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                pass  # the rest when the socket is writable (want_write says so)
            except OSError:
                return mqtt.MQTT_ERR_CONN_LOST  # paho closes and reconnects
        return rc

    def want_write(self) -> bool:
        sock = self._sock
        return super().want_write() or (isinstance(sock, _Buffered) and sock.unsent() > 0)

    def loop_start(self) -> Any:
        rc = super().loop_start()
        if self._sockpairW is not None and not isinstance(self._sockpairW, _Wake):
            self._sockpairW = _Wake(self._sockpairW)
        return rc

    def held(self) -> contextlib.AbstractContextManager[None]:
        """Publishes and acks from this thread wake paho once, on leaving."""
        wake = self._sockpairW
        return wake.held() if isinstance(wake, _Wake) else contextlib.nullcontext()


class MqttLink:
    def __init__(
        self, cfg: MqttCfg, node_id: str, monotonic: Callable[[], float] = time.monotonic,
        announce: list[tuple[str, dict[str, Any]]] | None = None,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        self.base = f"{cfg.prefix}/{node_id}/"
        # retained messages outside the node's prefix (Home Assistant's discovery), sent
        # again on every connect: a broker restarted without persistence forgets them
        self.announce = announce or []
        # called on every connect, in paho's thread: the node's own retained states (each
        # gate's mode), which such a broker forgets too
        self.on_connected: list[Callable[[], None]] = []
        self._handlers: list[tuple[str, Callable[..., None]]] = []  # (full pattern, callback)
        # topic → its route's callback: paho's own matcher walks a trie in Python for every
        # message; the node sees a handful of distinct topics, so remember each one's answer
        self._by_topic: dict[str, Callable[..., None] | None] = {}
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self._connected = False
        self._stopping = False
        self.monotonic = monotonic
        # QoS 1 publishes awaiting the broker's PUBACK (mid → when sent), and PUBACKs that
        # arrived before their publish was noted (paho's thread can beat ours to the lock):
        # a publish whose PUBACK came first is never noted
        self._unacked: dict[int, float] = {}
        self._early: dict[int, None] = {}  # bounded: paho reports QoS 0 sends here too
        # guards the two maps (the writer's and paho's threads); never held while calling
        # into paho, whose own locks are held when it calls on_publish
        self._lock = threading.Lock()
        c = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"gatehouse-{node_id}",
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            c.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        c.will_set(self.base + "status", "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        # No client-side window: with one, paho rescans every queued message on each PUBACK
        # (O(n) per ack), which halves the rate at which a burst's decisions go out.
        c.max_inflight_messages_set(0)
        c.max_queued_messages_set(100_000)  # records kept while the broker is away
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.suppress_exceptions = True  # a second guard: paho logs a callback's error, lives on
        self.client = c

    @property
    def connected(self) -> bool:
        """Connected and answering: a stalled broker counts as away."""
        return self._connected and self.stalled_for() < STALL_AFTER_S

    def stalled_for(self) -> float:
        """How long the oldest unacknowledged publish has waited (0: none waiting)."""
        with self._lock:
            # noted in publish order and never re-inserted: the first entry is the oldest
            oldest = next(iter(self._unacked.values()), None)
        return 0.0 if oldest is None else max(0.0, self.monotonic() - oldest)

    def alive(self) -> bool:
        """paho's network thread is running (loop_start's; paho 2 keeps it in ``_thread``)."""
        thread = self.client._thread
        return self._stopping or (thread is not None and thread.is_alive())

    def supervise(self) -> None:
        """Called every second: a network thread that ended is started again."""
        if not self.alive():
            self.counts["loop_restarts"] += 1
            self.last_error = "network thread ended; restarted"
            log.error("mqtt: the network thread ended; restarting it")
            self._connected = False
            self.client.loop_start()

    def health(self) -> dict[str, Any]:
        stalled = self.stalled_for()
        return {
            "ok": self.connected and self.alive(),
            "connected": self._connected,
            "thread_alive": self.alive(),
            "stalled_s": round(stalled, 1) if stalled >= STALL_AFTER_S else 0,
            "awaiting_ack": len(self._unacked),
            "error": self.last_error,
            **self.counts,
        }

    def start(self) -> None:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self) -> None:
        self._stopping = True
        if self._connected:
            info = self.client.publish(self.base + "status", "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2)
        self.client.disconnect()
        self.client.loop_stop()

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """Publishes and acks made inside go out together when it ends (the writer applies
        a committed batch's effects inside one)."""
        return self.client.held()

    def publish(
        self, topic: str, payload: dict[str, Any], retain: bool = False, qos: int = 1
    ) -> bool:
        data = to_json(payload)  # compact UTF-8, four times json's speed
        info = self.client.publish(self.base + topic, data, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.counts["published"] += 1
            if qos > 0:
                with self._lock:
                    if self._early.pop(info.mid, 0) is not None:  # no PUBACK yet
                        self._unacked[info.mid] = self.monotonic()
            return True
        self.counts["publish_queued" if info.rc == mqtt.MQTT_ERR_NO_CONN else "publish_failed"] += 1
        return False

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.last_error = f"connect refused: {reason}"
            log.warning("mqtt: %s", self.last_error)
            return
        self._connected = True
        self.last_error = None
        # what was awaiting an ack is resent by paho or gone with the old connection
        with self._lock:
            self._unacked.clear()
            self._early.clear()
        self.counts["connects"] += 1
        log.info("mqtt: connected to %s:%s", self.cfg.host, self.cfg.port)
        client.publish(self.base + "status", "online", qos=1, retain=True)
        for topic, payload in self.announce:
            client.publish(topic, to_json(payload), qos=1, retain=True)
        for hook in self.on_connected:
            try:
                hook()
            except Exception:  # a hook must not cost the subscriptions below
                self.counts["on_connect_failed"] += 1
                log.exception("mqtt: republishing a state on connect failed")
        if self._handlers:
            client.subscribe([(pattern, 1) for pattern, _cb in self._handlers])

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self._connected and not self._stopping:
            log.warning("mqtt: disconnected (%s); reconnecting", reason)
        self._connected = False
        self.last_error = f"disconnected: {reason}"

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        with self._lock:
            if self._unacked.pop(mid, None) is None:
                self._early[mid] = None
                if len(self._early) > 4096:  # QoS 0 sends are reported too: forget the oldest
                    del self._early[next(iter(self._early))]

    def route(self, pattern: str, handler: Handler, name: str) -> None:
        """Deliver messages on ``pattern`` (below the node's prefix) to ``handler``, which
        acknowledges each once it is done with it (after its commit). ``name`` is what the
        input is counted as."""

        def on_message(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            mid, qos = msg.mid, msg.qos
            acked = False

            def ack() -> None:
                nonlocal acked
                if qos > 0 and not acked:
                    acked = True
                    with contextlib.suppress(Exception):  # the link may have gone since
                        client.ack(mid, qos)

            parts = msg.topic[len(self.base) :].split("/")
            # A replay, never a fresh read: DUP (the broker sent it before and got no ack:
            # we died first), or retained (a device published it retained, and the broker
            # hands it over again on every subscribe; no ACL can forbid that)
            replayed = bool(msg.dup or msg.retain)
            if msg.retain:
                self.counts[f"retained:{name}"] += 1
            try:
                handler(parts, msg.payload, replayed, ack)
            except Exception as e:
                self.counts[f"failed:{name}"] += 1
                self.last_error = scrub(f"{name} on {msg.topic}: {type(e).__name__}: {e}")
                log.exception("mqtt: handling %s on %s failed; acknowledged", name,
                              scrub(msg.topic))  # fmt: skip
                ack()  # it would fail again: holding it would only block the window

        self._handlers.append((self.base + pattern, on_message))
        self._by_topic.clear()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # a broker should never pass one on; refuse it if it does
            topic = ""
        try:
            callback = self._by_topic[topic]
        except KeyError:
            callback = next(
                (cb for pattern, cb in self._handlers if mqtt.topic_matches_sub(pattern, topic)),
                None,
            )
            if len(self._by_topic) >= 1024:  # bounded, whatever devices publish
                self._by_topic.clear()
            self._by_topic[topic] = callback
        if callback is not None:
            callback(client, userdata, msg)
            return
        # a topic no route takes (a stale subscription from an older version)
        self.counts["refused:topic"] += 1
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)
