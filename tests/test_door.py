"""Door and barrier supervision (issue 16): the pure state of a door, and on real processes
(a gate and its broker) a contact opened with no grant raising ``door_forced`` and clearing
when it closes, an opening after a grant or an exit request that is not, a door held open
raising ``door_held`` and clearing, grants that never move the contact raising
``contact_stuck``, and the gate's timeline lining the contact up with the access events."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from edge.config import DoorCfg
from edge.door import Door
from tests.helpers import Broker, Listener, Node, cli, http_call, node_for, publish, wait_for

CARDS = ("0000007001", "0000007002", "0000007003", "0000007004")
CFG = DoorCfg(contact=True, held_open_s=30, window_s=10, stuck_after_grants=3)


@pytest.mark.parametrize(
    ("steps", "said"),
    [
        ([("open", 100)], "forced"),  # nothing let anyone through
        ([("grant", 100), ("open", 105)], "opened"),
        ([("grant", 100), ("open", 111)], "forced"),  # the grant's window had passed
        ([("exit", 100), ("open", 101)], "opened"),  # the exit button
        ([("open", 100), ("open", 101)], None),  # a repeated report says nothing new
        ([("grant", 100), ("open", 101), ("closed", 102)], "closed"),
        # one grant, one opening: opened again behind it is forced
        ([("grant", 100), ("open", 101), ("closed", 102), ("open", 103)], "forced"),
    ],
)
def test_a_contact_change_is_judged_by_what_came_before_it(steps, said):
    door = Door(CFG)
    out = None
    for what, at in steps:
        if what in ("grant", "exit"):
            door.authorise(at, grant=what == "grant")
        else:
            out = door.contact(what == "open", at)
    assert out == said


def test_held_and_stuck():
    door = Door(CFG)
    assert door.held(0) is None  # no report yet: not known
    door.authorise(0)
    door.contact(True, 1)
    assert not door.held(31) and door.held(31.5)
    door.contact(False, 40)
    assert door.held(100) is False
    for t in (200, 210):
        door.authorise(t)
    assert not door.stuck()
    door.authorise(220)
    assert door.stuck()  # three grants, and the barrier never moved
    door.contact(True, 221)
    assert not door.stuck()


def test_a_door_held_open_by_its_gate_s_mode_is_neither_forced_held_nor_stuck():
    door = Door(CFG)
    door.contact(False, 0)
    door.hold(True, 100)
    assert door.contact(True, 200) == "opened"  # long after the last grant: our mode's
    for t in (201, 202, 203, 204):
        door.authorise(t)  # everybody through while the barrier stays up
    assert door.held(500) is False and not door.stuck()
    door.hold(True, 505)
    door.hold(False, 510)  # back to normal: open too long counts from the hold's end
    assert not door.held(530) and door.held(536)
    door.contact(False, 540)
    assert door.contact(True, 560) == "forced"  # after the hold, supervised as before


def door_node(tmp_path: Path, broker: Broker, **door: float) -> Node:
    """A gate (not started) whose main gate's barrier reports its position, held open 3 s
    at most, with an MQTT reader ``net``."""
    node = node_for(tmp_path, [{"id": "net", "gate": "main", "transport": "mqtt"}], broker.port)
    table = "".join(f"{k} = {v}\n" for k, v in {"held_open_s": 3, **door}.items())
    node.config.write_text(
        node.config.read_text().replace(
            '[[gates]]\nid = "main"\n',
            f'[[gates]]\nid = "main"\n[gates.door]\ncontact = true\n{table}',
        )
    )
    return node


def metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:
        return r.read().decode()


def test_a_door_opened_with_no_grant_is_forced_one_left_open_is_held_and_a_dead_contact_stuck(
    tmp_path: Path, broker: Broker
):
    node = door_node(tmp_path, broker, window_s=5, stuck_after_grants=3)
    admin = cli(node.config, "user", "add", "陈主管", "--role", "admin").stdout.strip()
    officer = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    url = f"http://127.0.0.1:{node.api_port}"
    node.start(wait_ready=True)

    def alarm(kind: str) -> dict[str, Any] | None:
        page = http_call(url, "GET", "/api/v1/alarms?limit=50", officer)[1]
        found = [a for a in page["items"] if a["type"] == kind]
        return found[0] if found else None

    def door() -> dict[str, Any]:
        status, got = http_call(url, "GET", "/api/v1/doors/main", officer)
        assert status == 200, got
        return got

    def contact(state: str) -> None:
        publish(broker.port, "gate/main/contact", {"state": state})
        wait_for(lambda: door()["state"] == state, 10, f"the door {state}")

    def swipe(card: str) -> None:
        count = len(door()["items"])
        publish(broker.port, "reader/net/swipe", {"card": card})
        wait_for(lambda: len(door()["items"]) > count, 10, "the grant")

    try:
        for card in CARDS:  # four residents (one card swiped twice is debounced)
            status, made = http_call(url, "POST", "/api/v1/passes", admin, {
                "kind": "resident", "card": card, "name": "张三", "unit": "5-1203"})  # fmt: skip
            assert status == 201, made
        contact("closed")

        # opened with nothing before it: forced, at the gate, and clear when it closes
        contact("open")
        forced = wait_for(lambda: alarm("door_forced"), 10, "door_forced")
        assert forced["gate"] == "main" and forced["active"] and forced["priority"] == 2, forced
        contact("closed")
        wait_for(lambda: not alarm("door_forced")["active"], 10, "door_forced to clear")

        # after a grant, and after the exit button: opened, not forced
        swipe(CARDS[0])
        contact("open")
        contact("closed")
        publish(broker.port, "gate/main/exit", {})
        wait_for(lambda: any(i.get("what") == "exit_request" for i in door()["items"]), 10,
                 "the exit request")  # fmt: skip
        contact("open")
        assert not alarm("door_forced")["active"]
        whats = [i.get("what") or i["decision"] for i in reversed(door()["items"])]
        assert whats == ["closed", "forced", "closed", "grant", "opened", "closed",
                         "exit_request", "opened"], whats  # fmt: skip

        # left open: held, then clear once closed
        held = wait_for(lambda: (a := alarm("door_held")) and a["active"] and a, 15, "door_held")
        assert held["gate"] == "main" and door()["held"]
        contact("closed")
        wait_for(lambda: not alarm("door_held")["active"], 10, "door_held to clear")

        # three grants that never move the barrier: its contact is stuck
        for card in CARDS[1:]:
            swipe(card)
        stuck = wait_for(lambda: (a := alarm("contact_stuck")) and a["active"] and a, 10,
                         "contact_stuck")  # fmt: skip
        assert stuck["gate"] == "main" and door()["stuck"]
        contact("open")
        wait_for(lambda: not alarm("contact_stuck")["active"], 10, "contact_stuck to clear")

        # a gate with no contact, and a malformed report: refused, counted, nothing raised
        publish(broker.port, "gate/side/contact", {"state": "open"})
        publish(broker.port, "gate/main/contact", {"state": "ajar"})
        assert http_call(url, "GET", "/api/v1/doors/side", officer)[0] == 404
        refused = 'gatehouse_refused_inputs_total{input="contact"} 2.0'
        wait_for(lambda: refused in metrics(url), 10, "the two refusals counted")
    finally:
        node.stop()


def test_a_gate_held_open_by_the_control_room_raises_no_door_alarm_until_it_is_set_back(
    tmp_path: Path, broker: Broker
):
    node = door_node(tmp_path, broker, window_s=1, stuck_after_grants=2)
    admin = cli(node.config, "user", "add", "陈主管", "--role", "admin").stdout.strip()
    url = f"http://127.0.0.1:{node.api_port}"
    node.start(wait_ready=True)
    listener = Listener(broker.port, "gatehouse/gate-test/gate/main/open")

    def door_alarms() -> list[str]:
        page = http_call(url, "GET", "/api/v1/alarms?limit=50", admin)[1]
        return [a["type"] for a in page["items"] if a["source"] == "door:main"]

    def mode(body: dict[str, Any]) -> None:
        status, said = http_call(url, "PUT", "/api/v1/gates/main/mode", admin, body)
        assert status == 200, said

    try:
        for card in CARDS[:3]:
            status, made = http_call(url, "POST", "/api/v1/passes", admin, {
                "kind": "resident", "card": card, "name": "张三", "unit": "5-1203"})  # fmt: skip
            assert status == 201, made
        publish(broker.port, "gate/main/contact", {"state": "closed"})
        mode({"mode": "held_open", "reason": "火警：消防通道"})
        assert listener.next("/gate/main/open", 10)["hold"] is True  # within a tick
        time.sleep(1.5)  # past window_s: without the hold, this opening would be forced
        publish(broker.port, "gate/main/contact", {"state": "open"})
        for card in CARDS[:3]:  # everybody out; the barrier is up and does not move
            publish(broker.port, "reader/net/swipe", {"card": card})
        wait_for(lambda: len(http_call(url, "GET", "/api/v1/doors/main", admin)[1]["items"])
                 >= 4, 10, "the opening and the grants")  # fmt: skip
        time.sleep(4)  # past held_open_s and a few ticks of the watch
        status, seen = http_call(url, "GET", "/api/v1/doors/main", admin)
        assert seen["state"] == "open" and not seen["held"] and not seen["stuck"], seen
        assert door_alarms() == [], door_alarms()

        # set back to normal with the barrier still up: supervised again, held too long
        mode({"mode": "normal", "reason": "消防车已离开"})
        wait_for(lambda: "door_held" in door_alarms(), 15, "door_held after the hold")
        assert "door_forced" not in door_alarms()
    finally:
        listener.close()
        node.stop()
