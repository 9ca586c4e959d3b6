"""Renovation permits that govern workers (issue 15): the office issues a unit's permit and
a worker pass naming it; a stop-work order (停工整顿) suspends the permit and the gate denies
the worker with a reason of its own until the permit is resumed; closing it ends the
worker's entries. Real processes: an office on PostgreSQL and a gate pulling from it."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import Broker, cli, http_call, node_for, office_with_gate, wait_for
from tests.test_sync_recovery import decision, running

TZ = ZoneInfo("Asia/Shanghai")
CARD = "0000007001"


def test_a_suspended_permit_denies_its_worker_until_resumed_and_a_closed_one_for_good(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office, clerk, gate, _guard, _url = office_with_gate(tmp_path, broker.port, pg_url)
    until = (datetime.now(TZ) + timedelta(days=30)).isoformat(timespec="seconds")
    with running(office, gate):
        status, permit = office.call("POST", "/api/v1/permits", clerk, {
            "permit_no": "ZX-2026-001", "unit": "8-0801", "company": "华美装饰",
            "scope": "厨卫改造，不得改动承重墙", "valid_until": until})  # fmt: skip
        assert status == 201 and permit["status"] == "active", permit
        status, worker = office.call("POST", "/api/v1/passes", clerk, {
            "kind": "worker", "card": CARD, "name": "王师傅", "unit": "8-0801",
            "permit_no": "ZX-2026-001", "daily_window": "00:00-24:00"})  # fmt: skip
        assert status == 201, worker
        wait_for(lambda: decision(gate, CARD) == "ok", 30, "the worker's pass and permit")

        # a stop-work order: the gate hears of it at its next pull and denies the worker
        base = "/api/v1/permits/ZX-2026-001"
        status, said = office.call("POST", base + "/suspend", clerk, {})
        assert status == 422 and "reason" in said["detail"] and said["detail_zh"], said
        status, suspended = office.call("POST", base + "/suspend", clerk,
                                        {"reason": "私改承重墙，停工整顿"})  # fmt: skip
        assert status == 200 and suspended["status"] == "suspended", suspended
        wait_for(lambda: decision(gate, CARD) == "permit_suspended", 30, "the suspension")
        status, said = office.call("POST", base + "/suspend", clerk, {"reason": "again"})
        assert status == 409 and said["detail_zh"], said

        # re-inspected and passed: the worker is let in again
        assert office.call("POST", base + "/resume", clerk, {"reason": "复查合格"})[0] == 200
        wait_for(lambda: decision(gate, CARD) == "ok", 30, "the resumption")

        # the works complete: the permit closes and the worker's pass stops opening
        assert office.call("POST", base + "/close", clerk, {"reason": "竣工验收"})[0] == 200
        wait_for(lambda: decision(gate, CARD) == "permit_closed", 30, "the closing")
        status, listed = office.call("GET", "/api/v1/permits?status=closed", clerk)
        assert status == 200 and [p["permit_no"] for p in listed["items"]] == ["ZX-2026-001"]
        assert office.call("POST", "/api/v1/permits/nope/close", clerk, {})[0] == 404
        assert office.call("POST", base + "/resume", clerk, {})[0] == 409
        # the office's month counts the permit's changes
        month = datetime.now(TZ).strftime("%Y-%m")
        status, report = office.call("GET", f"/api/v1/reports/monthly?month={month}", clerk)
        assert status == 200, report
        assert report["renovation"] == {"permit_close": 1, "permit_issue": 1,
                                        "permit_resume": 1, "permit_suspend": 1}  # fmt: skip


def swipe(broker: Broker, reader: str, card: str) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"permits-{reader}-{card}")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(f"gatehouse/gate-test/reader/{reader}/swipe", json.dumps({"card": card}),
              qos=1).wait_for_publish(10)  # fmt: skip
    c.loop_stop()
    c.disconnect()


def test_at_the_end_of_work_the_workers_still_inside_are_named_and_notices_fall_overdue(
    tmp_path: Path, broker: Broker
):
    if datetime.now(TZ).strftime("%H:%M") in ("23:58", "23:59", "00:00", "00:01"):
        pytest.skip("the end of work is set around now: not across midnight")
    out = {"id": "net-out", "gate": "main", "transport": "mqtt", "direction": "out"}
    readers = [{"id": "net", "gate": "main", "transport": "mqtt"}, out]
    node = node_for(tmp_path, readers, broker.port)
    config = node.config.read_text()
    node.config.write_text(config + '[permits]\nwork_ends = "23:59"\n')
    admin = cli(node.config, "user", "add", "陈主管", "--role", "admin").stdout.strip()
    guard = cli(node.config, "user", "add", "门卫老张", "--role", "guard").stdout.strip()
    url = f"http://127.0.0.1:{node.api_port}"
    node.start(wait_ready=True)
    try:
        for card, name in (("0000007001", "王师傅"), ("0000007002", "李师傅")):
            status, made = http_call(url, "POST", "/api/v1/passes", admin, {
                "kind": "worker", "card": card, "name": name, "unit": "8-0801",
                "daily_window": "00:00-24:00"})  # fmt: skip
            assert status == 201, made
        swipe(broker, "net", "0000007001")
        swipe(broker, "net", "0000007002")
        swipe(broker, "net-out", "0000007002")  # 李 went home
        found = wait_for(lambda: (r := http_call(url, "GET", "/api/v1/workers/inside", guard)[1])
                         ["items"] and len(http_call(url, "GET", "/api/v1/events?limit=10",
                                                     guard)[1]["items"]) == 3 and r, 20,
                         "the three passages")  # fmt: skip
        assert [(w["name"], w["unit"]) for w in found["items"]] == [("王**", "8-0801")]
        assert found["work_ends"] == "23:59"

        # a rectification notice whose deadline passes: overdue in the handover
        soon = (datetime.now(TZ) + timedelta(seconds=2)).isoformat(timespec="seconds")
        status, notice = http_call(url, "POST", "/api/v1/rectifications", guard, {
            "unit": "8-0801", "issue": "阳台违规搭建，限期拆除", "deadline": soon})  # fmt: skip
        assert status == 201 and notice["number"].startswith("ZG-"), notice
        status, said = http_call(url, "POST", "/api/v1/rectifications", guard, {
            "unit": "8-0801", "issue": "x", "deadline": "2020-01-01T00:00"})  # fmt: skip
        assert status == 422 and said["detail_zh"], said
        time.sleep(3)
        status, made = http_call(url, "POST", "/api/v1/handovers", guard, {"items": {}})
        assert status == 201, made
        report = made["report"]
        assert [n["number"] for n in report["rectifications_overdue"]] == [notice["number"]]
        assert [w["name"] for w in report["workers_inside"]] == ["王**"]
        status, closed = http_call(url, "POST", f"/api/v1/rectifications/{notice['id']}/close",
                                   guard, {"inspected_by": "巡逻岗小周"})  # fmt: skip
        assert status == 200 and closed["state"] == "closed", closed
        assert http_call(url, "GET", "/api/v1/rectifications?open=true", guard)[1]["items"] == []
    finally:
        node.stop()

    # the end of work comes (set to a minute ago): the duty log names who is still inside,
    # once a day, however often the gate restarts
    ended = (datetime.now(TZ) - timedelta(minutes=1)).strftime("%H:%M")
    node.config.write_text(config + f'[permits]\nwork_ends = "{ended}"\n')
    for _ in range(2):
        node.start(wait_ready=True)
        try:
            wait_for(lambda: ends(url, guard), 20, "the end-of-work entry")
        finally:
            node.stop()
    node.start(wait_ready=True)
    try:
        (entry,) = ends(url, guard)
        assert "1 workers inside: 王** (8-0801)" in entry["text"], entry
    finally:
        node.stop()


def ends(url: str, token: str) -> list[dict]:
    status, log = http_call(url, "GET", "/api/v1/duty-log?limit=100", token)
    assert status == 200, log
    return [e for e in log["items"] if e["text"].startswith("end of work")]


def test_a_visitor_for_a_unit_not_on_the_estate_s_list_is_refused(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office, clerk, gate, guard, url = office_with_gate(tmp_path, broker.port, pg_url)

    def visit(unit: str) -> tuple[int, dict]:
        return http_call(url, "POST", "/api/v1/visitors", guard, {"name": "访客甲",
                                                                   "host_unit": unit})  # fmt: skip

    with running(office, gate):
        assert visit("9-9999")[0] == 201  # no list yet: any unit, as before
        status, added = office.call("POST", "/api/v1/units", clerk,
                                    {"units": ["5-1203", "8-0801", " 5-1203 "]})  # fmt: skip
        assert status == 201 and added["added"] == 2, added
        wait_for(lambda: http_call(url, "GET", "/api/v1/visitors/units", guard)[1]["items"]
                 == ["5-1203", "8-0801"], 30, "the estate's units")  # fmt: skip
        assert visit("5-1203")[0] == 201
        status, said = visit("5-9999")
        assert status == 422 and "not a unit of this estate" in said["detail"], said
        assert "劝" in said["detail_zh"] or "离开" in said["detail_zh"], said
        # a unit taken off the list is refused once the gate has heard
        assert office.call("DELETE", "/api/v1/units/8-0801", clerk)[0] == 200
        wait_for(lambda: visit("8-0801")[0] == 422, 30, "the removal")
        assert office.call("DELETE", "/api/v1/units/8-0801", clerk)[0] == 404
