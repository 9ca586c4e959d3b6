"""Renovation permits that govern workers (issue 15): the office issues a unit's permit and
a worker pass naming it; a stop-work order (停工整顿) suspends the permit and the gate denies
the worker with a reason of its own until the permit is resumed; closing it ends the
worker's entries. Real processes: an office on PostgreSQL and a gate pulling from it."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.helpers import Broker, Office, add_sync, node_for, wait_for
from tests.test_sync_recovery import decision, running

TZ = ZoneInfo("Asia/Shanghai")
CARD = "0000007001"


def test_a_suspended_permit_denies_its_worker_until_resumed_and_a_closed_one_for_good(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office = Office(tmp_path / "office", pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    (tmp_path / "gate").mkdir()
    gate = node_for(tmp_path / "gate", [], broker.port)
    add_sync(gate, office, office.token("office", "node", "add", "gate-test"))
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
