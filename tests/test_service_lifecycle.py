"""systemd integration: READY and WATCHDOG on the notify socket, clean stop on SIGTERM;
the service runs without a broker and picks it up when it appears."""

from __future__ import annotations

import socket
from pathlib import Path

from drivers.rdm6300 import Rdm6300
from edge.cards import parse_card
from tests.helpers import Broker, Listener, Pty, cli, node_for, wait_for


def test_notify_ready_then_watchdog_pings_then_stopping(tmp_path: Path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(10)
    env = {"NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    node = node_for(tmp_path, [], env=env).start()
    got = [sock.recv(100).decode() for _ in range(3)]
    assert got[0] == "READY=1" and got[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
    assert node.stop() == 0
    rest = []
    while True:
        msg = sock.recv(100).decode()
        rest.append(msg)
        if msg == "STOPPING=1":
            break
    assert "STOPPING=1" in rest


def test_decisions_go_on_without_a_broker_and_reach_it_when_it_comes(tmp_path: Path, pty: Pty):
    broker = Broker(tmp_path)  # configured but not started yet
    n = node_for(
        tmp_path, [{"id": "main-in", "gate": "main", "port": pty.path}], broker_port=broker.port
    )
    config = n.config
    cli(config, "pass", "add", "--kind", "resident", "--card", "0040856634", "--name", "王五")
    node = n.start()
    try:
        wait_for(lambda: node.reader("main-in").get("state") == "open", 10, "reader open")
        ok, body = node.ready()
        assert not ok and body["broker"]["ok"] is False
        pty.write(Rdm6300.encode(parse_card("0040856634")))
        counts = lambda: node.ready()[1]["counts"]  # noqa: E731
        wait_for(lambda: counts().get("commands_dropped") == 1, 10, "the offline decision")
        assert counts()["grant:ok"] == 1  # decided and recorded; the barrier command dropped
        broker.start()
        listener = Listener(broker.port)
        wait_for(lambda: node.ready()[0], 30, "the node to reconnect by itself")
        pty.write(Rdm6300.encode(parse_card("0A0B0C0D0E")))
        reasons = {listener.next("/decision")["reason"] for _ in range(2)}
        # the offline decision is delivered as a record once the broker is back; no late open
        assert reasons == {"ok", "unknown_credential"}
        assert not [t for t, _ in listener.seen + listener.drain(0.5) if t.endswith("/open")]
        listener.close()
    finally:
        node.stop()
        broker.stop()
