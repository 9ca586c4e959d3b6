"""Home Assistant MQTT discovery (issue 16), on a real gate and broker: behind its config
switch the node announces each gate's last decision and mode, a supervised door, and each
reader and camera, retained, with its own retained ``status`` as their availability; the
topics they name carry what the node publishes (a camera whose stream stops goes OFF)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import Broker, Listener, Stream, node_for


def test_home_assistant_finds_each_gate_s_decision_mode_and_door(tmp_path: Path, broker: Broker):
    node = node_for(tmp_path, [{"id": "net", "gate": "main", "transport": "mqtt"}], broker.port)
    stream = Stream().start()
    text = (
        node.config.read_text().replace(
            '[[gates]]\nid = "main"\n', '[[gates]]\nid = "main"\n[gates.door]\ncontact = true\n'
        )
        + f'[[cameras]]\nid = "cam-main"\ngate = "main"\nsource = "{stream.url}"\n'
    )

    node.config.write_text(text.replace('prefix = "gatehouse"\n',
                                        'prefix = "gatehouse"\nha_discovery = true\n'))  # fmt: skip
    node.start(wait_ready=True)
    ha = Listener(broker.port, "homeassistant/#")
    try:
        configs = {}
        while len(configs) < 7:
            topic, body = ha.messages.get(timeout=15)
            configs[topic] = body
        assert sorted(configs) == [
            "homeassistant/binary_sensor/gatehouse_gate_test_camera_cam_main/config",
            "homeassistant/binary_sensor/gatehouse_gate_test_main_door/config",
            "homeassistant/binary_sensor/gatehouse_gate_test_reader_net/config",
            "homeassistant/sensor/gatehouse_gate_test_main_decision/config",
            "homeassistant/sensor/gatehouse_gate_test_main_mode/config",
            "homeassistant/sensor/gatehouse_gate_test_side_decision/config",
            "homeassistant/sensor/gatehouse_gate_test_side_mode/config",
        ]
        door = configs["homeassistant/binary_sensor/gatehouse_gate_test_main_door/config"]
        assert door["state_topic"] == "gatehouse/gate-test/gate/main/contact"
        assert (door["payload_on"], door["device_class"]) == ("open", "door")
        mode = configs["homeassistant/sensor/gatehouse_gate_test_main_mode/config"]
        assert all(c["availability_topic"] == "gatehouse/gate-test/status"
                   for c in configs.values())  # fmt: skip
        # what the topics carry: the node's retained status and the gate's retained mode
        node_side = Listener(broker.port, "gatehouse/gate-test/#")
        retained = dict(node_side.drain(2.0))
        node_side.close()
        assert retained["gatehouse/gate-test/status"] == "online"
        assert retained[mode["state_topic"]]["mode"] == "normal"
        camera = configs["homeassistant/binary_sensor/gatehouse_gate_test_camera_cam_main/config"]
        reader = configs["homeassistant/binary_sensor/gatehouse_gate_test_reader_net/config"]
        assert camera["device_class"] == reader["device_class"] == "connectivity"
        assert retained[reader["state_topic"]] == {"ok": True, "state": "open", "silent": False}
        assert retained[camera["state_topic"]]["ok"] is True
        # the camera's stream stops: its state goes to not ok, retained, with why
        watch = Listener(broker.port, camera["state_topic"])
        stream.stop()
        while (got := watch.next("/camera/cam-main/state", 20))["ok"]:
            pass
        assert got["offline"] is True, got
        watch.close()
    finally:
        ha.close()
        node.stop()
        stream.stop()


def test_without_the_switch_nothing_is_announced(tmp_path: Path, broker: Broker):
    node = node_for(tmp_path, [], broker.port)
    node.start(wait_ready=True)
    ha = Listener(broker.port, "homeassistant/#")
    try:
        assert ha.drain(2.0) == []
    finally:
        ha.close()
        node.stop()
