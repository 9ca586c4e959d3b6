"""Attacks on the HTTP side of a running node, from the LAN or the guard-room PC: bodies too
big to hold, guessing tokens and passwords, and floods of connections that never finish a
request. Each runs against a real ``gatehouse run`` on a real pty."""

from __future__ import annotations

import contextlib
import json
import re
import resource
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.publish as publish
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from drivers.rdm6300 import Rdm6300
from edge.api import create_app, limits
from edge.api.deps import Throttle
from edge.api.limits import HEADER_TIMEOUT_S
from edge.cards import parse_card
from edge.sessions import COOKIE
from tests.helpers import (
    GATEHOUSE,
    Broker,
    Node,
    Pty,
    bearer,
    cli,
    in_process,
    node_for,
    wait_for,
)

PASSWORD = "night-shift-42"


@pytest.fixture
def node(tmp_path: Path, pty: Pty) -> Iterator[Node]:
    n = node_for(tmp_path, [{"id": "r1", "gate": "main", "port": pty.path}])
    n.start(wait_ready=True)
    yield n
    n.stop()


def rss_kib(node: Node) -> int:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_files(node: Node) -> int:
    assert node.proc is not None
    return len(list(Path(f"/proc/{node.proc.pid}/fd").iterdir()))


def raw_request(port: int, head: bytes, body: bytes = b"", timeout: float = 30) -> bytes:
    """Send a request's head (and maybe a little of its body) and read whatever answer
    comes, without sending the rest of the body the head promised."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head + body)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer:
                    break
        return answer


def test_a_huge_body_is_refused_unread_and_the_process_does_not_grow(node: Node):
    admin = cli(node.config, "user", "add", "王主任", "--role", "admin").stdout.strip()
    before = rss_kib(node)
    for headers in (b"", b"Authorization: Bearer not-a-token\r\n",
                    f"Authorization: Bearer {admin}\r\n".encode()):  # fmt: skip
        head = (b"POST /api/v1/passes HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 300000000\r\n" + headers + b"\r\n")  # fmt: skip
        answer = raw_request(node.api_port, head, b"{" * 1000)
        # without credentials 401, with any token 413: in both cases before the body came
        assert answer.split(b" ", 2)[1] in (b"401", b"413"), answer[:200]

    # a body streamed with no length given is cut off at the limit, token or not
    def endless() -> Iterator[bytes]:
        for _ in range(2000):  # up to 64 MB, if nobody stopped reading
            yield b"x" * 32768

    try:
        status = httpx.post(f"http://127.0.0.1:{node.api_port}/api/v1/passes", content=endless(),
                            headers={"Authorization": "Bearer not-a-token"},
                            timeout=30).status_code  # fmt: skip
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        status = 413  # the answer came, and the connection closed, while we were still sending
    assert status == 413
    assert rss_kib(node) - before < 40 * 1024  # not the hundreds of MB sent at it
    assert node.get("/health/live") == (200, {"status": "live"})


def test_wrong_tokens_never_lock_out_a_valid_one_nor_a_forged_address(node: Node):
    admin = cli(node.config, "user", "add", "王主任", "--role", "admin").stdout.strip()
    base = f"http://127.0.0.1:{node.api_port}/api/v1/passes"
    codes = [
        httpx.get(base, headers={"Authorization": "Bearer the-same-guess",
                                 "X-Forwarded-For": f"10.9.{i // 250}.{i % 250}"}).status_code
        for i in range(30)
    ]  # fmt: skip
    # rotating a forwarded address gets nothing: it is not trusted, the address is the peer's
    assert codes[:20] == [401] * 20 and set(codes[20:]) == {429}
    assert httpx.get(base, headers={"Authorization": f"Bearer {admin}"}).status_code == 200


def test_wrong_passwords_for_one_name_do_not_lock_out_another_person(node: Node):
    for name in ("li", "zhao"):
        assert cli(node.config, "user", "add", name, "--role", "guard").returncode == 0
        out = subprocess.run([GATEHOUSE, "--config", str(node.config), "user", "passwd", name],
                             input=PASSWORD + "\n", capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert out.returncode == 0, out.stderr
    base = f"http://127.0.0.1:{node.api_port}"

    def log_in(name: str, password: str) -> str:
        with httpx.Client(base_url=base) as c:
            form = c.get("/login").text
            token = re.search(r'name="csrf" value="([^"]+)"', form)
            assert token, form
            r = c.post("/login", data={"username": name, "password": password,
                                       "csrf": token[1]})  # fmt: skip
            return r.headers["location"]

    results = [log_in("li", f"wrong-{i}") for i in range(22)]
    assert results[0].endswith("error=failed") and results[-1].endswith("error=throttled")
    assert log_in("zhao", PASSWORD) == "/"  # the next guard at the same PC logs in


def test_the_throttle_s_memory_is_bounded():
    t = Throttle(limit=3, max_keys=100)
    for i in range(10_000):
        t.fail(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(t.failures) == 100
    assert all(len(q) <= 3 for q in t.failures.values())


def test_a_flood_of_half_open_connections_neither_stops_the_gate_nor_fills_the_log(
    node: Node, pty: Pty
):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))  # ours, for the flood
    cli(node.config, "pass", "add", "--kind", "resident", "--card", "01026F6C3A",
        "--name", "张三丰", "--unit", "3-1-502")  # fmt: skip
    logged = node.log.stat().st_size
    flood: list[socket.socket] = []
    try:
        for _ in range(1100):
            s = socket.create_connection(("127.0.0.1", node.api_port), timeout=5)
            s.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")  # and never the end
            flood.append(s)
        # the gate goes on deciding, and the API answers a whole request
        pty.write(Rdm6300.encode(parse_card("01026F6C3A")))
        wait_for(lambda: node.ready()[1].get("counts", {}).get("grant:ok"), 20,
                 "a swipe to be decided during the flood")  # fmt: skip
        assert node.get("/health/live") == (200, {"status": "live"})
        assert open_files(node) < 16_384
        # the server closes what never became a request
        for s in flood[:50]:
            s.settimeout(HEADER_TIMEOUT_S * 3)
            assert s.recv(1024) == b""
        wait_for(lambda: open_files(node) < 200, HEADER_TIMEOUT_S * 3,
                 "the node to close the half-open connections")  # fmt: skip
    finally:
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    time.sleep(0.5)  # the last lines reach the log file
    grew = node.log.stat().st_size - logged
    assert grew < 20_000, node.log.read_text()[-3000:]  # a line a minute, not one a socket


# -- what the service tells about itself, and what reaches its log (finding 14) -------------


def test_anyone_on_the_lan_learns_only_ready_or_not_and_no_map_of_the_routes(tmp_path: Path):
    with in_process(tmp_path) as svc:
        app = create_app(svc)
        admin = bearer(svc, "王主任", "admin")
        lan = TestClient(app, client=("192.168.1.20", 50000))
        here = TestClient(app, client=("127.0.0.1", 50000))

        shown = lan.get("/health/ready")
        assert set(shown.json()) == {"ready"}  # no device paths, counters or sync errors
        assert "readers" in lan.get("/health/ready", headers=admin).json()
        assert "readers" in here.get("/health/ready").json()  # this machine: the whole report
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert lan.get(path).status_code == 401, path
            assert here.get(path).status_code == 200, path
        # a person logged in reads the description from anywhere
        person = app.state.accounts.sessions.start("王主任", "admin")
        lan.cookies.set(COOKIE, person.sid)
        assert "paths" in lan.get("/openapi.json").json()


def test_a_device_cannot_flood_the_log_or_put_a_card_number_in_it(tmp_path: Path, broker: Broker):
    node = node_for(tmp_path, [{"id": "net-in", "gate": "main", "transport": "mqtt"}],
                    broker.port)  # fmt: skip
    node.start(wait_ready=True)
    try:
        prefix = "gatehouse/gate-test/"
        long_reader = "r" * 20_000
        messages = [(prefix + f"reader/{long_reader}/swipe", b'{"card": "0040856634"}')]
        messages += [
            (prefix + "reader/net-in/swipe", json.dumps({"card": f"12345678901234{i:04d}"}))
            for i in range(300)
        ]  # fmt: skip
        publish.multiple([{"topic": t, "payload": p, "qos": 1} for t, p in messages],
                         port=broker.port)  # fmt: skip
        wait_for(lambda: node.ready()[1]["counts"].get("refused:mqtt_swipe", 0) == 301, 20,
                 "every poison swipe to be refused")  # fmt: skip
    finally:
        node.stop()
    log = node.log.read_text()
    assert "1234567890123" not in log  # masked to its last 4
    assert max(len(line) for line in log.splitlines()) < 1000
    refused = [line for line in log.splitlines() if "refused" in line]
    assert 1 <= len(refused) <= 3, refused  # once a minute, with a count of the rest


def test_a_body_sent_a_byte_at_a_time_is_cut_off_at_the_body_deadline(monkeypatch):
    """Finding 9's other half: headers sent whole, then a body that trickles. A real
    uvicorn with the service's protocol, its deadlines shortened for the test."""
    monkeypatch.setattr(limits, "HEADER_TIMEOUT_S", 0.5)
    monkeypatch.setattr(limits, "BODY_TIMEOUT_S", 2.0)
    app = FastAPI()

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, int]:
        return {"got": len(await request.body())}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(limits.server_config(app, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the server to start")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            sent = 0
            with contextlib.suppress(OSError):  # the server closing mid-send is the point
                while sent < 1000:
                    s.sendall(b"x")  # a byte every 0.2 s: each read is "in time"
                    sent += 1
                    s.settimeout(0.2)
                    with contextlib.suppress(TimeoutError):
                        if s.recv(1024) == b"":
                            break
            assert sent < 1000  # cut off long before the body could finish
        # a whole request on a new connection is still answered
        assert httpx.post(f"http://127.0.0.1:{port}/upload", content=b"ab").json() == {"got": 2}
    finally:
        server.should_exit = True
        thread.join(10)
