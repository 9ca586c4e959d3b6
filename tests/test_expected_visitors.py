"""Visitors announced in advance (issue 15, 预约访客): the office registers a visitor for a
host's unit with a window and a number of entries and gives a code; the estate's gates
pull it, show the day's expected visitors, admit the code inside its window and only as
often as it allows, and name a visitor who stays past it. Real processes: an office on
PostgreSQL, a gate pulling from it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from tests.helpers import Broker, cli, http_call, office_with_gate, passwd, wait_for
from tests.test_sync_recovery import running

TZ = ZoneInfo("Asia/Shanghai")


def iso(seconds: float) -> str:
    return (datetime.now(TZ) + timedelta(seconds=seconds)).isoformat(timespec="seconds")


def test_an_announced_visitor_s_code_admits_inside_its_window_and_entries_only(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office, clerk, gate, guard, url = office_with_gate(tmp_path, broker.port, pg_url)

    def announce(**body: Any) -> tuple[int, Any]:
        return office.call("POST", "/api/v1/expected-visitors", clerk,
                           {"host_unit": "5-1203", "name": "张家教", "category": "tutor",
                            "valid_until": iso(3600)} | body)  # fmt: skip

    def arrive(code: str) -> tuple[int, Any]:
        return http_call(url, "POST", "/api/v1/visitors/arrive", guard, {"code": code})

    def today() -> dict[str, dict[str, Any]]:
        status, page = http_call(url, "GET", "/api/v1/visitors/expected", guard)
        assert status == 200, page
        return {e["id"]: e for e in page["items"]}

    with running(office, gate):
        assert office.call("POST", "/api/v1/units", clerk, {"units": ["5-1203"]})[0] == 201
        status, said = announce(host_unit="5-9999")
        assert status == 422 and said["detail_zh"], said  # a unit the estate does not have
        status, said = announce(category="ufo")
        assert status == 422 and "category" in said["detail"], said
        status, tutor = announce(entries=2)
        assert status == 201 and len(tutor["code"]) == 8, tutor
        _, later = announce(name="李维修", category="repair", valid_from=iso(3600),
                            valid_until=iso(7200))  # fmt: skip
        _, short = announce(name="王外卖", category="delivery", valid_until=iso(4))
        _, called_off = announce(name="赵访客", category="guest")
        assert office.call("POST", f"/api/v1/expected-visitors/{called_off['id']}/cancel",
                           clerk)[0] == 200  # fmt: skip
        wait_for(lambda: len(today()) == 4 and today()[called_off["id"]]["state"] == "cancelled",
                 30, "the day's announced visitors at the gate")  # fmt: skip
        listed = today()[tutor["id"]]
        assert listed["name"] == "张**" and listed["state"] == "waiting" and "code" not in listed

        # the code admits, as often as it allows and no more
        status, first = arrive(tutor["code"])
        assert status == 201 and first["state"] == "inside", first
        assert first["confirmed_how"] == "announced" and first["host_unit"] == "5-1203"
        assert http_call(url, "POST", f"/api/v1/visitors/{first['id']}/exit", guard)[0] == 200
        assert arrive(tutor["code"])[0] == 201
        status, said = arrive(tutor["code"])
        assert status == 409 and "entries are used" in said["detail"] and said["detail_zh"], said
        # not before its window, not once cancelled, not a code nobody gave
        status, said = arrive(later["code"])
        assert status == 409 and "not started" in said["detail"], said
        status, said = arrive(called_off["code"])
        assert status == 409 and "cancelled" in said["detail"], said
        assert arrive("00000000" if tutor["code"] != "00000000" else "00000001")[0] == 404

        # one who stays past the window: on the list and in the handover
        status, courier = arrive(short["code"])
        assert status == 201, courier
        time.sleep(5)
        assert today()[short["id"]]["state"] == "overstaying"
        status, made = http_call(url, "POST", "/api/v1/handovers", guard, {"items": {}})
        assert status == 201, made
        assert [v["name"] for v in made["report"]["visitors_overstaying"]] == ["王**"]
        # the office hears of every admission, once
        wait_for(lambda: len(office.call("GET", "/api/v1/events?kind=visitor_in", clerk)[1]
                             ["items"]) == 3, 30, "the admissions at the office")  # fmt: skip
        # and its month: four announced, three admissions on a code
        month = datetime.now(TZ).strftime("%Y-%m")
        status, report = office.call("GET", f"/api/v1/reports/monthly?month={month}", clerk)
        assert report["announced_visitors"] == {"announced": 4, "gate-test:came": 3}, report


def test_a_host_announces_their_own_visitors_through_the_office_and_the_gate_admits_them(
    tmp_path: Path, broker: Broker, pg_url: str
):
    """The office "or the host through it": a resident with a host token announces
    visitors for their own unit only, sees and cancels only theirs, and is no clerk."""
    office, clerk, gate, guard, url = office_with_gate(tmp_path, broker.port, pg_url)
    visit = {"name": "陈家亲戚", "category": "guest", "valid_until": iso(3600)}

    with running(office, gate):
        units = {"units": ["5-1203", "6-0101"]}
        assert office.call("POST", "/api/v1/units", clerk, units)[0] == 201
        # a host is the host of a unit on the estate's list
        out = cli(office.config, "user", "add", "冒名者", "--role", "host", "--unit", "9-9999",
                  check=False)  # fmt: skip
        assert out.returncode != 0 and "9-9999" in out.stderr, out.stderr
        out = cli(office.config, "user", "add", "无房号", "--role", "host", check=False)
        assert out.returncode != 0 and "unit" in out.stderr, out.stderr
        host = office.token("user", "add", "业主陈先生", "--role", "host", "--unit", "5-1203")
        neighbour = office.token("user", "add", "业主林女士", "--role", "host", "--unit", "6-0101")
        out = cli(office.config, "user", "list")
        assert "业主陈先生\thost" in out.stdout, out.stdout

        status, mine = office.call("POST", "/api/v1/expected-visitors", host, visit)
        assert status == 201 and mine["host_unit"] == "5-1203", mine
        assert mine["created_by"] == "业主陈先生"
        status, said = office.call("POST", "/api/v1/expected-visitors", host,
                                   visit | {"host_unit": "6-0101"})  # fmt: skip
        assert status == 403, said
        assert said["detail_zh"] == "被访单元：住户只能为本户 5-1203 预约访客", said
        _, theirs = office.call("POST", "/api/v1/expected-visitors", neighbour, visit)
        _, by_clerk = office.call("POST", "/api/v1/expected-visitors", clerk,
                                  visit | {"host_unit": "5-1203"})  # fmt: skip
        # each host sees their unit's only; the clerk sees all
        status, page = office.call("GET", "/api/v1/expected-visitors", host)
        assert status == 200 and {v["id"] for v in page["items"]} == {mine["id"], by_clerk["id"]}
        status, page = office.call("GET", "/api/v1/expected-visitors", clerk)
        assert {v["id"] for v in page["items"]} == {mine["id"], theirs["id"], by_clerk["id"]}
        # a neighbour's visitor is not theirs to cancel, nor to know of
        cancel = f"/api/v1/expected-visitors/{theirs['id']}/cancel"
        assert office.call("POST", cancel, host)[0] == 404
        assert office.call("POST", cancel, neighbour)[0] == 200
        # a host is no clerk: no report, no records, no units, no permits, no sites
        for path in ("/api/v1/reports/monthly?month=2026-12", "/api/v1/events", "/api/v1/units",
                     "/api/v1/permits", "/api/v1/sites"):  # fmt: skip
            status, said = office.call("GET", path, host)
            assert status == 403 and said["detail_zh"], (path, said)
        out = passwd(office.config, "业主陈先生", "pw-123456")
        assert out.returncode != 0 and "token only" in out.stderr, out.stderr

        # and the gate admits the host's visitor on the code the host was given
        wait_for(lambda: any(e["id"] == mine["id"] for e in http_call(
            url, "GET", "/api/v1/visitors/expected", guard)[1]["items"]), 30,
            "the host's visitor at the gate")  # fmt: skip
        status, inside = http_call(url, "POST", "/api/v1/visitors/arrive", guard,
                                   {"code": mine["code"]})  # fmt: skip
        assert status == 201 and inside["host_unit"] == "5-1203", inside
