"""Gate modes for emergencies (issue 16), on a real gate and broker: the control room locks
a gate (a resident is denied ``gate_locked``, staff pass; a guard cannot lock it), the mode
is published retained for the relay and every other system and is in the handover and the
duty log; a fire alarm input holds the gate configured for it open, re-sending its
``open`` so a relay that restarts opens again. (The pure decision's cases and properties
are in test_decision.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import Broker, Listener, Robot, cli, http_call, node_for, publish, wait_for

RESIDENT, STAFF = "0000007001", "0000007002"


def test_a_locked_gate_denies_a_resident_and_a_fire_holds_its_gate_open(
    tmp_path: Path, broker: Broker
):
    node = node_for(tmp_path, [{"id": "net", "gate": "main", "transport": "mqtt"}], broker.port)
    text = node.config.read_text()
    robot = Robot().up()  # the security manager's channel off the box (docs/notify.md)
    node.config.write_text(
        text.replace('[[gates]]\nid = "main"\n', '[[gates]]\nid = "main"\nopen_on_fire = true\n')
        + f'[[notify.channels]]\nid = "security"\nurl = "json://127.0.0.1:{robot.port}/sec"\n'
        'events = ["gate_mode"]\n'
    )
    admin = cli(node.config, "user", "add", "陈主管", "--role", "admin").stdout.strip()
    officer = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    guard = cli(node.config, "user", "add", "门卫老张", "--role", "guard").stdout.strip()
    url = f"http://127.0.0.1:{node.api_port}"
    node.start(wait_ready=True)
    listener = Listener(broker.port, "gatehouse/gate-test/gate/#")

    def swipe(card: str) -> dict[str, Any]:
        publish(broker.port, "reader/net/swipe", {"card": card})
        return listener.next("/gate/main/decision")

    def mode(token: str, body: dict[str, Any]) -> tuple[int, Any]:
        return http_call(url, "PUT", "/api/v1/gates/main/mode", token, body)

    try:
        for card, kind in ((RESIDENT, "resident"), (STAFF, "staff")):
            status, made = http_call(url, "POST", "/api/v1/passes", admin, {
                "kind": kind, "card": card, "name": "张三", "unit": "5-1203"})  # fmt: skip
            assert status == 201, made
        assert listener.next("/gate/main/mode")["mode"] == "normal"  # retained at start

        # a guard alone never locks people in; a bad request is refused in words
        assert mode(guard, {"mode": "locked", "reason": "抢劫"})[0] == 403
        status, said = mode(officer, {"mode": "ajar", "reason": "x"})
        assert status == 422 and said["detail_zh"], said
        status, said = mode(officer, {"mode": "locked", "reason": "x",
                                      "until": "2020-01-01T00:00"})  # fmt: skip
        assert status == 422 and said["detail_zh"], said

        status, locked = mode(officer, {"mode": "locked", "reason": "抢劫：等待警方"})
        assert status == 200 and locked["mode"] == "locked" and locked["set_by"] == "值班员"
        published = listener.next("/gate/main/mode")
        assert published["mode"] == "locked" and published["reason"] == "抢劫：等待警方"
        told = wait_for(lambda: robot.got, 15, "the security manager told")[0][1]
        assert told["title"] == "【大门】main 已锁闭：只放行员工卡", told
        assert "原因：抢劫：等待警方" in told["message"] and "值**" in told["message"], told
        denied = swipe(RESIDENT)
        assert denied["decision"] == "deny" and denied["reason"] == "gate_locked", denied
        assert swipe(STAFF)["decision"] == "grant"  # staff still pass
        # a system that connects later learns the mode from the retained message
        late = Listener(broker.port, "gatehouse/gate-test/gate/main/mode")
        assert late.next("/gate/main/mode")["mode"] == "locked"
        late.close()
        # a broker restarted with nothing kept learns it again when the gate reconnects
        listener.close()
        assert broker.proc is not None
        broker.proc.kill()
        broker.proc.wait(10)
        for kept in broker.workdir.glob("mosquitto.db*"):
            kept.unlink()
        broker.start()
        wait_for(lambda: node.ready()[1]["broker"]["connected"], 30, "the gate to reconnect")
        late = Listener(broker.port, "gatehouse/gate-test/gate/main/mode")
        assert late.next("/gate/main/mode", 15)["mode"] == "locked"
        late.close()
        listener = Listener(broker.port, "gatehouse/gate-test/gate/#")
        status, made = http_call(url, "POST", "/api/v1/handovers", officer, {"items": {}})
        assert [(m["gate"], m["mode"]) for m in made["report"]["gate_modes"]] == [
            ("main", "locked")]  # fmt: skip
        # kept across a restart: a locked gate stays locked
        node.stop()
        node.start(wait_ready=True)
        assert http_call(url, "GET", "/api/v1/gates/main/mode", guard)[1]["mode"] == "locked"

        assert mode(officer, {"mode": "normal", "reason": "警方已到场"})[0] == 200
        wait_for(lambda: listener.next("/gate/main/mode")["mode"] == "normal", 10, "normal")
        assert swipe(RESIDENT)["decision"] == "grant"

        # a fire alarm input holds the gate open, re-sending its open every few seconds
        publish(broker.port, "alarm-input/panel-1", {"type": "fire", "state": "active"})
        held = wait_for(lambda: (m := http_call(url, "GET", "/api/v1/gates/main/mode", guard)
                                 [1])["mode"] == "held_open" and m, 15, "held open")  # fmt: skip
        assert held["set_by"] == "system" and "panel-1" in held["reason"], held
        fire = wait_for(lambda: [m for _, m in robot.got if "保持开启" in m["title"]], 15, "told")
        assert "设置人：system" in fire[0]["message"] and "panel-1" in fire[0]["message"], fire
        holds = 0
        while holds < 2:  # (the grants' own opens came before)
            got = listener.next("/gate/main/open", 15)
            holds += bool(got.get("hold"))
        assert got["pulse_ms"] > 5000 and got["expires"], got
        assert swipe(RESIDENT)["decision"] == "grant"  # every passage still recorded
        status, log = http_call(url, "GET", "/api/v1/duty-log?limit=50", officer)
        texts = [e["text"] for e in log["items"]]
        assert any("normal -> held_open: fire alarm (panel-1)" in t for t in texts), texts
        assert any("normal -> locked: 抢劫：等待警方" in t for t in texts), texts
    finally:
        listener.close()
        node.stop()
        robot.down()
