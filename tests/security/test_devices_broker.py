"""Issue 11, what an MQTT device can do: the review's attacks through a real Mosquitto and
real ``gatehouse run`` processes.

- finding 1: a device's login connecting with the node's client id (``gatehouse-<node>``)
  pushed the node off the broker (10 swipes, 0 decisions). The shipped broker config
  (config/mosquitto/auth.conf) now ties client ids to logins;
- finding 4: a swipe a reader publishes with the retain flag is handed to the node again on
  every subscribe: it must never open the barrier on a restart or a reconnect, and is
  counted;
- finding 13: a swipe's ``ts`` of NaN, Infinity or a time in the future must not pass for a
  fresh read: a future stamp stayed "now" for as long as it was ahead, so a swipe held in
  the broker's backlog opened when a fresh one would long have been stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish
import pytest

from edge.cards import parse_card
from edge.inputs import FUTURE_SKEW_S, LATEST_TS
from tests.helpers import Broker, Listener, Node, cli, node_for, wait_for
from tests.test_broker_acl import (
    ALARM_INPUT,
    INTERCOM,
    KNOWN,
    NODE,
    READER,
    RELAY,
    UNKNOWN,
    WATCH,
    Sub,
    counts,
    make_node,
    mqtt_reader,
    send,
    shipped_broker,
)

PREFIX = f"gatehouse/{NODE}/"
SWIPE = PREFIX + f"reader/{READER}/swipe"
OPEN = PREFIX + "gate/east-main/open"
KNOWN_MASKED, UNKNOWN_MASKED = parse_card(KNOWN).masked, parse_card(UNKNOWN).masked


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[Broker]:
    """The broker as config/mosquitto ships it, plus a read-only login for the test."""
    with shipped_broker(tmp_path, f"\nuser {WATCH}\ntopic read {PREFIX}#\n") as broker:
        yield broker


def subscribed(node: Node, broker: Broker) -> None:
    """Wait until the node's subscription is in place at the broker: ready means connected,
    and its SUBSCRIBE may still be on the way (a swipe sent before it reaches nobody, and a
    retained one would then come as a replay). One swipe from the reader, decided."""
    before = counts(node).get("deny:unknown_credential", 0)
    send(broker, READER, SWIPE, {"card": UNKNOWN})
    wait_for(lambda: counts(node).get("deny:unknown_credential", 0) > before, 20, "subscribed")


class Decisions:
    """The node's decisions as a subscriber of its own sees them, read in order."""

    def __init__(self, sub: Sub) -> None:
        self.sub = sub
        self.read = 0

    def next(self) -> dict[str, Any]:
        wait_for(lambda: len(self.sub.got) > self.read, 20, "the next decision")
        self.read += 1
        return self.sub.got[self.read - 1][1]  # type: ignore[no-any-return]


# -- finding 1: a device's login cannot take the node's client id -------------------------


@pytest.mark.parametrize("login", [READER, RELAY, ALARM_INPUT, INTERCOM])
def test_a_devices_login_cannot_take_the_nodes_client_id(
    tmp_path: Path, shipped: Broker, login: str
):
    """A device connects as itself but asks for the node's client id, and stays connected;
    then a reader sends ten swipes. Before client ids were tied to logins the broker closed
    the node's connection (and, the thief's session being clean, threw the node's
    subscriptions away): the swipes reached nobody, and the two went on pushing each
    other off."""
    node = make_node(tmp_path / "node", shipped, NODE, [mqtt_reader(READER)])
    node.start(wait_ready=True)
    subscribed(node, shipped)
    subs: list[Sub] = []
    try:
        # connected and subscribed: the broker has dealt with the client id by now
        thief = Sub(shipped, login, PREFIX + "#", f"gatehouse-{NODE}")
        subs.append(thief)
        # a reader has one connection: if the thief is the reader, it sends the swipes
        reader = thief if login == READER else Sub(shipped, READER, SWIPE, "reader-east-in")
        subs.append(reader)
        for _ in range(10):
            reader.send(SWIPE, {"card": KNOWN})
        wait_for(lambda: counts(node).get("grant:ok") == 10, 20, "ten decisions")
        link = node.ready()[1]["broker"]
        assert link["connected"] and link["connects"] == 1  # never pushed off
        # and the thief reads only what its own login may (the relay: its gate's opens)
        assert set(thief.topics()) <= ({OPEN} if login == RELAY else set())
    finally:
        for sub in subs:
            sub.close()
        node.stop()


# -- finding 4: a retained swipe, across two restarts and a reconnect ---------------------


def test_a_retained_swipe_never_opens_the_barrier_on_a_restart_or_a_reconnect(
    tmp_path: Path, shipped: Broker
):
    node = make_node(tmp_path / "node", shipped, NODE, [mqtt_reader(READER)])
    node.start(wait_ready=True)
    subscribed(node, shipped)
    # the gate's relay, as it is deployed: its own login, its own open topic
    relay = Sub(shipped, RELAY, OPEN, "relay-east-main")
    # the decisions, in a session the broker keeps while it restarts
    watch = Sub(shipped, WATCH, PREFIX + "gate/east-main/decision", WATCH, persistent=True)
    reader = Sub(shipped, READER, SWIPE, "reader-east-in")
    decisions = Decisions(watch)
    try:
        reader.send(SWIPE, {"card": KNOWN}, retain=True)
        # its live delivery is a real swipe (MQTT sets the retain flag only on a replay)
        live = decisions.next()
        assert (live["card"], live["reason"], live["stale"]) == (KNOWN_MASKED, "ok", False)
        wait_for(lambda: relay.got, 10, "the live swipe's open")

        def replayed(times: int) -> None:
            """The broker hands the retained swipe over again: recorded as a replay, never
            opened, counted; a later swipe shows nothing else is coming."""
            again = decisions.next()
            assert (again["card"], again["reason"], again["stale"]) == (KNOWN_MASKED, "ok", True)
            reader.send(SWIPE, {"card": UNKNOWN})  # not retained
            assert decisions.next()["card"] == UNKNOWN_MASKED
            seen = node.ready()[1]
            assert seen["broker"]["retained:mqtt_swipe"] == times
            assert seen["counts"].get("stale") == times
            # this process sent no open at all (QoS 0 opens are not queued for a relay
            # that is reconnecting, so the node's own count is the proof)
            assert seen["counts"].get("commands_sent", 0) == 0

        for _restart in range(2):
            node.stop()
            node.start(wait_ready=True)  # subscribes again: the retained swipe comes back
            replayed(1)
        shipped.stop()  # the broker restarts under the running node: it reconnects
        shipped.start()
        replayed(2)
        assert [body["event_id"] for _, body in relay.got] == [live["event_id"]]
    finally:
        for sub in (relay, watch, reader):
            sub.close()
        node.stop()


# -- finding 13: ts of NaN, Infinity or the future ----------------------------------------

NET = "gatehouse/gate-test/reader/net-in/swipe"
CARD, STRANGER = "0040856634", "0A0B0C0D0E"  # a resident's card; a card nobody was given
MASKED, STRANGER_MASKED = parse_card(CARD).masked, parse_card(STRANGER).masked
# raw JSON numbers as a device can send them: Python's json module would take the first
# three literals as floats (nan, inf, -inf); pydantic's parser must refuse them as well
RAW_TS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"nan", b"inf", b"-0e"]


def net_node(tmp_path: Path, broker: Broker, **rules: Any) -> Node:
    reader = {"id": "net-in", "gate": "main", "transport": "mqtt", "debounce_ms": 0}
    node = node_for(tmp_path, [reader], broker.port, **rules)
    out = cli(node.config, "pass", "add", "--kind", "resident", "--card", CARD, "--name", "赵六")
    assert out.returncode == 0, out.stderr
    return node


def swipe(broker: Broker, ts: bytes | float, card: str = CARD) -> None:
    """``mosquitto_pub -q 1`` of a swipe whose ts is written out exactly as given."""
    raw = ts if isinstance(ts, bytes) else repr(ts).encode()
    publish.single(NET, b'{"card": "%s", "ts": %s}' % (card.encode(), raw), qos=1,
                   port=broker.port)  # fmt: skip


def net_subscribed(broker: Broker, listener: Listener) -> None:
    """As ``subscribed`` above, on the plain broker: the stranger's swipe, decided."""
    swipe(broker, time.time(), STRANGER)
    assert listener.next("/decision")["card"] == STRANGER_MASKED


def until_the_stranger(listener: Listener) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Decisions and opens up to the decision for the stranger's card, sent last: the node
    has handled everything sent before it by then (one broker, one subscriber: in order)."""
    decided: list[dict[str, Any]] = []
    while not decided or decided[-1]["card"] != STRANGER_MASKED:
        decided.append(listener.next("/decision"))
    opens = [body for topic, body in listener.seen if topic.endswith("/open")]
    return decided[:-1], opens


def test_a_swipe_stamped_nan_infinite_or_in_the_future_never_opens(
    tmp_path: Path, broker: Broker, listener: Listener
):
    node = net_node(tmp_path, broker).start(wait_ready=True)
    try:
        net_subscribed(broker, listener)
        now = time.time()
        future = [now + 3600, now + 60, now + 5, LATEST_TS]  # all within 2000-2100
        for ts in future:
            swipe(broker, ts)
        for raw in RAW_TS:
            swipe(broker, raw)
        swipe(broker, time.time(), STRANGER)
        assert until_the_stranger(listener) == ([], [])  # nothing decided, nothing opened
        seen = node.ready()[1]["counts"]
        assert seen.get("refused:mqtt_swipe") == len(future) + len(RAW_TS)
        assert seen.get("grant:ok") is None  # no bad stamp was decided at all
        # the first refusal is logged with its reason (repeats of a kind: once a minute)
        assert "s ahead of this node's clock" in node.log.read_text()
    finally:
        node.stop()


def test_a_swipe_stamped_within_the_clock_skew_allowance_opens(
    tmp_path: Path, broker: Broker, listener: Listener
):
    """A reader's clock a little ahead (within FUTURE_SKEW_S) is not refused: the read
    counts as taken on arrival."""
    node = net_node(tmp_path, broker).start(wait_ready=True)
    try:
        net_subscribed(broker, listener)
        swipe(broker, time.time() + FUTURE_SKEW_S / 2)
        decided = listener.next("/decision")
        assert (decided["reason"], decided["stale"]) == ("ok", False)
        assert listener.next("/open")["event_id"] == decided["event_id"]
    finally:
        node.stop()


def test_a_future_stamp_held_in_the_brokers_backlog_never_opens_later_than_a_fresh_one(
    tmp_path: Path, broker: Broker, listener: Listener
):
    """The node is away; three swipes wait in its session at the broker: one stamped when
    it was sent, one a little ahead (within the allowance), one an hour ahead. By the time
    the node is back the first two are older than ``stale_after_s`` and recorded as stale;
    the third is refused. None opens. The one an hour ahead counted as "now" and opened."""
    stale_after = 1.0
    node = net_node(tmp_path, broker, stale_after_s=stale_after).start(wait_ready=True)
    try:
        net_subscribed(broker, listener)
    finally:
        node.stop()  # its persistent session stays at the broker, queueing its swipes
    sent = time.time()
    for ts in (sent, sent + FUTURE_SKEW_S * 0.9, sent + 3600):
        swipe(broker, ts)
    swipe(broker, time.time(), STRANGER)
    # the node comes back once the first two stamps are past stale_after_s (a wait for the
    # clock to move; nothing is asserted about how long anything takes)
    while time.time() <= sent + FUTURE_SKEW_S + stale_after:
        time.sleep(0.1)
    node.start(wait_ready=True)
    try:
        decided, opens = until_the_stranger(listener)
        assert [(d["card"], d["reason"], d["stale"]) for d in decided] == [
            (MASKED, "ok", True),
            (MASKED, "ok", True),
        ]
        assert opens == []
        assert node.ready()[1]["counts"].get("refused:mqtt_swipe") == 1  # the hour ahead
    finally:
        node.stop()
