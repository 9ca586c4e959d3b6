"""The shipped per-device credentials and ACL, on a real Mosquitto with auth.conf: every kind
of device, logged in as its own user, does its job through a real node, and nothing else.

The broker runs config/mosquitto/gatehouse.acl as shipped, its example node "gate-east"
renamed to the tests' node "gate-test"; the device logins are the file's worked example."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.exception import MQTTException

from drivers.rdm6300 import Rdm6300
from edge.cards import parse_card
from tests.helpers import ROOT, Broker, Node, Pty, cli, free_port, node_for, wait_for
from tests.test_desk_e2e import call

NODE, WEST = "gate-test", "gate-west"  # the node under test; a second node on the same broker
SERVICE = f"gatehouse-{NODE}"
# the worked example's devices (config/mosquitto/gatehouse.acl): node gate-east, gate east-main
READER, OTHER_READER = "east-in", "east-out"
RELAY = "east-main"  # the relay's login is its gate's id
ALARM_INPUT, INTERCOM = "east-fire-panel", "east-intercom"
DEVICES = [READER, OTHER_READER, RELAY, ALARM_INPUT, INTERCOM]
KNOWN, UNKNOWN = "0040856634", "99AABBCCDD"
PANEL = "东门消防主机"  # where the fire panel is
WEST_READER = "gate-west-in"  # west's reader "east-in": same id, its own login name
# the tests' own read-only login on the node's tree: with client ids tied to logins
# (auth.conf), a second connection of the service's own login would push the node off
WATCH = "test-watch"
TEST_LOGINS = (
    f"\nuser gatehouse-{WEST}\ntopic readwrite gatehouse/{WEST}/#\n"
    f"\nuser {WEST_READER}\ntopic write gatehouse/{WEST}/reader/{READER}/swipe\n"
    f"\nuser {WATCH}\ntopic read gatehouse/{NODE}/#\n"
)


def shipped_acl() -> str:
    return (ROOT / "config/mosquitto/gatehouse.acl").read_text().replace("gate-east", NODE)


def users_in(acl: str) -> list[str]:
    return [line.split(None, 1)[1].strip() for line in acl.splitlines() if line.startswith("user ")]


@contextlib.contextmanager
def shipped_broker(workdir: Path, extra_acl: str = "") -> Iterator[Broker]:
    """Mosquitto with config/mosquitto/auth.conf and the shipped ACL (plus ``extra_acl``),
    every login's password pw-<login>."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.fail("mosquitto_passwd is missing: make test installs the mosquitto package")
    acl = shipped_acl() + extra_acl
    (workdir / "acl").write_text(acl)
    passwd = workdir / "passwd"
    # the example's logins even if the ACL forgot them: a missing block must show as a
    # dropped message, not as a refused login
    for i, user in enumerate(dict.fromkeys([*users_in(acl), *DEVICES])):
        flags = ["-c"] if i == 0 else []
        subprocess.run([tool, *flags, "-b", str(passwd), user, f"pw-{user}"], check=True)
    auth = (ROOT / "config/mosquitto/auth.conf").read_text()
    # the harness's listener allows anonymous clients: auth.conf's client ids tied to
    # logins must refuse them all the same (checked below)
    auth = auth.replace("allow_anonymous false\n", "")
    auth = auth.replace("/etc/mosquitto/gatehouse.passwd", str(passwd))
    auth = auth.replace("/etc/mosquitto/gatehouse.acl", str(workdir / "acl"))
    # after the harness's "listener" line, as auth.conf asks of its includer
    broker = Broker(workdir, extra=auth).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[Broker]:
    """The shipped broker. The test adds blocks of its own: the second node's service and
    its reader, so that another node's tree has a real node listening on it, and a
    read-only watcher of this node's tree."""
    with shipped_broker(tmp_path, TEST_LOGINS) as broker:
        yield broker


def login(user: str) -> dict[str, str]:
    return {"username": user, "password": f"pw-{user}"}


def send(broker: Broker, user: str | None, topic: str, body: dict[str, Any]) -> None:
    """``mosquitto_pub -u user -q 1``: returns once the broker has acknowledged it (it does so
    for a message its ACL drops as well)."""
    publish.single(topic, json.dumps(body), qos=1, port=broker.port,
                   auth=login(user) if user else None)  # fmt: skip


class Sub:
    """A client logged in as ``user`` subscribed to ``topic``; what it receives, in order."""

    def __init__(
        self, broker: Broker, user: str, topic: str, client_id: str, persistent: bool = False
    ) -> None:
        """``persistent``: a session the broker keeps (and queues for) while it is away."""
        self.got: list[tuple[str, Any]] = []
        self._subscribed = threading.Event()
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent
        )
        c.username_pw_set(user, f"pw-{user}")
        c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *_: self._subscribed.set()
        c.on_message = lambda _c, _u, m: self.got.append((m.topic, self._body(m.payload)))
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        self.client = c
        assert self._subscribed.wait(10), f"{user} could not subscribe"

    @staticmethod
    def _body(payload: bytes) -> Any:
        try:
            return json.loads(payload)
        except ValueError:  # the node's status is plain "online" / "offline"
            return payload.decode(errors="replace")

    def topics(self) -> list[str]:
        return [t for t, _ in self.got]

    def send(self, topic: str, body: dict[str, Any], retain: bool = False) -> None:
        """Publish on this same connection (QoS 1) and wait for the broker's PUBACK, which
        it sends for a message its ACL drops as well. A device has one connection: with
        client ids tied to logins, a second one of the same login would push this one off."""
        info = self.client.publish(topic, json.dumps(body), qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published(), f"{topic}: no PUBACK"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def make_node(workdir: Path, broker: Broker, node_id: str, readers: list[dict[str, Any]],
              extra: str = "") -> Node:  # fmt: skip
    """A node logged in to the broker as its own service user; gates east-main and side."""
    workdir.mkdir(exist_ok=True)
    n = node_for(workdir, readers, broker.port)
    user = f"gatehouse-{node_id}"
    text = n.config.read_text()
    text = text.replace('id = "gate-test"', f'id = "{node_id}"')
    text = text.replace('[[gates]]\nid = "main"', '[[gates]]\nid = "east-main"')
    account = f'username = "{user}"\npassword = "pw-{user}"'
    text = text.replace('prefix = "gatehouse"', f'prefix = "gatehouse"\n{account}')
    n.config.write_text(text + extra)
    out = cli(n.config, "pass", "add", "--kind", "resident", "--card", KNOWN, "--name", "王五")
    assert out.returncode == 0, out.stderr
    return n


def mqtt_reader(reader_id: str, direction: str = "in") -> dict[str, Any]:
    # no debounce: every swipe that reaches the node is decided and counted
    return {"id": reader_id, "gate": "east-main", "transport": "mqtt", "direction": direction,
            "debounce_ms": 0}  # fmt: skip


def counts(node: Node) -> dict[str, int]:
    return node.ready()[1]["counts"]


def inputs_seen(node: Node) -> dict[str, int]:
    """What the node recorded from its inputs: decisions, refusals, alarm inputs, intercoms."""
    broker = node.ready()[1]["broker"]
    seen = {k: v for k, v in counts(node).items()
            if k.split(":")[0] in ("grant", "deny", "debounced", "refused", "alarm_input",
                                   "intercom")}  # fmt: skip
    return seen | {k: v for k, v in broker.items() if k.startswith(("refused", "failed"))}


def test_the_shipped_acl_pins_every_topic_to_its_node():
    acl = shipped_acl()
    lines = [ln.split() for ln in acl.splitlines() if ln.strip() and not ln.startswith("#")]
    assert not [ln for ln in lines if ln[0] == "pattern"]  # a pattern binds every user
    topics = [ln[-1] for ln in lines if ln[0] == "topic"]
    assert topics and all(t.split("/")[:2] == ["gatehouse", NODE] for t in topics)
    assert set(DEVICES) | {SERVICE} <= set(users_in(acl))
    # the README's worked example is the shipped file's
    readme = (ROOT / "README.md").read_text().splitlines()
    example = [ln for ln in readme if ln.startswith(("user east-", "topic write gatehouse/"))]
    assert example and all(ln.replace("gate-east", NODE) in acl.splitlines() for ln in example)


def test_each_device_does_its_job_logged_in_as_itself(tmp_path: Path, locked_broker: Broker):
    broker, pty = locked_broker, Pty()
    readers = [
        mqtt_reader(READER),
        mqtt_reader(OTHER_READER, "out"),
        {"id": "side-in", "gate": "side", "port": pty.path},  # the other gate, on a wire
    ]
    source = f'[[alarm_sources]]\nid = "{ALARM_INPUT}"\ngate = "east-main"\nlocation = "{PANEL}"\n'
    node = make_node(tmp_path / "node", broker, NODE, readers, source)
    officer = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    node.start(wait_ready=True)
    prefix = f"gatehouse/{NODE}/"
    # the relay listens as widely as it may ask; the broker hands it only what it may read
    relay = Sub(broker, RELAY, "gatehouse/#", "relay-east-main")
    # the tests' read-only login on the node's whole tree
    watch = Sub(broker, WATCH, prefix + "#", "test-watch")
    try:
        # a reader's swipe gets a decision, and the gate's relay its open
        send(broker, READER, prefix + f"reader/{READER}/swipe", {"card": KNOWN})
        wait_for(lambda: (prefix + "gate/east-main/open") in relay.topics(), 10, "the relay's open")
        decided = lambda: [b for t, b in watch.got if t.endswith("/gate/east-main/decision")]  # noqa: E731
        wait_for(decided, 10, "the decision")
        assert (decided()[0]["reader"], decided()[0]["decision"]) == (READER, "grant")
        send(broker, OTHER_READER, prefix + f"reader/{OTHER_READER}/swipe", {"card": KNOWN})
        wait_for(lambda: counts(node).get("grant:ok") == 2, 10, "the second reader's grant")

        # the other gate opens: its relay command is published, and this relay never sees it
        pty.write(Rdm6300.encode(parse_card(KNOWN)))
        wait_for(lambda: (prefix + "gate/side/open") in watch.topics(), 10, "the side gate's open")
        send(broker, READER, prefix + f"reader/{READER}/swipe", {"card": KNOWN})
        opened = lambda: [b for t, b in watch.got if t.endswith("/gate/east-main/open")]  # noqa: E731
        wait_for(lambda: len(opened()) == 3 and len(relay.got) == 3, 10, "the third open")
        assert relay.topics() == [prefix + "gate/east-main/open"] * 3  # nothing else, ever
        assert [b["event_id"] for _, b in relay.got] == [b["event_id"] for b in opened()]

        # an alarm input, logged in as itself, raises an alarm
        send(broker, ALARM_INPUT, prefix + f"alarm-input/{ALARM_INPUT}",
             {"type": "fire", "state": "active"})  # fmt: skip
        # an intercom's emergency is an alarm too
        send(broker, INTERCOM, prefix + f"intercom/{INTERCOM}/event", {"event": "emergency"})

        def alarms() -> list[dict[str, Any]]:
            status, body = call(node, "GET", "/api/v1/alarms", officer)
            assert status == 200, body
            return body["items"]

        wait_for(lambda: len(alarms()) == 2, 10, "both alarms")
        by_source = {a["source"]: a for a in alarms()}
        fire = by_source[f"alarm-input:{ALARM_INPUT}"]
        assert (fire["type"], fire["gate"], fire["location"]) == ("fire", "east-main", PANEL)
        assert by_source[f"intercom:{INTERCOM}"]["type"] == "intercom_emergency"
        assert by_source[f"intercom:{INTERCOM}"]["priority"] == 1
        on_mqtt = lambda: {t for t in watch.topics() if "/alarm/" in t}  # noqa: E731
        wait_for(lambda: len(on_mqtt()) == 2, 10, "both alarms on alarm/<id>")
    finally:
        relay.close()
        watch.close()
        node.stop()
        pty.close()


def test_no_device_reaches_past_its_own_topics(tmp_path: Path, locked_broker: Broker):
    broker = locked_broker
    node = make_node(tmp_path / "node", broker, NODE,
                     [mqtt_reader(READER), mqtt_reader(OTHER_READER, "out")])  # fmt: skip
    # another node on the broker, which happens to have a reader of the same id: what the
    # old "gatehouse/+/reader/%u/swipe" let this node's reader open
    west = make_node(tmp_path / "west", broker, WEST, [mqtt_reader(READER)])
    node.start(wait_ready=True)
    west.start(wait_ready=True)
    here, there = f"gatehouse/{NODE}/", f"gatehouse/{WEST}/"
    relay = Sub(broker, RELAY, "gatehouse/#", "relay-east-main")
    # devices that try to read what is not theirs (decisions carry masked names); each
    # sends its forbidden messages on that same connection, as a device has only one
    snoops = {user: Sub(broker, user, "#", f"snoop-{user}")
              for user in (READER, ALARM_INPUT, INTERCOM)}  # fmt: skip
    device = snoops | {RELAY: relay}
    swipe = {"card": KNOWN}  # each would be a grant, were it delivered
    fire = {"type": "fire", "state": "active"}  # each would be an alarm
    try:
        forbidden = [
            # another node's tree, even under the reader's own id
            (READER, there + f"reader/{READER}/swipe", swipe),
            (ALARM_INPUT, there + f"alarm-input/{ALARM_INPUT}", fire),
            (INTERCOM, there + f"intercom/{INTERCOM}/event", {"event": "emergency"}),
            # another reader's topic
            (READER, here + f"reader/{OTHER_READER}/swipe", swipe),
            # every other kind of device on a reader's topic
            (ALARM_INPUT, here + f"reader/{READER}/swipe", swipe),
            (INTERCOM, here + f"reader/{READER}/swipe", swipe),
            (RELAY, here + f"reader/{READER}/swipe", swipe),
            # a reader raising alarms, or opening the barrier itself
            (READER, here + f"alarm-input/{READER}", fire),
            (READER, here + f"intercom/{READER}/event", {"event": "emergency"}),
            (READER, here + "gate/east-main/open", {"event_id": 999, "pulse_ms": 1000}),
            # an alarm input or intercom speaking for another device
            (ALARM_INPUT, here + "alarm-input/east-smoke-3", fire),
            (ALARM_INPUT, here + f"intercom/{INTERCOM}/event", {"event": "emergency"}),
            (INTERCOM, here + f"alarm-input/{ALARM_INPUT}", fire),
            (INTERCOM, here + "intercom/east-intercom-2/event", {"event": "emergency"}),
            # the relay impersonating the node
            (RELAY, here + "gate/east-main/open", {"event_id": 998, "pulse_ms": 1000}),
        ]
        for user, topic, body in forbidden:
            device[user].send(topic, body)
        # an anonymous client is not even let in: with client ids tied to logins, a client
        # with no user name is refused at CONNECT (the harness's listener allows anonymous)
        with pytest.raises(MQTTException):
            send(broker, None, here + f"reader/{READER}/swipe", swipe)
        # then one allowed message per node, of a kind none of the above would give (an
        # unknown card: a deny); once it is decided, anything the broker let through before
        # it has been handled too (one broker, one subscriber each: delivered in order)
        device[READER].send(here + f"reader/{READER}/swipe", {"card": UNKNOWN})
        send(broker, WEST_READER, there + f"reader/{READER}/swipe", {"card": UNKNOWN})
        wait_for(lambda: counts(node).get("deny:unknown_credential") == 1, 10, "the marker")
        wait_for(lambda: counts(west).get("deny:unknown_credential") == 1, 10, "west's marker")
        assert inputs_seen(node) == {"deny:unknown_credential": 1}, "this node took more"
        assert inputs_seen(west) == {"deny:unknown_credential": 1}, "the other node took more"

        # the relay's later message: a real grant's open, after the forged ones
        device[READER].send(here + f"reader/{READER}/swipe", swipe)
        wait_for(lambda: [b for _, b in relay.got if b.get("event_id") not in (998, 999)], 10,
                 "the real open")  # fmt: skip
        assert relay.topics() == [here + "gate/east-main/open"]  # that open, and nothing else
        for snoop in snoops.values():
            assert snoop.got == [], snoop.got
    finally:
        for sub in [relay, *snoops.values()]:
            sub.close()
        node.stop()
        west.stop()


def test_add_device_makes_logins_a_real_broker_takes_and_pins_them(tmp_path: Path):
    """`gatehouse broker add-device` writes the login and its ACL block; the node, a reader
    and a relay then work with exactly what it printed, and nothing more."""
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    broker = Broker(tmp_path)  # started below, once the logins are made
    node = make_node(tmp_path / "node", broker, NODE, [mqtt_reader(READER)])
    text = node.config.read_text()  # east-main's barrier reports its position
    node.config.write_text(text.replace('id = "east-main"\n', 'id = "east-main"\n'
                                        '[gates.door]\ncontact = true\n', 1))  # fmt: skip
    made: dict[str, dict[str, str]] = {}
    for login, kind, device in ((SERVICE, "node", None), (READER, "reader", None),
                                ("relay-1", "relay", "east-main"),
                                ("door-1", "contact", "east-main")):  # fmt: skip
        files = ["--passwd-file", str(passwd), "--acl-file", str(acl)]
        args = ["--json", "broker", "add-device", login, "--kind", kind, *files,
                *(["--device", device] if device else [])]  # fmt: skip
        out = cli(node.config, *args)
        assert out.returncode == 0, out.stderr
        made[login] = json.loads(out.stdout)
    again = cli(node.config, "broker", "add-device", READER, "--kind", "reader",
                "--passwd-file", str(passwd), "--acl-file", str(acl), check=False)  # fmt: skip
    assert again.returncode == 2 and "already" in again.stderr
    assert made["relay-1"]["topic"] == f"gatehouse/{NODE}/gate/east-main/open"
    assert made["door-1"]["topic"] == f"gatehouse/{NODE}/gate/east-main/contact"
    assert passwd.stat().st_mode & 0o077 == 0
    assert made[SERVICE]["password"] not in passwd.read_text()  # a hash, not the password

    auth = (ROOT / "config/mosquitto/auth.conf").read_text().replace("allow_anonymous false\n", "")
    auth = auth.replace("/etc/mosquitto/gatehouse.passwd", str(passwd))
    auth = auth.replace("/etc/mosquitto/gatehouse.acl", str(acl))
    broker.extra = auth
    broker.start()
    text = node.config.read_text().replace(f"pw-{SERVICE}", made[SERVICE]["password"])
    node.config.write_text(text)
    node.start(wait_ready=True)  # logged in with the password it printed
    relay = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="relay-1")
    opens: list[str] = []
    relay.username_pw_set("relay-1", made["relay-1"]["password"])
    relay.on_connect = lambda cl, *_: cl.subscribe("gatehouse/#", qos=1)
    relay.on_message = lambda _c, _u, m: opens.append(m.topic)
    relay.connect("127.0.0.1", broker.port)
    relay.loop_start()
    try:
        time.sleep(0.5)
        publish.single(made[READER]["topic"], json.dumps({"card": KNOWN}), qos=1,
                       port=broker.port, auth={"username": READER,
                                               "password": made[READER]["password"]})  # fmt: skip
        wait_for(lambda: opens, 10, "the relay's open")
        assert set(opens) == {made["relay-1"]["topic"]}  # only its own gate's open
        assert counts(node).get("grant:ok") == 1
        # the door contact reports its gate's position, and cannot open the barrier
        door = {"username": "door-1", "password": made["door-1"]["password"]}
        seen = len(opens)
        publish.single(made["door-1"]["topic"], json.dumps({"state": "open"}), qos=1,
                       port=broker.port, auth=door)  # fmt: skip
        publish.single(made["relay-1"]["topic"], json.dumps({"pulse_ms": 1000}), qos=1,
                       port=broker.port, auth=door)  # fmt: skip
        wait_for(lambda: counts(node).get("contact") == 1, 10, "the contact's report")
        time.sleep(0.5)
        assert len(opens) == seen, opens  # the open it tried to send never reached the relay
    finally:
        relay.loop_stop()
        relay.disconnect()
        node.stop()
        broker.stop()


def _self_signed(where: Path) -> tuple[Path, Path]:
    """A broker certificate for 127.0.0.1, as the README's openssl line makes one."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gate-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    crt, pem = where / "gatehouse.crt", where / "gatehouse.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))  # fmt: skip
    return crt, pem


def test_the_lan_and_tls_listeners_take_devices_by_login_only(tmp_path: Path):
    """config/mosquitto/lan.conf as shipped (its ports and paths moved into the test's
    folder): the LAN listener refuses anonymous clients, a reader swipes over TLS with the
    login `broker add-device` gave it, and the node decides."""
    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    broker = Broker(tmp_path)
    node = make_node(tmp_path / "node", broker, NODE, [mqtt_reader(READER)])
    made = {}
    for login, kind in ((SERVICE, "node"), (READER, "reader")):
        out = cli(node.config, "--json", "broker", "add-device", login, "--kind", kind,
                  "--passwd-file", str(passwd), "--acl-file", str(acl))  # fmt: skip
        made[login] = json.loads(out.stdout)
    crt, key = _self_signed(tmp_path)
    lan, tls = free_port(), free_port()
    conf = (ROOT / "config/mosquitto/lan.conf").read_text()
    for old, new in (("listener 1883", f"listener {lan} 127.0.0.1"),
                     ("listener 8883", f"listener {tls} 127.0.0.1"),
                     ("/etc/mosquitto/certs/gatehouse.crt", str(crt)),
                     ("/etc/mosquitto/certs/gatehouse.key", str(key)),
                     ("/etc/mosquitto/gatehouse.passwd", str(passwd)),
                     ("/etc/mosquitto/gatehouse.acl", str(acl))):  # fmt: skip
        assert old in conf, old
        conf = conf.replace(old, new)
    broker.extra = conf
    broker.start()
    text = node.config.read_text().replace(f"pw-{SERVICE}", made[SERVICE]["password"])
    node.config.write_text(text.replace(f"127.0.0.1:{broker.port}", f"127.0.0.1:{lan}"))
    node.start(wait_ready=True)  # over the LAN listener, logged in
    try:
        with pytest.raises(MQTTException):  # no login: refused on the LAN
            publish.single("gatehouse/x", "{}", hostname="127.0.0.1", port=lan)
        reader = {"username": READER, "password": made[READER]["password"]}
        publish.single(made[READER]["topic"], json.dumps({"card": KNOWN}), qos=1,
                       hostname="127.0.0.1", port=tls, auth=reader,
                       tls={"ca_certs": str(crt)})  # fmt: skip
        wait_for(lambda: counts(node).get("grant:ok") == 1, 10, "the swipe sent over TLS")
    finally:
        node.stop()
        broker.stop()
