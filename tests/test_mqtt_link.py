"""The MQTT link's own parts: buffered reads and routing, on a real socket and a real broker."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import MqttCfg
from edge.mqtt import WRITE_BUFFER, MqttLink, _Buffered, _Wake
from tests.helpers import Broker, Listener, wait_for


def test_buffered_reads_serve_paho_from_one_recv() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    sock = _Buffered(a)
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


def test_buffered_writes_go_out_together_and_wait_for_a_peer_that_does_not_read() -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    sock = _Buffered(a)
    accepted = bytearray()
    try:
        for packet in (b"\x40\x02\x00\x01", b"\x30\x05hello"):
            assert sock.send(packet) == len(packet)  # taken whole, as paho expects
            accepted += packet
        with pytest.raises(BlockingIOError):  # nothing sent yet: it goes at the pass's end
            b.recv(100)
        assert sock.unsent() == 11
        sock.flush()
        assert b.recv(100) == bytes(accepted) and sock.unsent() == 0

        # a broker that stopped reading: the kernel's buffers fill, then ours, then paho is
        # told to wait (BlockingIOError) and keeps the packet queued; nothing is dropped
        accepted.clear()
        chunk = bytes(range(256)) * 256
        with pytest.raises(BlockingIOError):
            for _ in range(10_000):
                sock.send(chunk)
                accepted += chunk
                with contextlib.suppress(BlockingIOError):
                    sock.flush()
        assert 0 < sock.unsent() <= WRITE_BUFFER + len(chunk)
        received = bytearray()
        while sock.unsent():
            with contextlib.suppress(BlockingIOError):
                received += b.recv(1 << 20)
            with contextlib.suppress(BlockingIOError):
                sock.flush()
        with contextlib.suppress(BlockingIOError):
            while chunk_in := b.recv(1 << 20):
                received += chunk_in
        assert received == accepted  # every byte taken went out, in order

        sock.send(b"\xe0\x00")  # DISCONNECT, then paho closes at once: it still goes out
        sock.close()
        assert b.recv(100) == b"\xe0\x00"
    finally:
        a.close()
        b.close()


def test_a_thread_s_wake_ups_are_owed_while_held_and_paid_once() -> None:
    r, w = socket.socketpair()
    r.setblocking(False)
    wake = _Wake(w)
    try:
        with wake.held():
            for _ in range(3):
                assert wake.send(b"0") == 1
            with pytest.raises(BlockingIOError):
                r.recv(10)  # owed, not sent
            other = threading.Thread(target=wake.send, args=(b"0",))
            other.start()  # another thread is not held
            other.join()
            assert r.recv(10) == b"0"
        assert len(r.recv(10)) == 1  # one for the three
        with wake.held():
            pass
        with pytest.raises(BlockingIOError):
            r.recv(10)  # nothing owed, nothing sent
    finally:
        r.close()
        w.close()


def test_a_batch_s_publishes_all_reach_the_broker_in_order(broker: Broker) -> None:
    listener = Listener(broker.port, "gatehouse/n-batch/gate/#")
    link = MqttLink(MqttCfg(url=f"mqtt://127.0.0.1:{broker.port}"), "n-batch")
    link.start()
    try:
        wait_for(lambda: link.connected, what="link connected")
        with link.batch():
            for i in range(500):
                link.publish("gate/main/decision", {"n": i})
                link.publish("gate/main/open", {"n": i}, qos=0)
        got = [listener.next("/decision")["n"] for _ in range(500)]
        assert got == list(range(500))
        wait_for(lambda: link.health()["awaiting_ack"] == 0, what="every PUBACK")
    finally:
        link.stop()
        listener.close()


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
