"""Out-of-range times at the office (issue 11, finding 7, the office's part): a pass valid
until year 10000 (or a number that is no year at all) was taken, or answered 500; and one
such time stored anywhere — a pass, a gate's event — took down the office's reads: the
monthly report, the desk's pages. The office now refuses a time outside 2000-2099 where a
clerk gives one, naming the field, and its reads answer whatever is stored."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from sync import wire
from tests.helpers import GATEHOUSE, Office, pg_rows

TZ = ZoneInfo("Asia/Shanghai")  # the office's default zone (the Office helper sets none)


PASS = {"kind": "resident", "card": "0040856634", "name": "张三"}
SLIP = {"unit": "3-1-502", "owner": "张三丰", "bearer": "张三丰", "authorisation": "in_person",
        "items": [{"name": "冰箱", "qty": 1}]}  # fmt: skip


def test_times_outside_the_years_are_refused_by_field_at_the_office(
    clerk_office: tuple[Office, str],
):
    o, clerk = clerk_office
    refused = [
        ("/api/v1/passes", PASS | {"valid_until": "10000-01-01"}, "valid_until"),
        ("/api/v1/passes", PASS | {"valid_until": "9999-12-31T23:59:59"}, "valid_until"),
        ("/api/v1/passes", PASS | {"valid_until": "9999-12-31T23:59:59-12:00"}, "valid_until"),
        ("/api/v1/passes", PASS | {"valid_until": "1e300"}, "valid_until"),
        ("/api/v1/passes", PASS | {"valid_from": "0001-01-01T00:00:00"}, "valid_from"),
        ("/api/v1/passes", PASS | {"valid_from": "1970-01-01T00:00:00+00:00"}, "valid_from"),
        ("/api/v1/slips", SLIP | {"valid_until": "9999-12-31T23:59:59+14:00"}, "valid_until"),
        ("/api/v1/slips", SLIP | {"valid_from": "1900-01-01T08:00"}, "valid_from"),
        ("/api/v1/slips", SLIP | {"valid_until": "2100-01-01T08:00"}, "valid_until"),
    ]
    for path, body, field in refused:
        status, answer = o.call("POST", path, clerk, body)
        assert status == 422, (body, status, answer)
        assert answer["detail"].startswith(f"{field}: "), answer
        assert answer.get("detail_zh"), answer

    status, p = o.call("POST", "/api/v1/passes", clerk, PASS | {"valid_until": "2099-12-31"})
    assert status == 201
    for until in ("2150-01-01", "99999-01-01", "-1"):
        status, answer = o.call("POST", f"/api/v1/passes/{p['id']}/renew", clerk,
                                {"valid_until": until})  # fmt: skip
        assert status == 422 and answer["detail"].startswith("valid_until: "), answer
    assert o.call("POST", f"/api/v1/passes/{p['id']}/renew", clerk,
                  {"valid_until": "2099-06-01"})[0] == 200  # fmt: skip


def _push(o: Office, token: str, rows: list[tuple[int, str, dict[str, Any]]]) -> int:
    body = wire.encode([(seq, kind, f"r{seq}", json.dumps(p)) for seq, kind, p in rows])
    r = httpx.post(f"{o.url}/sync/v1/push", params={"epoch": 1, "base": 1}, content=body,
                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    return r.status_code


def _desk(o: Office, tmp_path: Path) -> httpx.Client:
    """A clerk logged in at the desk, as a browser is."""
    command = [GATEHOUSE, "--config", str(o.config), "user", "passwd", "客服小王"]
    subprocess.run(command, input="night-shift-42\n", text=True, check=True, capture_output=True)
    client = httpx.Client(base_url=o.url, follow_redirects=False)
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    done = client.post("/login", data={"username": "客服小王", "password": "night-shift-42",
                                       "csrf": token[1]})  # fmt: skip
    assert done.status_code == 303 and done.headers["location"] == "/"
    return client


def test_the_office_s_reads_answer_whatever_time_is_stored(
    clerk_office: tuple[Office, str], pg_url: str, tmp_path: Path
):
    o, clerk = clerk_office
    token = o.token("office", "node", "add", "gate-x")
    now = time.time()
    month = datetime.fromtimestamp(now, TZ).strftime("%Y-%m")
    _, slip = o.call("POST", "/api/v1/slips", clerk, SLIP)

    # what a gate with a clock gone wrong (or a forged batch) may push: taken, it happened
    assert _push(o, token, [
        (1, "access_event", {"ts": now, "decision": "deny", "gate": "main"}),
        (2, "access_event", {"ts": 1e300, "decision": "grant", "pass_id": "p1", "gate": "main"}),
        (3, "access_event", {"ts": -1e300, "decision": "deny"}),
        (4, "alarm", {"at": 1e300, "action": "raised", "type": "repair"}),
        (5, "confiscation", {"at": 1e300, "gate": "main", "pass_id": "p1"}),
        (6, "slip_released", {"number": slip["number"], "closed_at": 1e300, "gate": "main",
                              "closed_by": "老张"}),
        (7, "slip_released", {"number": "FX-2026-00001", "closed_at": now, "gate": "main"}),
    ]) == 200  # fmt: skip
    # and rows stored before the push checked them (or by another program): a time that is
    # text, one no float holds, payloads that are no object, a type that is no word
    stored = [
        ("access_event", '{"ts": "soon", "decision": "grant"}'),
        ("access_event", '{"ts": 1e400, "decision": "grant"}'),
        ("access_event", "[1, 2]"),
        ("alarm", '"raised"'),
        ("alarm", json.dumps({"at": now, "action": "raised", "type": {"odd": 1}})),
        ("duty_log", '{"n": 1e400, "big": ' + "9" * 5000 + "}"),
    ]
    for seq, (kind, payload) in enumerate(stored, 1):
        pg_rows(pg_url, "INSERT INTO edge_events (node_id, epoch, seq, kind, ref, payload, sha256, "
            "received_at) VALUES ('gate-x', 99, %s, %s, 'old', %s::jsonb, %s, %s)",
            seq, kind, payload, hashlib.sha256(payload.encode()).hexdigest(), now)  # fmt: skip
    # a pass stored before the office checked its times
    pg_rows(pg_url, "INSERT INTO passes (id, kind, card_key, name, valid_from, valid_until, "
        "status, version, issued_at, updated_at) VALUES ('old', 'resident', 1, '李四', 0, 1e300, "
        "'active', 1, %s, %s)", now, now)  # fmt: skip

    status, report = o.call("GET", f"/api/v1/reports/monthly?month={month}", clerk)
    assert status == 200, report
    assert report["decisions"] == {"gate-x:deny": 1}
    assert report["alarms_by_type"] == {'{"odd": 1}': 1}
    assert report["confiscations"] == {}
    assert report["gate_slips"] == {"gate-x:slip_released": 1}
    for bad in ("9999-12", "0000-01", "2026-13"):
        status, answer = o.call("GET", f"/api/v1/reports/monthly?month={bad}", clerk)
        assert status == 422 and answer["detail"].startswith("month: "), answer

    status, events = o.call("GET", "/api/v1/events?limit=1000", clerk)
    assert status == 200 and len(events["items"]) == len(stored) + 7

    # the office's slip followed the gate's release; its impossible time was not copied
    assert pg_rows(pg_url, "SELECT status, closed_at, closed_by FROM slips WHERE number = %s",
                 slip["number"]) == [("released", None, "老张")]  # fmt: skip
    desk = _desk(o, tmp_path)
    page = desk.get("/desk")
    assert page.status_code == 200 and slip["number"] in page.text
    assert desk.get(f"/desk/report?month={month}").status_code == 200
    assert desk.get(f"/desk/report.csv?month={month}").status_code == 200
    assert desk.get("/desk/report?month=9999-12").status_code == 422
    # the estate's page and a visitor's code, with a permit and a visit stored likewise
    pg_rows(pg_url, "INSERT INTO permits (permit_no, site, unit, company, valid_from, "
        "valid_until, status, version, issued_by, issued_at, updated_at) VALUES ('ZX-old', "
        "'default', '8-0801', '华美装饰', 0, 1e300, 'active', 1, 'x', %s, %s)",
        now, now)  # fmt: skip
    pg_rows(pg_url, "INSERT INTO expected_visitors (id, code, site, host_unit, name, category, "
        "valid_from, valid_until, entries, status, version, created_by, created_at, updated_at) "
        "VALUES ('v-old', '12345678', 'default', '5-1203', '张老师', 'tutor', -1e300, 1e300, 1, "
        "'active', 1, 'x', %s, %s)", now, now)  # fmt: skip
    page = desk.get("/desk/estate")
    assert page.status_code == 200 and "ZX-old" in page.text and "12345678" in page.text
    assert desk.get("/desk/visitors/v-old/print").status_code == 200
    desk.close()
