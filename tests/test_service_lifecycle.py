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


def test_connections_to_the_api_send_without_waiting_for_an_ack():
    """The listening socket says it is TCP, so the server's connections get TCP_NODELAY:
    without it a kept-alive connection's every answer waited ~40 ms for the client's
    delayed ACK (bench/list_routes.py). Checked on a connection the way uvicorn gets it,
    accepted by asyncio from that socket."""
    import asyncio

    from edge.api.limits import listen_socket

    async def accepted_nodelay() -> int:
        sock = listen_socket("127.0.0.1", 0, "api.listen")
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def on_connect(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            raw = w.get_extra_info("socket")
            seen.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            w.close()

        server = await asyncio.start_server(on_connect, sock=sock)
        _r, w = await asyncio.open_connection(*sock.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            w.close()
            server.close()

    assert asyncio.run(accepted_nodelay()) != 0
