"""One shape everywhere: every GET route of the gate's and the office's APIs, listed from
their own OpenAPI documents, is called on real processes holding real records, and every
answer is walked. A time is ISO 8601 with its offset, never a count of seconds; a yes/no is
a JSON boolean, never 0 or 1. The office's sync routes (/sync/v1, spoken between machines
and documented in docs/sync.md) keep their wire format and are not walked."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import Broker, Office, add_sync, cli, http_call, node_for, wait_for
from tests.test_keys import signature_png, upload
from tests.test_sync_recovery import running
from tests.test_sync_scopes import SLIP

# a key whose value is a moment; a number that large anywhere is one too (seconds since 1970)
TIME_KEY = re.compile(r"(^|_)(at|ts|time|since|until|from|start|end|oldest|newest|when)$")
EPOCH = (1e9, 1e10)
# keys that answer yes or no: one of these as 0/1 is the shape this test exists to refuse
YES_NO = re.compile(
    r"^(is_|has_|can_)|(^|_)(active|revoked|stale|standing|acked|enabled|online|ready|ok|"
    r"shelved|overdue|masked|blocked|held|present|inside|expired|known|current|live|allowed)$"
)


def walk(value: Any, where: str) -> Iterator[str]:
    """Every place in ``value`` whose shape is wrong, said as ``where.key: why``."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _field(k, v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, f"{where}[{i}]")
    elif _number(value) and EPOCH[0] <= value <= EPOCH[1]:
        yield f"{where}: {value!r} looks like seconds since 1970"


def _field(key: str, value: Any, here: str) -> Iterator[str]:
    if key.endswith("_s") or key == "epoch":  # a duration in seconds; a random number
        return
    if COUNTS.search(here):
        return
    if _number(value) and TIME_KEY.search(key):
        yield f"{here}: {value!r} is a number where a time is ISO 8601"
    elif isinstance(value, str) and TIME_KEY.search(key) and re.match(r"\d{4}-\d\d-\d\dT", value):
        if datetime.fromisoformat(value).tzinfo is None:
            yield f"{here}: {value!r} has no offset"
    elif _number(value) and value in (0, 1) and YES_NO.search(key):
        yield f"{here}: {value!r} where a yes/no is true or false"
    else:
        yield from walk(value, here)


# counts whose names read like a yes/no: how many a control-room operator acknowledged,
# how many slips of a unit expired unused
COUNTS = re.compile(r"per_operator\[\d+\]\.acked$|/reports/slips\S*\.expired$")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def fetch(base: str, path: str, token: str) -> tuple[int, str, bytes]:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.headers.get_content_type(), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get_content_type(), e.read()


def routes(base: str, token: str, known: dict[str, str]) -> Iterator[str]:
    """Every GET route but the sync protocol's, its path and required query filled from
    ``known``."""
    status, doc = http_call(base, "GET", "/openapi.json", token)
    assert status == 200, doc
    for path, ops in sorted(doc["paths"].items()):
        if "get" not in ops or path.startswith("/sync/") or path == "/openapi.json":
            continue
        query = {p["name"]: known.get(p["name"], "0") for p in ops["get"].get("parameters", [])
                 if p["in"] == "query" and p.get("required")}  # fmt: skip
        filled = re.sub(
            r"\{(\w+)\}", lambda m: urllib.parse.quote(known.get(m.group(1), "0")), path
        )
        yield filled + ("?" + urllib.parse.urlencode(query) if query else "")


def swipe(broker: Broker, card: str) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"shape-{card}")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    info = c.publish("gatehouse/gate-test/reader/net/swipe", json.dumps({"card": card}), qos=1)
    info.wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


def test_the_walker_finds_what_it_looks_for():
    bad = {
        "items": [
            {
                "ts": 1796515963.2,
                "stale": 0,
                "hazard_allowed": 1,
                "n": 1_796_515_963,
                "valid_until": "2026-12-06T08:12:42",
                "active": True,
                "count": 1,
            }
        ]
    }
    assert sorted(walk(bad, "$")) == [
        "$.items[0].hazard_allowed: 1 where a yes/no is true or false",
        "$.items[0].n: 1796515963 looks like seconds since 1970",
        "$.items[0].stale: 0 where a yes/no is true or false",
        "$.items[0].ts: 1796515963.2 is a number where a time is ISO 8601",
        "$.items[0].valid_until: '2026-12-06T08:12:42' has no offset",
    ]
    assert not list(walk({"ts": "2026-12-06T08:12:42+08:00", "uptime_s": 2e9}, "$"))


def test_every_route_answers_iso_times_and_json_booleans(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    admin_o = office.token("user", "add", "管理员", "--role", "admin")
    workdir = tmp_path / "gate"
    workdir.mkdir()
    gate = node_for(workdir, [{"id": "net", "gate": "main", "transport": "mqtt"}], broker.port)
    door = '[[gates]]\nid = "main"\n[gates.door]\ncontact = true\n'  # /api/v1/doors/main
    gate.config.write_text(gate.config.read_text().replace('[[gates]]\nid = "main"\n', door))
    add_sync(gate, office, office.token("office", "node", "add", "gate-test"))
    admin_g = cli(gate.config, "user", "add", "管理员", "--role", "admin").stdout.strip()
    gate_url = f"http://127.0.0.1:{gate.api_port}"
    answers: list[tuple[str, Any]] = []  # (what was asked, the JSON answered) of every call

    def call(base: str, method: str, path: str, token: str, body: Any = None) -> Any:
        status, answer = http_call(base, method, path, token, body)
        assert status < 300, (path, answer)
        answers.append((f"{method} {path}", answer))
        return answer

    with running(office, gate):
        # records of every kind, at the office and at the gate
        issued = call(
            office.url,
            "POST",
            "/api/v1/passes",
            clerk,
            {"kind": "temporary", "card": "0000001001", "name": "访客甲", "unit": "5-1203"},
        )
        call(
            office.url,
            "POST",
            "/api/v1/passes",
            clerk,
            {"kind": "resident", "card": "0000001002", "name": "住户乙", "unit": "5-1203"},
        )
        slip = call(office.url, "POST", "/api/v1/slips", clerk, SLIP)
        wait_for(lambda: len(http_call(gate_url, "GET", "/api/v1/passes", admin_g)[1]["items"])
                 == 2, 30, "the gate to pull the office's passes")  # fmt: skip
        swipe(broker, "0000001001")
        swipe(broker, "0000009999")
        alarm = call(gate_url, "POST", "/api/v1/alarms", admin_g, {"type": "repair"})
        call(gate_url, "POST", f"/api/v1/alarms/{alarm['id']}/ack", admin_g)
        call(gate_url, "POST", f"/api/v1/alarms/{alarm['id']}/shelve", admin_g,
             {"minutes": 10, "reason": "维修已约"})  # fmt: skip
        visitor = {"name": "来访丙", "host_unit": "5-1203", "purpose": "维修", "gate": "main"}
        visitor = call(gate_url, "POST", "/api/v1/visitors", admin_g, visitor)
        call(gate_url, "POST", f"/api/v1/visitors/{visitor['id']}/confirm", admin_g,
             {"how": "intercom"})  # fmt: skip
        worker = {"kind": "worker", "card": "0000001003", "name": "工人丁", "unit": "5-1203",
                  "valid_until": "2027-01-31"}  # fmt: skip
        call(gate_url, "POST", "/api/v1/passes", admin_g, worker)
        key = {"id": "B5-1203", "label": "5栋1203 入户门", "kind": "unit", "unit": "5-1203"}
        call(gate_url, "POST", "/api/v1/keys", admin_g, key)
        status, sig = upload(gate_url, admin_g, signature_png())
        assert status == 201, sig
        loan = call(gate_url, "POST", "/api/v1/key-loans", admin_g, {
            "key": "B5-1203", "borrower": "张三", "borrower_kind": "owner",
            "phone": "13800138000", "reason": "维修", "signature": sig["signature"]})  # fmt: skip
        handover = call(gate_url, "POST", "/api/v1/handovers", admin_g,
                        {"items": {}, "notes": "无", "override_reason": "测试"})  # fmt: skip
        call(office.url, "POST", f"/api/v1/passes/{issued['id']}/revoke", clerk, {"reason": "丢失"})
        sent = {"access_event", "alarm", "visitor_in", "handover", "key_loan"}
        wait_for(lambda: kinds_at_office(office, admin_o) >= sent, 30,
                 "the gate's records to reach the office")  # fmt: skip
        events = http_call(gate_url, "GET", "/api/v1/events", admin_g)[1]["items"]
        known = {
            "alarm_id": str(alarm["id"]),
            "pass_id": issued["id"],
            "number": slip["number"],
            "event_id": events[0]["event_id"],
            "handover_id": str(handover["id"]),
            "loan_id": str(loan["id"]),
            "month": datetime.now().strftime("%Y-%m"),
            "gate_id": "main",
        }

        walked = 0
        for base, token in ((gate_url, admin_g), (office.url, admin_o)):
            for path in routes(base, token, known):
                status, kind, raw = fetch(base, path, token)
                if kind != "application/json":  # a photo, a page, the metrics' text
                    continue
                assert status == 200 or path.endswith(NOT_THERE), (path, status, raw[:300])
                answers.append((f"GET {path}", json.loads(raw)))
                walked += 1
        assert walked >= 20  # both APIs' routes, not an empty list

    wrong = [w for asked, answer in answers for w in walk(answer, asked)]
    assert not wrong, "\n".join(wrong)


# routes whose record this test has no way to make (a snapshot needs a camera) answer 404 in
# the shape of every refusal; the walk still reads them
NOT_THERE = ("/photo", "/snapshots/0", "/photos/0")


def kinds_at_office(office: Office, token: str) -> set[str]:
    status, page = http_call(office.url, "GET", "/api/v1/events?limit=1000", token)
    return {e["kind"] for e in page["items"]} if status == 200 else set()
