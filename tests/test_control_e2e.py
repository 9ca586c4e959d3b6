"""The control room as an officer meets it: `mosquitto_pub`-style inputs to a running node,
`alarm/<id>` on MQTT, the API over HTTP."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paho.mqtt.publish as publish

from drivers.rdm6300 import Rdm6300
from edge.cards import parse_card
from tests.helpers import Broker, Listener, Pty, cli, node_for, wait_for
from tests.test_desk_e2e import call

PREFIX = "gatehouse/gate-test/"


def test_alarms_from_mqtt_escalate_resolve_and_close(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty
):
    reader = {"id": "main-in", "gate": "main", "port": pty.path, "debounce_ms": 100}
    node = node_for(tmp_path, [reader], broker.port)
    text = node.config.read_text() + (
        '[alarms]\nescalate_after_s = {"2" = 1.0}\n'
        '[[alarm_sources]]\nid = "door-3"\ngate = "main"\nlocation = "3号门"\n'
    )
    node.config.write_text(text)
    op = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    node.start(wait_ready=True)
    try:
        send = lambda topic, body: publish.single(  # noqa: E731
            PREFIX + topic, json.dumps(body), qos=1, port=broker.port
        )
        send("alarm-input/door-3", {"type": "door_forced", "state": "active"})
        raised = listener.next("/alarm/1")
        assert raised["type"] == "door_forced" and raised["state"] == "new"
        escalated = listener.next("/alarm/1")  # left alone for a second
        assert escalated["escalation_level"] == 1
        assert call(node, "POST", "/api/v1/alarms/1/ack", op)[0] == 200
        assert listener.next("/alarm/1")["acked_by"] == "值班员"
        status, body = call(node, "POST", "/api/v1/alarms/1/resolve", op, {"notes": "x"})
        assert status == 422 and "resolution" in body["detail"]
        call(node, "POST", "/api/v1/alarms/1/resolve", op, {"resolution": "false_device"})
        assert listener.next("/alarm/1")["state"] == "resolved"
        send("alarm-input/door-3", {"type": "door_forced", "state": "normal"})
        assert listener.next("/alarm/1")["state"] == "closed"

        send("intercom/ic-2/event", {"event": "emergency"})
        assert listener.next("/alarm/2")["priority"] == 1
        publish.single(PREFIX + "alarm-input/door-9", b"not json", qos=1, port=broker.port)
        wait_for(lambda: node.ready()[1]["counts"].get("refused:alarm_input") == 1, 10, "refusal")

        for _ in range(3):  # the same unknown card, presented again and again
            pty.write(Rdm6300.encode(parse_card("99AABBCCDD")))
            listener.next("/gate/main/decision")
            time.sleep(0.2)  # lifted and presented again: past the reader's 100 ms debounce
        repeated = listener.next("/alarm/3")
        assert repeated["type"] == "repeated_denial" and repeated["gate"] == "main"
        # no field of it carries the card whole (issue 14): MQTT reaches every console
        assert "AABBCCDD" not in json.dumps(repeated).upper(), repeated
        assert repeated["source"] == "gate:main:card:****CCDD", repeated

        _, log = call(node, "GET", "/api/v1/duty-log", op)
        texts = [e["text"] for e in log["items"]]
        assert any("alarm 1 raised" in t for t in texts) and any("closed" in t for t in texts)
    finally:
        node.stop()


def test_a_reader_that_goes_away_raises_reader_silent_and_clears_when_back(
    tmp_path: Path, broker: Broker, listener: Listener
):
    from tests.helpers import SocatPair

    wire = SocatPair(tmp_path).start()
    node = node_for(tmp_path, [{"id": "main-in", "gate": "main", "port": wire.device}], broker.port)
    node.start(wait_ready=True)
    try:
        wire.stop()
        alarm = listener.next("/alarm/1", timeout=15)
        assert alarm["type"] == "reader_silent" and alarm["active"] is True
        wire.start()
        back = listener.next("/alarm/1", timeout=15)
        assert back["active"] is False
    finally:
        node.stop()
        wire.stop()


def test_an_undeclared_alarm_type_is_raised_as_unknown_and_a_site_type_as_declared(
    tmp_path: Path, broker: Broker, listener: Listener
):
    """A panel's typo of `fire` is not a P3 with no procedure, and not dropped either: it is
    raised as unknown_type (P2) saying what was sent; a type the site declared in its
    config gets the priority and procedure given there (issue 14)."""
    node = node_for(tmp_path, [], broker.port)
    node.config.write_text(node.config.read_text() + (
        '[alarms.priorities]\nlift_trapped = 1\n'
        '[alarms.checklists]\nlift_trapped = ["call the lift company", "talk to the people"]\n'
    ))  # fmt: skip
    op = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    node.start(wait_ready=True)
    try:
        for source, kind in (("panel-1", "fier"), ("lift-2", "lift_trapped")):
            publish.single(
                PREFIX + f"alarm-input/{source}",
                json.dumps({"type": kind, "state": "active", "location": "2号楼"}),
                qos=1,
                port=broker.port,
            )
        typo, lift = listener.next("/alarm/1"), listener.next("/alarm/2")
        assert (typo["type"], typo["priority"]) == ("unknown_type", 2), typo
        assert "'fier'" in typo["notes"] and typo["location"] == "2号楼"
        assert (lift["type"], lift["priority"]) == ("lift_trapped", 1), lift
        _, one = call(node, "GET", "/api/v1/alarms/2", op)
        assert [s["step"] for s in one["checklist"]] == ["call the lift company",
                                                         "talk to the people"]  # fmt: skip
        assert node.ready()[1]["counts"].get("alarm_input:undeclared") == 1
    finally:
        node.stop()


def test_device_alarms_are_taken_up_after_a_restart_and_a_supervisor_may_close_any(
    tmp_path: Path, broker: Broker, listener: Listener
):
    """Alarms that always end (issue 14): a reader plugged back while the service was down
    clears its alarm at the next start; the alarm of a reader taken out of the config is
    closed with a note; an admin closes any alarm by force, with a reason, audited."""
    from tests.helpers import SocatPair, write_config

    wire = SocatPair(tmp_path).start()
    node = node_for(tmp_path, [{"id": "main-in", "gate": "main", "port": wire.device}], broker.port)
    admin = cli(node.config, "user", "add", "主管", "--role", "admin").stdout.strip()
    op = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    node.start(wait_ready=True)
    try:
        wire.stop()  # unplugged
        assert listener.next("/alarm/1", timeout=15)["active"] is True
        node.stop()
        wire.start()  # plugged back while the service was down
        node.start()
        back = listener.next("/alarm/1", timeout=15)
        assert back["type"] == "reader_silent" and back["active"] is False, back

        wire.stop()  # unplugged again, and then taken out of the config for good
        assert listener.next("/alarm/1", timeout=15)["active"] is True
        node.stop()
        write_config(node.config, broker_port=broker.port, readers=[], api_port=node.api_port)
        node.start()
        retired = listener.next("/alarm/1", timeout=15)
        assert retired["state"] == "closed" and retired["active"] is False, retired
        _, one = call(node, "GET", "/api/v1/alarms/1", op)
        assert any("no longer configured" in (e["detail"] or "") for e in one["history"]), one

        publish.single(PREFIX + "alarm-input/door-9", json.dumps(
            {"type": "door_forced", "state": "active"}), qos=1, port=broker.port)  # fmt: skip
        assert listener.next("/alarm/2")["active"] is True
        path = "/api/v1/alarms/2/force-close"
        assert call(node, "POST", path, op, {"reason": "门磁坏了"})[0] == 403
        status, refused = call(node, "POST", path, admin, {"reason": " "})
        assert status == 422 and "reason" in refused["detail"], refused
        status, closed = call(node, "POST", path, admin, {"reason": "门磁坏了，已报修"})
        assert status == 200 and closed["state"] == "closed", closed
        _, trail = call(node, "GET", "/api/v1/audit", admin)
        assert any(a["action"] == "alarm:force_close" for a in trail["items"]), trail
    finally:
        node.stop()
        wire.stop()
