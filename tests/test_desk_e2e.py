"""The guard's desk as a user meets it: `gatehouse user add`, HTTP to `gatehouse run`,
a real pty and a real broker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from drivers.rdm6300 import Rdm6300
from edge.cards import parse_card
from tests.helpers import Broker, Listener, Node, Pty, cli, http_call, node_for


def call(node: Node, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    return http_call(f"http://127.0.0.1:{node.api_port}", method, path, token, body)


def test_override_confiscation_and_a_scanned_slip_at_a_running_gate(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty
):
    scanner = Pty()
    readers = [
        {"id": "main-in", "gate": "main", "port": pty.path},
        {"id": "main-scan", "gate": "main", "port": scanner.path, "protocol": "line"},
    ]
    node = node_for(tmp_path, readers, broker.port)
    guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    admin = json.loads(
        cli(node.config, "--json", "user", "add", "王主任", "--role", "admin").stdout
    )
    assert len(guard) > 30 and "token" in admin
    dup = cli(node.config, "user", "add", "老张", "--role", "guard", check=False)
    assert dup.returncode == 2 and "exists" in dup.stderr
    node.start(wait_ready=True)
    try:
        status, p = call(node, "POST", "/api/v1/passes", admin["token"],
                         {"kind": "temporary", "card": "0040856634", "name": "快递员"})  # fmt: skip
        assert status == 201
        assert call(node, "POST", "/api/v1/passes", guard, {})[0] == 403

        status, ev = call(node, "POST", "/api/v1/overrides", guard,
                          {"gate": "main", "reason": "业主忘带卡, 已电话核实"})  # fmt: skip
        assert status == 201 and ev["reason"] == "manual_override" and ev["by"] == "老张"
        opened = listener.next("/gate/main/open")
        assert opened["event_id"] == ev["event_id"]
        _, events = call(node, "GET", "/api/v1/events?limit=1", guard)
        assert events["items"][0]["by"] == "老张" and events["items"][0]["source"] == "override"

        taken = {"pass_id": p["id"], "reason": "证件与人不符", "gate": "main"}
        assert call(node, "POST", "/api/v1/confiscations", guard, taken)[0] == 201
        pty.write(Rdm6300.encode(parse_card("01026F6C3A")))
        decision = listener.next("/gate/main/decision")
        assert (decision["decision"], decision["reason"]) == ("deny", "confiscated")
        slip = {"unit": "3-1-502", "owner": "张三丰", "bearer": "张三丰",
                "authorisation": "in_person", "items": [{"name": "沙发", "qty": 2}]}  # fmt: skip
        status, s = call(node, "POST", "/api/v1/slips", admin["token"], slip)
        assert status == 201
        scanner.write(f"{s['number']}\r\n".encode())
        scan = listener.next("/gate/main/scan")
        assert scan == {"kind": "slip", "number": s["number"], "found": True,
                        "status": "issued", "unit": "3-1-502", "items": 2}  # fmt: skip
    finally:
        node.stop()
        scanner.close()
    revoked = cli(node.config, "user", "revoke", "老张")
    assert revoked.returncode == 0
