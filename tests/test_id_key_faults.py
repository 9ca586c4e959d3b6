"""The two faults of a gate's ID-key fetch (GET /sync/v1/id-key, issue 14), caused for real:
a reverse proxy between a running gate and a running office on PostgreSQL forwards every
request to the office but that one, which it answers as the test says at that moment.

* 404, as an office of an older version answers a route it does not have: the gate keeps
  its own key (its key file unchanged, no key retired, the log says so) and syncs all the
  same, both ways: the office's pass reaches it, its visitor reaches the office, hashed
  with the gate's own key.
* 503 for a while: the gate pulls and pushes nothing (the office's pass does not reach it,
  the proxy sees no pull), and its readiness says why (``sync.last_error``, not
  ``connected``). Once the office answers again, the gate takes the estate's key (its own
  kept, retired), the pass arrives, the error clears, and a number hashed at the gate
  matches the office's hash of it."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.server
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import Broker, Node, Office, add_sync, cli, http_call, node_for, wait_for
from tests.test_sync_recovery import running

NUMBER = "11010519491231002X"  # a well-formed resident ID (the manuals' example format)
ID_KEY = "/sync/v1/id-key"
# what a client and a server each say of their own connection, never passed on
HOP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length",
       "content-encoding", "proxy-connection", "te", "trailer", "upgrade"}  # fmt: skip


class IdKeyProxy:
    """An HTTP reverse proxy to the office on a free loopback port: every request goes to
    the office and its answer comes back, but ``GET /sync/v1/id-key``, answered with
    ``id_key`` (status, JSON body) while that is set. ``seen``: (method, path, status)
    of every request, in order."""

    def __init__(self, office_url: str) -> None:
        self.id_key: tuple[int, dict[str, Any]] | None = None  # None: forwarded
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._upstream = httpx.Client(base_url=office_url, timeout=60)  # past a long poll
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the gate's client expects

            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                told = proxy.id_key if path == ID_KEY and self.command == "GET" else None
                if told is not None:
                    status, content = told[0], json.dumps(told[1]).encode()
                    headers = [("Content-Type", "application/json")]
                else:
                    sent = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
                    try:
                        r = proxy._upstream.request(self.command, self.path, headers=sent,
                                                    content=body)  # fmt: skip
                    except httpx.HTTPError:  # the office stopped under a long poll
                        status, content = 502, b'{"detail":"Bad Gateway"}'
                        headers = [("Content-Type", "application/json")]
                    else:
                        status, content = r.status_code, r.content  # decoded: no encoding
                        headers = [(k, v) for k, v in r.headers.items() if k.lower() not in HOP]
                with proxy._lock:
                    proxy.seen.append((self.command, path, status))
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the gate stopped meanwhile
                    self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = relay

            def log_message(self, *_: Any) -> None:
                pass  # the office logs its requests; the test's output stays quiet

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> IdKeyProxy:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._upstream.close()

    def count(self, path: str, status: int | None = None) -> int:
        with self._lock:
            return sum(p == path and status in (None, s) for _, p, s in self.seen)


def estate(tmp_path: Path, pg_url: str) -> tuple[Office, str]:
    """An office (not started) with estate ``east``, and a clerk's token."""
    office = Office(tmp_path, pg_url)
    office.token("office", "site", "add", "east", "--name", "东区", "--gates", "main")
    return office, office.token("user", "add", "客服小王", "--role", "clerk")


def gate_behind(tmp_path: Path, broker: Broker, office: Office, proxy: IdKeyProxy,
                name: str) -> tuple[Node, str, str]:  # fmt: skip
    """A gate of estate ``east`` whose office is reached through ``proxy``; its node
    token and a guard's token."""
    workdir = tmp_path / name
    workdir.mkdir()
    node = node_for(workdir, [{"id": "net", "gate": "main", "transport": "mqtt"}], broker.port)
    node.config.write_text(node.config.read_text().replace('id = "gate-test"', f'id = "{name}"'))
    token = office.token("office", "node", "add", name, "--site", "east")
    add_sync(node, office, token)
    node.config.write_text(node.config.read_text().replace(office.url, proxy.url))
    guard = cli(node.config, "user", "add", "门卫老张", "--role", "guard").stdout.strip()
    return node, token, guard


def keys(node: Node) -> Path:
    return node.config.parent / "var" / "keys"


def retired(node: Node) -> list[Path]:
    return sorted(keys(node).glob("id_hash.retired-*.key"))


def own_key(node: Node) -> bytes:
    return bytes.fromhex((keys(node) / "id_hash.key").read_text().strip())


def pass_hash(node: Node, pass_id: str) -> str | None:
    """The ID-number hash of the office's pass as the gate holds it; None: not there."""
    with contextlib.closing(sqlite3.connect(node.config.parent / "var" / "edge.db")) as db:
        found = db.execute("SELECT id_hash FROM passes WHERE id = ?", (pass_id,)).fetchone()
    return found[0] if found else None


def issue(office: Office, clerk: str, card: str) -> dict[str, Any]:
    status, issued = office.call("POST", "/api/v1/passes", clerk, {
        "kind": "worker", "card": card, "name": "工人甲", "unit": "5-1203",
        "id_number": NUMBER, "site": "east"})  # fmt: skip
    assert status == 201, issued
    return dict(issued)


def visit(node: Node, guard: str, name: str) -> dict[str, Any]:
    """A visitor with the ID number registered and admitted: the admission is pushed."""
    url = f"http://127.0.0.1:{node.api_port}"
    status, v = http_call(url, "POST", "/api/v1/visitors", guard,
                          {"name": name, "host_unit": "5-1203", "id_number": NUMBER})  # fmt: skip
    assert status == 201, v
    status, v = http_call(url, "POST", f"/api/v1/visitors/{v['id']}/confirm", guard,
                          {"how": "intercom"})  # fmt: skip
    assert status == 200, v
    return dict(v)


def visitor_hash(node: Node, visitor_id: int) -> str:
    with contextlib.closing(sqlite3.connect(node.config.parent / "var" / "edge.db")) as db:
        return str(db.execute("SELECT id_hash FROM visitors WHERE id = ?",
                              (visitor_id,)).fetchone()[0])  # fmt: skip


def admitted_at_office(office: Office, clerk: str, name: str, visitor_id: int) -> Any:
    """The gate's admission of the visitor as the office has it (None: not yet)."""
    status, found = office.call("GET", f"/api/v1/events?node={name}&kind=visitor_in", clerk)
    assert status == 200, found
    return next((e for e in found["items"] if e.get("id") == visitor_id), None)


def sync_state(node: Node) -> dict[str, Any]:
    return dict(node.ready()[1].get("sync") or {})


def test_an_office_without_the_id_key_route_gate_keeps_its_key_and_syncs(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office, clerk = estate(tmp_path, pg_url)
    with IdKeyProxy(office.url) as proxy:
        proxy.id_key = (404, {"detail": "Not Found"})  # FastAPI's answer to a route it lacks
        gate, _, guard = gate_behind(tmp_path, broker, office, proxy, "east-a")
        with running(office, gate):
            mine = own_key(gate)  # made at the gate's start, before it reaches the office
            issued = issue(office, clerk, "0000003001")
            office_hash = wait_for(lambda: pass_hash(gate, issued["id"]), 30,
                                   "the office's pass at the gate")  # fmt: skip
            v = visit(gate, guard, "访客甲")
            pushed = wait_for(lambda: admitted_at_office(office, clerk, "east-a", v["id"]), 30,
                              "the gate's visitor at the office")  # fmt: skip
            said = wait_for(lambda: (s := sync_state(gate)).get("connected") and s, 10,
                            "the gate to say it is connected")  # fmt: skip

        # the gate asked (at start, and again for the scope the office gave it) and went on
        assert proxy.count(ID_KEY, 404) >= 1
        assert proxy.count("/sync/v1/pull", 200) >= 1 and proxy.count("/sync/v1/push", 200) >= 1
        assert said["last_error"] is None
        # its own key, kept: unchanged, nothing retired, and the visitor hashed with it
        assert own_key(gate) == mine and retired(gate) == []
        expected = hmac.new(mine, NUMBER.encode(), hashlib.sha256).hexdigest()
        assert visitor_hash(gate, v["id"]) == expected
        assert pushed["id_hash"] == expected
        assert office_hash != expected  # without the estate's key, no match: as it is
        assert "the office gives no ID-number key; this gate keeps its own" in gate.log.read_text()


def test_an_office_failing_the_id_key_gate_waits_for_it_and_says_so(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office, clerk = estate(tmp_path, pg_url)
    with IdKeyProxy(office.url) as proxy:
        proxy.id_key = (503, {"detail": "Service Unavailable"})
        gate, token, guard = gate_behind(tmp_path, broker, office, proxy, "east-a")
        with running(office, gate):
            mine = own_key(gate)
            wait_for(lambda: proxy.count(ID_KEY, 503), 20, "the gate to ask for the key")
            issued = issue(office, clerk, "0000003001")
            asked = proxy.count(ID_KEY, 503)
            # it asks again and again (backing off, at most 1 s apart): three more asks after
            # the pass was issued, and it has still not pulled
            wait_for(lambda: proxy.count(ID_KEY, 503) >= asked + 3, 20, "the gate to retry")
            said = wait_for(lambda: (s := sync_state(gate)).get("last_error") and s, 10,
                            "the gate's readiness to show the sync error")  # fmt: skip
            assert "HTTPStatusError" in said["last_error"] and "503" in said["last_error"]
            assert said["connected"] is False and said["last_pull_ok"] is None
            assert proxy.count("/sync/v1/pull") == 0 and proxy.count("/sync/v1/push") == 0
            assert pass_hash(gate, issued["id"]) is None
            assert own_key(gate) == mine and retired(gate) == []

            proxy.id_key = None  # the office answers again
            office_hash = wait_for(lambda: pass_hash(gate, issued["id"]), 30,
                                   "the office's pass at the gate")  # fmt: skip
            wait_for(lambda: sync_state(gate).get("connected")
                     and sync_state(gate).get("last_error") is None, 10,
                     "the sync error to clear")  # fmt: skip
            # the estate's key taken, before the pull; the gate's own kept, retired
            status, estate_key = http_call(office.url, "GET", ID_KEY, token)
            assert status == 200, estate_key
            assert own_key(gate) == bytes.fromhex(estate_key["key"])
            (kept,) = retired(gate)
            assert bytes.fromhex(kept.read_text().strip()) == mine
            # a number hashed at the gate now is the office's hash of it
            v = visit(gate, guard, "访客乙")
            assert visitor_hash(gate, v["id"]) == office_hash
            pushed = wait_for(lambda: admitted_at_office(office, clerk, "east-a", v["id"]), 30,
                              "the gate's visitor at the office")  # fmt: skip
            assert pushed["id_hash"] == office_hash
        assert "ID numbers are now hashed with estate east's key" in gate.log.read_text()
