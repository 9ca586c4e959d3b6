"""The MQTT link's own parts: buffered reads and routing, on a real socket and a real broker."""

from __future__ import annotations

import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MqttCfg
from edge.mqtt import MqttLink, _ReadBuffered
from tests.helpers import Broker, wait_for


def test_buffered_reads_serve_paho_from_one_recv() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    sock = _ReadBuffered(a)
    try:
        with pytest.raises(BlockingIOError):  # nothing there yet: paho's "try again"
            sock.recv(1)
        b.sendall(b"\x30\x05hello\x40")
        # a socketpair delivers at once: the first recv takes all eight bytes
        assert sock.recv(1) == b"\x30"
        assert sock.pending() == 7  # paho reads on instead of sleeping in select
        assert sock.recv(1) == b"\x05"
        assert sock.recv(100) == b"hello\x40"  # never more than asked or than buffered
        assert sock.pending() == 0
        assert sock.fileno() == a.fileno()  # everything else is the socket's own
        b.close()
        assert sock.recv(1) == b""  # the peer closed: paho sees the connection lost
    finally:
        a.close()
        b.close()


def test_a_topic_no_route_takes_is_refused_and_acknowledged(broker: Broker) -> None:
    """A subscription left in the persistent session by an older version still delivers;
    such a message is counted and acknowledged (not redelivered at every reconnect)."""
    node_id = "n-route"
    old = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"gatehouse-{node_id}", clean_session=False
    )
    old.connect("127.0.0.1", broker.port)
    old.loop_start()
    subscribed = threading.Event()
    old.on_subscribe = lambda *_a: subscribed.set()
    old.subscribe(f"gatehouse/{node_id}/old/#", qos=1)
    assert subscribed.wait(5)
    old.disconnect()
    old.loop_stop()

    cfg = MqttCfg(url=f"mqtt://127.0.0.1:{broker.port}")
    got: list[tuple[list[str], bytes, bool]] = []

    def handler(parts: list[str], payload: bytes, replayed: bool, ack: Any) -> None:
        got.append((parts, payload, replayed))
        ack()

    link = MqttLink(cfg, node_id)
    link.route("reader/+/swipe", handler, "mqtt_swipe")
    link.start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="route-pub")
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    try:
        wait_for(lambda: link.connected, what="link connected")
        pub.publish(f"gatehouse/{node_id}/old/x", b"{}", qos=1).wait_for_publish(5)
        wait_for(lambda: link.counts["refused:topic"] == 1, what="refused:topic")
        pub.publish(f"gatehouse/{node_id}/reader/r1/swipe", b'{"card":"1"}', qos=1)
        wait_for(lambda: got, what="routed swipe")
        assert got == [(["reader", "r1", "swipe"], b'{"card":"1"}', False)]
        # acknowledged: a reconnect does not bring either back
        link.client.reconnect()
        wait_for(lambda: link.counts["connects"] >= 2, what="reconnected")
        pub.publish(f"gatehouse/{node_id}/reader/r1/swipe", b'{"card":"2"}', qos=1)
        wait_for(lambda: len(got) == 2, what="second swipe")
        assert link.counts["refused:topic"] == 1
        assert got[1][1] == b'{"card":"2"}'
    finally:
        pub.loop_stop()
        pub.disconnect()
        link.stop()
