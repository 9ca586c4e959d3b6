"""The node's one MQTT client: a bus sink for what happened, and the swipe inbox.

paho runs its own network thread and reconnects by itself (``connect_async`` +
``loop_start``); the service works on with no broker at all. The session is persistent
and swipes are acknowledged by hand, only after their decision is committed, so a swipe
the broker handed over is never lost to a crash: unacknowledged, it is delivered again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MqttCfg

log = logging.getLogger(__name__)

# (topic below the node's prefix, split at "/"; payload; redelivered?; ack)
Handler = Callable[[list[str], bytes, bool, Callable[[], None]], None]


def parse_object(payload: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON object, or the reason the payload is refused."""
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return None, f"payload is not JSON: {e}"
    if not isinstance(body, dict):
        return None, "payload must be a JSON object"
    return body, None


def parse_swipe(payload: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """A swipe payload ``{"card": "...", "ts"?: seconds}``, or the reason it is refused."""
    body, error = parse_object(payload)
    if body is None:
        return None, error
    card = body.get("card")
    if not isinstance(card, str) or not card.strip():
        return None, "payload needs 'card' as a non-empty string"
    ts = body.get("ts")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, int | float)):
        return None, "'ts' must be UNIX seconds"
    return body, None


class MqttLink:
    def __init__(self, cfg: MqttCfg, node_id: str) -> None:
        self.cfg = cfg
        self.base = f"{cfg.prefix}/{node_id}/"
        self.routes: list[str] = []
        self.counts: Counter[str] = Counter()
        self.last_error: str | None = None
        self._connected = False
        self._stopping = False
        c = mqtt.Client(
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
        self.client = c

    @property
    def connected(self) -> bool:
        return self._connected

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

    def publish(self, topic: str, payload: dict[str, Any], retain: bool = False) -> bool:
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        info = self.client.publish(self.base + topic, data, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self.counts["published"] += 1
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
        self.counts["connects"] += 1
        log.info("mqtt: connected to %s:%s", self.cfg.host, self.cfg.port)
        client.publish(self.base + "status", "online", qos=1, retain=True)
        if self.routes:
            client.subscribe([(self.base + pattern, 1) for pattern in self.routes])

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if self._connected and not self._stopping:
            log.warning("mqtt: disconnected (%s); reconnecting", reason)
        self._connected = False
        self.last_error = f"disconnected: {reason}"

    def route(self, pattern: str, handler: Handler) -> None:
        """Deliver messages on ``pattern`` (below the node's prefix) to ``handler``, which
        acknowledges each once it is done with it (after its commit)."""
        self.routes.append(pattern)

        def on_message(client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
            mid, qos = msg.mid, msg.qos

            def ack() -> None:
                if qos > 0:
                    client.ack(mid, qos)

            # DUP: the broker sent it before and got no ack (we died first): a replay
            handler(msg.topic[len(self.base) :].split("/"), msg.payload, bool(msg.dup), ack)

        self.client.message_callback_add(self.base + pattern, on_message)

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        """A topic no route takes (a stale subscription from an older version)."""
        self.counts["refused:topic"] += 1
        if msg.qos > 0:
            client.ack(msg.mid, msg.qos)


def read_monotonic(body: dict[str, Any]) -> float:
    """When a swipe was read, on the monotonic clock: its own ``ts`` if it carries one.

    A reader that stamps its swipes is protected from replays of a broker's backlog: a
    swipe queued for minutes arrives old and never opens the barrier.
    """
    mono, wall = time.monotonic(), time.time()
    ts = body.get("ts")
    return mono - max(0.0, wall - ts) if ts is not None else mono
