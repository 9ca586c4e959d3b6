"""Times outside any sane range are refused at every door of the edge, and a row already
stored with one never breaks a read (issue 11, finding 7: a pass valid until year 10000 was
committed while its write answered 503, and from then on every pass list answered 503)."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edge.api import create_app
from edge.messages import zh
from edge.pass_reads import shown
from edge.passes import PassError, parse_time, resolve_validity
from edge.service import Service
from edge.views import iso, pass_view
from tests.helpers import bearer, cli, in_process, node_for

TZ = ZoneInfo("Asia/Shanghai")

# each past one end: year 10000 in the site's zone, year 0 in UTC, just outside 2000-2099
# where it was typed, and nonsense years the calendar still has
FAR = [
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:00:00",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01",
    "1970-01-01T00:00:00Z",
    "1999-12-31T23:59:59+08:00",
    "2100-01-01T00:00:00+08:00",
    "5000-06-01T12:00",
]
# stored by something else, or before the doors checked: UNIX seconds of year 10000 in the
# site's zone, huge, hugely negative, infinite; and in range ones for contrast
STORED = [253402300800.0, 1e300, -1e300, -62135596800.0 - 86400, math.inf, -math.inf, 1e18]


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    with in_process(tmp_path) as s:
        yield s


@pytest.fixture
def client(svc: Service) -> TestClient:
    # a 503 must come back as an answer, as it does to a real client, not as an exception
    return TestClient(create_app(svc), raise_server_exceptions=False)


def _count(svc: Service) -> int:
    return int(svc.read(lambda c: c.execute("SELECT count(*) FROM passes").fetchone()[0]))


@pytest.mark.parametrize("text", FAR)
def test_the_api_refuses_a_pass_valid_beyond_the_range_and_writes_nothing(
    svc: Service, client: TestClient, text: str
) -> None:
    admin = bearer(svc, "王主任", "admin")
    for field in ("valid_from", "valid_until"):
        body = {"kind": "resident", "card": "01026F6C3A", "name": "张三", field: text}
        got = client.post("/api/v1/passes", json=body, headers=admin)
        assert got.status_code == 422, got.text
        assert "outside the years 2000 to 2099" in got.json()["detail"]
        assert "2000 年至 2099 年" in got.json()["detail_zh"]
    assert _count(svc) == 0
    assert client.get("/api/v1/passes", headers=admin).status_code == 200


@pytest.mark.parametrize("text", FAR)
def test_every_api_route_that_takes_a_time_refuses_one_beyond_the_range(
    svc: Service, client: TestClient, text: str
) -> None:
    admin = bearer(svc, "王主任", "admin")
    control = bearer(svc, "小李", "control")
    slip = {"unit": "3-1-502", "owner": "张三", "bearer": "张三", "authorisation": "in_person",
            "items": [{"name": "冰箱", "qty": 1}], "valid_until": text}  # fmt: skip
    answers = [
        client.post("/api/v1/check", json={"card": "01026F6C3A", "at": text}, headers=admin),
        client.post("/api/v1/slips", json=slip, headers=admin),
        client.get("/api/v1/events", params={"since": text}, headers=admin),
        client.get("/api/v1/events", params={"until": text}, headers=admin),
        client.get("/api/v1/alarms/stats", params={"since": text}, headers=control),
        client.get("/api/v1/alarms/stats", params={"until": text}, headers=control),
    ]
    for got in answers:
        assert got.status_code == 422, (got.request.url, got.text)
        assert "outside the years 2000 to 2099" in got.json()["detail"]
    assert svc.read(lambda c: c.execute("SELECT count(*) FROM goods_slips").fetchone()[0]) == 0


def test_the_edges_of_the_range_are_taken_wherever_the_site_is() -> None:
    for text in ("2000-01-01T00:00:00+14:00", "2099-12-31T23:59:59-12:00", "2000-01-01"):
        parse_time(text, TZ)
    for tz in (ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")):
        parse_time("2000-01-01T00:00", tz)
        parse_time("2099-12-31T23:59", tz)


@pytest.mark.parametrize("stored", [*STORED, math.nan])
def test_a_time_from_elsewhere_is_refused_by_the_shared_rule_too(stored: float) -> None:
    """The office and the visitors' lent cards call resolve_validity with UNIX times."""
    now = parse_time("2026-11-22T09:00", TZ)
    with pytest.raises(PassError, match="must be within the years 2000 to 2099") as e:
        resolve_validity("resident", now, TZ, None, stored)
    assert zh(str(e.value)) == "有效期至：必须在 2000 年至 2099 年之间"
    with pytest.raises(PassError, match="within the years"):
        resolve_validity("resident", now, TZ, stored, None)


def _stored_row(svc: Service, pass_id: str, card: int, valid_from: float, until: float) -> None:
    svc.write(lambda c: c.execute(
        "INSERT INTO passes (id, kind, card_key, name, valid_from, valid_until, status, "
        "issued_at, updated_at, version) VALUES (?, 'resident', ?, '张三丰', ?, ?, 'active', "
        "?, ?, 1)", (pass_id, card, valid_from, until, valid_from, valid_from)))  # fmt: skip


def test_one_bad_row_already_stored_never_breaks_a_list(svc: Service, client: TestClient) -> None:
    admin = bearer(svc, "王主任", "admin")
    guard = bearer(svc, "老张", "guard")
    good = client.post("/api/v1/passes", headers=admin,
                       json={"kind": "resident", "card": "0040856634", "name": "李四"})  # fmt: skip
    assert good.status_code == 201
    now = svc.clock.now()
    for i, t in enumerate(STORED):
        _stored_row(svc, f"bad-until-{i}", 0x1000 + i, now, t)
        _stored_row(svc, f"bad-from-{i}", 0x2000 + i, t, now)
    listed = client.get("/api/v1/passes", params={"limit": 500}, headers=guard)
    assert listed.status_code == 200, listed.text
    items = {p["id"]: p for p in listed.json()["items"]}
    assert len(items) == 1 + 2 * len(STORED)
    assert items[good.json()["id"]]["valid_from"].startswith("20")  # the good one as it was
    assert items["bad-until-0"]["valid_until"].startswith("9999-12-31T23:59:59")
    assert items["bad-from-2"]["valid_from"].startswith("0001-01-01T00:00:00")
    # the guard's check of a card whose pass holds such a time answers too
    checked = client.post("/api/v1/check", json={"card": f"{0x1000:08X}"}, headers=guard)
    assert checked.status_code == 200, checked.text
    assert checked.json()["pass"]["valid_until"].startswith("9999-12-31")


@given(st.one_of(st.floats(), st.integers(min_value=-(10**400), max_value=10**400), st.none()))
@example(float("nan"))
@example(10**20)
@settings(max_examples=300, deadline=None)
def test_a_stored_time_is_always_shown_or_null_never_an_error(t: float | None) -> None:
    for tz in (TZ, ZoneInfo("UTC"), ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12")):
        shown_at = iso(t, tz)
        assert shown_at is None or shown_at[:4].isdigit()
        row = {"id": "p", "kind": "resident", "card_key": 1, "card_hex": None, "name": "张三",
               "unit": None, "id_last4": None, "valid_from": t, "valid_until": t,
               "status": "active", "status_reason": None, "gates": None, "daily_window": None,
               "photo_sha256": None, "photo_path": None}  # fmt: skip
        assert pass_view(row, tz, False, "surname")["valid_until"] == shown_at
        assert shown(row, tz)["valid_from"] == shown_at


def test_the_command_line_refuses_far_times_writes_nothing_and_lists_a_bad_row(
    tmp_path: Path,
) -> None:
    node = node_for(tmp_path, [])
    add = ("pass", "add", "--kind", "resident", "--card", "01026F6C3A", "--name", "张三")
    for flag, text in (("--valid-until", "9999-12-31T23:59:59-01:00"),
                       ("--valid-from", "0001-01-01T00:00:00+14:00")):  # fmt: skip
        out = cli(node.config, *add, flag, text, check=False)
        assert out.returncode == 2 and "outside the years 2000 to 2099" in out.stderr, out.stderr
    out = cli(node.config, "check", "01026F6C3A", "--at", "9999-12-31T23:59:59-01:00", check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    csv_file = tmp_path / "far.csv"
    csv_file.write_text("kind,card,name,unit,valid_from,valid_until\n"
                        "resident,0040856634,李四,,,2030-12-01\n"
                        "resident,0040856635,王五,,,9999-12-31T23:59:59-01:00\n")  # fmt: skip
    out = cli(node.config, "pass", "import", str(csv_file), check=False)
    assert out.returncode == 2 and out.stderr.startswith("gatehouse: line 3: "), out.stderr
    listed = cli(node.config, "--json", "pass", "list")
    assert listed.returncode == 0 and json.loads(listed.stdout)["items"] == []

    # a row stored before the doors checked (or by another program) is listed, not fatal
    db = sqlite3.connect(tmp_path / "var" / "edge.db")
    with db:
        db.execute(
            "INSERT INTO passes (id, kind, card_key, name, valid_from, valid_until, status, "
            "issued_at, updated_at, version) VALUES ('old', 'resident', 1, '张三丰', 1.8e9, "
            "253402300800.0, 'active', 1.8e9, 1.8e9, 1)"
        )
    db.close()
    listed = cli(node.config, "--json", "pass", "list")
    assert listed.returncode == 0, listed.stderr
    (item,) = json.loads(listed.stdout)["items"]
    assert item["valid_until"].startswith("9999-12-31T23:59:59")
    assert cli(node.config, "pass", "list").returncode == 0


# A day or month past the years is refused at the door, not a 503 from the calendar
@pytest.mark.parametrize("route", ["/api/v1/duty-log?day=9999-12-31",
                                   "/api/v1/reports/slips?month=9999-12"])  # fmt: skip
def test_a_day_or_month_beyond_the_range_is_a_422_not_a_503(
    svc: Service, client: TestClient, route: str
) -> None:
    got = client.get(route, headers=bearer(svc, "王主任", "admin"))
    assert got.status_code == 422, got.text
