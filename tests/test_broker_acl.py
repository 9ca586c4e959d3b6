"""The shipped per-device credentials and ACL, on a real Mosquitto."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import ROOT, Broker, cli, node_for, wait_for


def test_each_device_may_touch_only_its_own_topics(tmp_path: Path):
    passwd = tmp_path / "passwd"
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.fail("mosquitto_passwd is missing: make test installs the mosquitto package")
    for i, user in enumerate(["gatehouse-gate-test", "net-in", "main"]):
        flags = ["-c"] if i == 0 else []
        subprocess.run([tool, *flags, "-b", str(passwd), user, f"pw-{user}"], check=True)
    acl = (ROOT / "config/mosquitto/gatehouse.acl").read_text().replace("gate-east", "gate-test")
    (tmp_path / "acl").write_text(acl)
    auth = (ROOT / "config/mosquitto/auth.conf").read_text()
    auth = auth.replace("allow_anonymous false\n", "")
    auth = auth.replace("/etc/mosquitto/gatehouse.passwd", str(passwd))
    auth = auth.replace("/etc/mosquitto/gatehouse.acl", str(tmp_path / "acl"))
    broker = Broker(tmp_path, extra=auth)
    broker.start()
    n = node_for(
        tmp_path,
        [
            {"id": "net-in", "gate": "main", "transport": "mqtt"},
            {"id": "net-out", "gate": "main", "transport": "mqtt", "direction": "out"},
        ],
        broker_port=broker.port,
    )
    config = n.config
    node_login = 'username = "gatehouse-gate-test"\npassword = "pw-gatehouse-gate-test"'
    text = config.read_text().replace('prefix = "gatehouse"', f'prefix = "gatehouse"\n{node_login}')
    config.write_text(text)
    cli(config, "pass", "add", "--kind", "resident", "--card", "0040856634", "--name", "王五")
    node = n.start(wait_ready=True)
    try:
        relay_got: list[str] = []
        relay = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="relay-main")
        relay.username_pw_set("main", "pw-main")
        relay.on_connect = lambda c, *_: c.subscribe("gatehouse/gate-test/#", qos=1)
        relay.on_message = lambda _c, _u, m: relay_got.append(m.topic)
        relay.connect("127.0.0.1", broker.port)
        relay.loop_start()
        auth_reader = {"username": "net-in", "password": "pw-net-in"}
        topic = "gatehouse/gate-test/reader/{}/swipe"
        # reader net-in may not speak for net-out: the broker drops it
        publish.single(
            topic.format("net-out"),
            '{"card": "0040856634"}',
            qos=1,
            port=broker.port,
            auth=auth_reader,
        )
        publish.single(
            topic.format("net-in"),
            '{"card": "0040856634"}',
            qos=1,
            port=broker.port,
            auth=auth_reader,
        )
        wait_for(lambda: "gatehouse/gate-test/gate/main/open" in relay_got, 10, "the relay's open")
        # a last swipe, after both: once it is decided, anything the broker let through before
        # it has been decided too (one broker, one subscriber: delivered in order)
        publish.single(topic.format("net-in"), '{"card": "99AABBCCDD"}', qos=1,
                       port=broker.port, auth=auth_reader)  # fmt: skip
        counts = lambda: node.ready()[1]["counts"]  # noqa: E731
        wait_for(lambda: counts().get("deny:unknown_credential") == 1, 10, "the last swipe")
        assert counts().get("grant:ok") == 1  # only the reader's own swipe got through
        assert all(t.endswith("/gate/main/open") for t in relay_got)  # the relay sees nothing else
        relay.loop_stop()
    finally:
        node.stop()
        broker.stop()
