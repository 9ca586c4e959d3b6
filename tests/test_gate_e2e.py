"""The gate as a guard sees it: a real service process, a real pty, a real broker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.publish as publish
import pytest

from drivers.rdm6300 import Rdm6300
from edge.cards import parse_card
from tests.helpers import (
    Broker,
    Listener,
    Node,
    Pty,
    SocatPair,
    cli,
    node_for,
    wait_for,
)

TZ = ZoneInfo("Asia/Shanghai")
PREFIX = "gatehouse/gate-test/"


def frame(card: str) -> bytes:
    return Rdm6300.encode(parse_card(card))


@pytest.fixture
def node(tmp_path: Path, broker: Broker, pty: Pty) -> Iterator[Node]:
    readers = [
        {"id": "main-in", "gate": "main", "port": pty.path, "protocol": "rdm6300"},
        {"id": "net-in", "gate": "main", "transport": "mqtt"},
    ]
    n = node_for(tmp_path, readers, broker.port, worker_hours="00:00-23:59").start(wait_ready=True)
    yield n
    n.stop()


def add(node: Node, card: str, *extra: str, kind: str = "resident") -> str:
    out = cli(
        node.config, "pass", "add", "--kind", kind, "--card", card, "--name", "王小明", *extra
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def swipe(pty: Pty, listener: Listener, card: str) -> dict:
    pty.write(frame(card))
    return listener.next("/decision")


def test_granted_card_opens_the_barrier_and_is_recorded(node: Node, pty: Pty, listener: Listener):
    pass_id = add(node, "01026F6C3A", "--unit", "3-1-502")
    decision = swipe(pty, listener, "01026F6C3A")
    assert decision["decision"] == "grant" and decision["reason"] == "ok"
    assert decision["pass_id"] == pass_id and decision["card"] == "****6C3A"
    assert decision["holder"] == "王**"  # masked outside the box
    opened = listener.next("/gate/main/open")
    assert opened["event_id"] == decision["event_id"] and opened["pulse_ms"] == 1000


def test_revoked_expired_and_unknown_cards_are_denied_with_their_reason(
    node: Node, pty: Pty, listener: Listener
):
    revoked = add(node, "0A0B0C0D0E")
    cli(node.config, "pass", "revoke", revoked, "--reason", "lost")
    # a pass must end in the future when it is issued: this one ends in 2 s, then we wait
    start = (datetime.now(TZ) - timedelta(days=2)).isoformat()
    ends = datetime.now(TZ) + timedelta(seconds=2)
    add(node, "1122334455", "--valid-from", start, "--valid-until", ends.isoformat(),
        kind="temporary")  # fmt: skip
    time.sleep(max(0.0, (ends - datetime.now(TZ)).total_seconds()) + 0.2)
    for card, reason in [
        ("0A0B0C0D0E", "revoked"),
        ("1122334455", "expired"),
        ("99AABBCCDD", "unknown_credential"),
    ]:
        decision = swipe(pty, listener, card)
        assert (decision["decision"], decision["reason"]) == ("deny", reason)
    assert not [t for t, _ in listener.seen + listener.drain() if t.endswith("/open")]


def test_card_registered_by_its_printed_decimal_is_granted_when_read_as_hex(
    node: Node, pty: Pty, listener: Listener
):
    add(node, "0040856634")
    decision = swipe(pty, listener, "01026F6C3A")
    assert decision["reason"] == "ok"


def test_corrupt_frame_gives_no_decision_and_the_next_good_one_does(
    node: Node, pty: Pty, listener: Listener
):
    add(node, "01026F6C3A")
    bad = bytearray(frame("01026F6C3A"))
    bad[11] ^= 0x01  # checksum digit
    pty.write(bytes(bad) + b"\x55\xaa garbage")
    assert [t for t, _ in listener.drain(0.5) if t.endswith("/decision")] == []
    decision = swipe(pty, listener, "01026F6C3A")
    assert decision["reason"] == "ok"
    rejected = node.reader("main-in")["rejected"]
    assert rejected.get("bad_checksum") == 1 and rejected.get("garbage", 0) >= 1


def test_card_held_on_the_reader_for_two_seconds_gives_one_decision(
    tmp_path: Path, broker: Broker, listener: Listener
):
    wire = SocatPair(tmp_path).start()
    node = node_for(tmp_path, [{"id": "main-in", "gate": "main", "port": wire.device}], broker.port)
    config = node.start(wait_ready=True).config
    try:
        add(node, "01026F6C3A")
        sim = cli(
            config, "simulate", "swipe", "--port", wire.wire, "--card", "01026F6C3A", "--hold", "2"
        )
        assert sim.returncode == 0, sim.stderr
        listener.next("/decision")
        assert [t for t, _ in listener.drain(1.0) if t.endswith("/decision")] == []
        assert node.ready()[1]["counts"]["debounced"] >= 10
        # lifted, and presented again once the debounce window (1.5 s) has passed
        time.sleep(1.6)
        cli(config, "simulate", "swipe", "--port", wire.wire, "--card", "01026F6C3A")
        assert listener.next("/decision")["reason"] == "ok"
    finally:
        node.stop()
        wire.stop()


def test_unplugged_reader_is_reopened_when_it_returns(
    tmp_path: Path, broker: Broker, listener: Listener
):
    wire = SocatPair(tmp_path).start()
    node = node_for(tmp_path, [{"id": "main-in", "gate": "main", "port": wire.device}], broker.port)
    node.start(wait_ready=True)
    try:
        add(node, "01026F6C3A")
        wire.stop()  # unplugged
        wait_for(lambda: node.reader("main-in").get("state") == "closed", 10, "reader closed")
        assert node.ready()[0] is False
        wire.start()  # plugged back in
        wait_for(lambda: node.reader("main-in").get("state") == "open", 10, "reader reopened")
        wire.write(frame("01026F6C3A"))
        assert listener.next("/decision")["reason"] == "ok"
    finally:
        node.stop()
        wire.stop()


def test_mqtt_swipe_is_decided_and_malformed_payloads_are_refused(
    node: Node, broker: Broker, listener: Listener
):
    add(node, "0040856634")
    for bad in [b"not json", b"[1]", b'{"card": 5}', b'{"card": "xyz"}']:
        publish.single(PREFIX + "reader/net-in/swipe", bad, qos=1, port=broker.port)
    publish.single(
        PREFIX + "reader/nobody/swipe", b'{"card": "0040856634"}', qos=1, port=broker.port
    )
    publish.single(
        PREFIX + "reader/net-in/swipe", b'{"card": "0040856634"}', qos=1, port=broker.port
    )
    decision = listener.next("/decision")
    assert decision["reader"] == "net-in" and decision["reason"] == "ok"
    assert node.ready()[1]["counts"]["refused:mqtt_swipe"] == 5


def test_stale_swipe_is_recorded_but_never_opens(node: Node, broker: Broker, listener: Listener):
    add(node, "0040856634")
    old = datetime.now().timestamp() - 60
    body = json.dumps({"card": "0040856634", "ts": old})
    publish.single(PREFIX + "reader/net-in/swipe", body, qos=1, port=broker.port)
    decision = listener.next("/decision")
    assert decision["decision"] == "grant" and decision["stale"] is True
    assert not [t for t, _ in listener.drain(0.5) if t.endswith("/open")]


def test_readiness_reports_database_broker_and_readers(node: Node):
    ok, body = node.ready()
    assert ok and body["database"]["ok"] and body["broker"]["ok"]
    assert body["readers"]["main-in"]["state"] == "open"
    assert body["readers"]["net-in"]["transport"] == "mqtt"


def test_status_is_retained_online_and_offline_after_stop(node: Node, broker: Broker):
    seen = Listener(broker.port, PREFIX + "status")
    assert seen.next("status") == "online"
    assert node.stop() == 0
    assert seen.next("status") == "offline"
    seen.close()


def test_a_silent_reader_shows_in_readiness(tmp_path: Path, broker: Broker, pty: Pty):
    reader = {"id": "main-in", "gate": "main", "port": pty.path, "silent_after_s": 1}
    node = node_for(tmp_path, [reader], broker.port).start()
    try:
        wait_for(lambda: node.reader("main-in").get("silent"), 10, "the reader to count as silent")
        assert node.ready()[0] is False
        pty.write(frame("01026F6C3A"))
        wait_for(lambda: node.ready()[0], 10, "the reader to be heard again")
    finally:
        node.stop()
