"""Patrol rounds (issue 15, 巡查): a patrol wand's download parsed from fixtures; the pure
judgement of a round; and on real processes (a gate, its broker and its office), reads from
a wand upload and a handheld on MQTT, two rounds judged once their time is up — one done,
one with checkpoints missed, which raises ``patrol_missed`` naming them — in the duty log,
the API and the office's monthly report."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drivers.patrol_wand import WandError, parse
from edge import alarms, db, dutylog, store
from edge.config import Config, PatrolCfg
from edge.config import parse as parse_config
from edge.models import Pass
from edge.patrol import (
    Read,
    evaluate,
    faults_handed_in,
    judge,
    planned,
    receive_fault,
    record,
    report_fault,
    rounds_between,
)
from tests.helpers import Broker, Office, add_sync, cli, http_call, node_for, wait_for

TZ = ZoneInfo("Asia/Shanghai")
FIXTURES = Path(__file__).parent / "fixtures" / "wand"
TAGS = {"north": "0000900001", "south": "0000900002", "b5": "0000900003"}


def test_a_wand_download_is_read_line_by_line_header_and_blanks_skipped():
    reads = parse((FIXTURES / "download.csv").read_bytes())
    assert [(r.seq, r.tag, r.at.strftime("%H:%M:%S")) for r in reads] == [
        (1, "0000900001", "09:05:12"), (2, "0000900002", "09:14:40"),
        (3, "0000900009", "09:20:03"), (4, "0000900003", "09:31:55")]  # fmt: skip


def test_a_damaged_download_is_refused_whole_with_every_bad_line_named():
    with pytest.raises(WandError) as e:
        parse((FIXTURES / "damaged.csv").read_bytes())
    assert [p.split(":")[0] for p in e.value.problems] == ["line 2", "line 3", "line 4", "line 5"]


@pytest.mark.parametrize(
    ("reads", "status", "read", "missing"),
    [
        ([("a", 1), ("b", 2), ("c", 3)], "done", ["a", "b", "c"], []),
        ([("c", 1), ("a", 2), ("b", 3)], "done", ["c", "a", "b"], []),  # in any order
        ([("a", 1), ("a", 2), ("c", 3)], "incomplete", ["a", "c"], ["b"]),  # twice is once
        ([("x", 1)], "missed", [], ["a", "b", "c"]),  # a tag of no checkpoint of the route
        ([], "missed", [], ["a", "b", "c"]),
    ],
)
def test_a_round_is_judged_by_its_checkpoints_read(reads, status, read, missing):
    assert judge(["a", "b", "c"], reads) == (status, read, missing)


def test_the_rounds_planned_are_those_whose_time_ends_in_the_look():
    cfg = PatrolCfg(checkpoints=[{"id": "a", "name": "甲", "tag": "1"}],
                    routes=[{"id": "r", "name": "路线", "checkpoints": ["a"], "minutes": 90}],
                    plans=[{"route": "r", "at": ["23:30", "09:00"]}])  # fmt: skip
    day = datetime(2026, 12, 6, tzinfo=TZ)
    found = list(planned(cfg, (day + timedelta(hours=0.5)).timestamp(),
                         (day + timedelta(hours=10, minutes=30)).timestamp(), TZ))  # fmt: skip
    # yesterday's 23:30 round ends at 01:00 today; today's 09:00 one at 10:30
    assert [datetime.fromtimestamp(p.planned_at, TZ).strftime("%m-%d %H:%M") for p in found] == [
        "12-05 23:30", "12-06 09:00"]  # fmt: skip


def test_a_plan_keeps_to_its_months():
    """Renovation rounds start at 07:00 in summer and 08:00 in winter (003 ch.3 §七)."""
    cfg = PatrolCfg(checkpoints=[{"id": "a", "name": "甲", "tag": "1"}],
                    routes=[{"id": "r", "name": "装修巡查", "checkpoints": ["a"], "minutes": 60}],
                    plans=[{"route": "r", "at": ["07:00"], "months": [5, 6, 7, 8, 9]},
                           {"route": "r", "at": ["08:00"], "months": [10, 11, 12, 1, 2, 3]},
                           {"route": "r", "at": ["08:00"], "months": [4]}])  # fmt: skip

    def starts(day: datetime) -> list[str]:
        found = planned(cfg, day.timestamp(), (day + timedelta(days=1)).timestamp(), TZ)
        return [f"{datetime.fromtimestamp(p.planned_at, TZ):%H:%M}" for p in found]

    assert starts(datetime(2026, 7, 1, tzinfo=TZ)) == ["07:00"]
    assert starts(datetime(2026, 12, 1, tzinfo=TZ)) == ["08:00"]
    with pytest.raises(ValueError, match="months"):
        PatrolCfg(checkpoints=[{"id": "a", "name": "甲", "tag": "1"}],
                  routes=[{"id": "r", "name": "x", "checkpoints": ["a"]}],
                  plans=[{"route": "r", "at": ["07:00"], "months": [13]}])  # fmt: skip


def patrol_node(tmp_path: Path, plans: list[dict[str, Any]]) -> tuple[Config, sqlite3.Connection]:
    """A gate's database and a config with the garden route, for the rules below."""
    cfg = parse_config({"node": {"id": "n1", "data_dir": str(tmp_path)}, "gates": [{"id": "main"}],
                 "database": {"url": f"sqlite:///{tmp_path / 'e.db'}"},
                 "patrol": {"checkpoints": [{"id": cp, "name": f"{cp}-点", "tag": tag}
                                            for cp, tag in TAGS.items()],
                            "routes": [{"id": "garden", "name": "花园巡查", "minutes": 30,
                                        "checkpoints": list(TAGS)}],
                            "plans": plans}})  # fmt: skip
    db.migrate(cfg.db_path)
    return cfg, db.connect(cfg.db_path)


def add_staff(conn: sqlite3.Connection, card: str, name: str, now: float) -> None:
    store.insert(conn, Pass, {"id": f"P-{card}", "kind": "staff", "card_key": int(card),
                              "name": name, "valid_from": now - 86400, "issued_at": now,
                              "updated_at": now, "status": "active", "version": 1,
                              "origin": "local"})  # fmt: skip


def test_reads_uploaded_after_a_round_was_judged_judge_it_again_and_clear_its_alarm(
    tmp_path: Path,
):
    now = datetime(2026, 12, 6, 10, 0, tzinfo=TZ).timestamp()
    nine = now - 3600
    cfg, conn = patrol_node(tmp_path, [{"route": "garden", "at": ["09:00"]}])
    add_staff(conn, "0000700001", "巡逻员小李", now)
    # the handheld read the north garden; the round is judged at 10:00, incomplete
    got = record(conn, cfg, [Read(TAGS["north"], nine + 60, None, "hh-1")], "mqtt", now - 3000)
    assert got["rejudged"] == 0
    (alarm_id,) = evaluate(conn, cfg, now)
    (judged,) = rounds_between(conn, nine, now)
    assert judged["status"] == "incomplete" and judged["missing"] == ["south", "b5"]
    # the wand comes back: the guard read his own card first, then the rest of the round
    # (and a read after it, which judges nothing)
    wand = [Read("0000700001", nine + 120, None, "wand-1"),
            Read(TAGS["south"], nine + 600, None, "wand-1"),
            Read(TAGS["b5"], nine + 900, None, "wand-1"),
            Read(TAGS["b5"], nine + 7200, None, "wand-1")]  # fmt: skip
    got = record(conn, cfg, wand, "wand", now + 60, uploader="门岗老张")
    assert got == {"recorded": 4, "unknown_tags": 0, "guard_cards": 1, "rejudged": 1,
                   "alarms_cleared": [alarm_id]}  # fmt: skip
    (again,) = rounds_between(conn, nine, now)
    assert (again["id"], again["status"], again["missing"]) == (judged["id"], "done", [])
    assert again["guards"] == "巡逻员小李"  # the card's holder, not who docked the wand
    assert alarms.get(conn, alarm_id)["active"] == 0
    sent = db.rows(conn, "SELECT ref, payload FROM outbox WHERE kind = 'patrol_round' "
                         "ORDER BY seq", ())  # fmt: skip
    assert [(r["ref"], json.loads(r["payload"])["status"]) for r in sent] == [
        (str(judged["id"]), "incomplete"), (str(judged["id"]), "done")]  # fmt: skip
    # the same device later in the shift, one read at a time: still his; a day later, not
    record(conn, cfg, [Read(TAGS["north"], now + 3600, None, "wand-1")], "mqtt", now + 3600)
    record(conn, cfg, [Read(TAGS["north"], now + 86400, None, "wand-1")], "mqtt", now + 86400)
    last = db.rows(conn, "SELECT guard FROM patrol_reads ORDER BY at DESC LIMIT 2", ())
    assert [r["guard"] for r in last] == [None, "巡逻员小李"]
    # a done round is never judged again
    assert record(conn, cfg, [Read(TAGS["north"], nine + 1000)], "api", now + 90)["rejudged"] == 0


def test_a_gate_back_after_days_off_raises_one_alarm_for_the_rounds_it_missed(tmp_path: Path):
    now = datetime(2026, 12, 6, 10, 0, tzinfo=TZ).timestamp()
    cfg, conn = patrol_node(tmp_path, [{"route": "garden", "at": ["09:00", "15:00"]}])
    assert evaluate(conn, cfg, now - 3 * 86400 - 7200) == []  # the last look: 08:00, 3 days ago
    raised = evaluate(conn, cfg, now)
    judged = rounds_between(conn, now - 4 * 86400, now)
    assert len(judged) == 7 and {r["status"] for r in judged} == {"missed"}
    (one,) = raised  # one alarm, naming them all, not seven
    assert {r["alarm_id"] for r in judged} == {one}
    assert "7 rounds not done from 12-03 09:00 to 12-06 09:00" in alarms.get(conn, one)["notes"]
    assert len(db.rows(conn, "SELECT id FROM alarms WHERE type = 'patrol_missed'", ())) == 1
    # every round is recorded all the same, for the office's report
    assert len(db.rows(conn, "SELECT seq FROM outbox WHERE kind = 'patrol_round'", ())) == 7
    # and the next look, with one round missed, raises that one's own
    (own,) = evaluate(conn, cfg, now + 6 * 3600)
    assert own != one and "15:00 missed" in alarms.get(conn, own)["notes"]


def test_the_day_s_fault_notices_are_handed_in_at_17_30_once(tmp_path: Path):
    """KF-013 §4.2: the guards hand in the day's notices at 17:30 and the duty officer signs
    for them; the duty log lists them then, naming those he has not received."""
    day = datetime(2026, 12, 7, tzinfo=TZ)
    cfg, conn = patrol_node(tmp_path, [])

    def at(hh: int, mm: int) -> float:
        return (day + timedelta(hours=hh, minutes=mm)).timestamp()

    def report(place: str, when: float) -> dict[str, Any]:
        fields = {"place": place, "category": "lighting", "description": "灯不亮"}
        return report_fault(conn, fields, lambda _sha: True, "巡逻员老王", when, TZ)

    yesterday = report("1栋大堂", at(-6, 0))  # 18:00 the day before: after its hand-in
    first, second = report("2栋电梯厅", at(9, 0)), report("车库B1", at(16, 0))
    receive_fault(conn, first["id"], "值班员", at(16, 30))
    assert not faults_handed_in(conn, cfg, at(17, 29))
    assert faults_handed_in(conn, cfg, at(17, 30))
    assert not faults_handed_in(conn, cfg, at(17, 31))  # once a day
    (entry,) = [e for e in dutylog.between(conn, at(0, 0), at(18, 0)) if "handed in" in e["text"]]
    assert entry["category"] == "repair"
    numbers = ", ".join(f["number"] for f in (yesterday, first, second))
    waiting = f"{yesterday['number']}, {second['number']}"
    assert entry["text"] == (f"fault notices handed in at 17:30: 3 ({numbers}); "
                             f"not received by the duty officer: {waiting}")  # fmt: skip
    late = report("3栋", at(18, 0))  # after today's hand-in: tomorrow's
    assert faults_handed_in(conn, cfg, at(24 + 17, 30))
    (entry,) = [e for e in dutylog.between(conn, at(24, 0), at(48, 0)) if "handed in" in e["text"]]
    assert late["number"] in entry["text"] and first["number"] not in entry["text"]


def patrol_config(rounds: list[datetime] | None) -> str:
    lines = ["[patrol]"]
    for cp, tag in TAGS.items():
        lines += ["[[patrol.checkpoints]]", f'id = "{cp}"', f'name = "{cp}-点"', f'tag = "{tag}"']
    lines += ["[[patrol.routes]]", 'id = "garden"', 'name = "花园巡查"',
              'checkpoints = ["north", "south", "b5"]', "minutes = 30"]  # fmt: skip
    if rounds:
        at = ", ".join(f'"{r:%H:%M}"' for r in rounds)
        lines += ["[[patrol.plans]]", 'route = "garden"', f"at = [{at}]"]
    return "\n".join(lines) + "\n"


def wand_file(reads: list[tuple[str, datetime]]) -> bytes:
    rows = ["序号,卡号,时间"] + [f"{i:04d},{tag},{at:%Y-%m-%d %H:%M:%S}"
                                   for i, (tag, at) in enumerate(reads, start=1)]  # fmt: skip
    return "\r\n".join(rows).encode("gb18030")


def upload(url: str, token: str, data: bytes) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{url}/api/v1/patrol/upload?device=wand-1", data=data,
                                 method="POST", headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "text/csv"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_round_with_a_checkpoint_missed_raises_the_alarm_and_reaches_the_report(
    tmp_path: Path, broker: Broker, pg_url: str
):
    now = datetime.now(TZ).replace(second=0, microsecond=0)
    first, second = now - timedelta(minutes=80), now - timedelta(minutes=40)
    office = Office(tmp_path / "office", pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    (tmp_path / "gate").mkdir()
    node = node_for(tmp_path / "gate", [], broker.port)
    base = node.config.read_text()
    node.config.write_text(base + patrol_config(None))
    add_sync(node, office, office.token("office", "node", "add", "gate-test"))
    synced = node.config.read_text()
    guard = cli(node.config, "user", "add", "巡逻员老王", "--role", "guard").stdout.strip()
    officer = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    cli(node.config, "pass", "add", "--kind", "staff", "--card", "0000700001",
        "--name", "巡逻员小李")  # fmt: skip
    url = f"http://127.0.0.1:{node.api_port}"
    office.start()
    node.start(wait_ready=True)
    try:
        # the wand comes back to the guard room: the first round whole, the second with
        # only the north garden read, and a tag no checkpoint has
        data = wand_file([(TAGS["north"], first + timedelta(minutes=5)),
                          (TAGS["south"], first + timedelta(minutes=12)),
                          (TAGS["b5"], first + timedelta(minutes=20)),
                          ("0000900099", first + timedelta(minutes=21)),
                          (TAGS["north"], second + timedelta(minutes=3))])  # fmt: skip
        status, kept = upload(url, guard, data)
        assert status == 201 and kept == {"recorded": 5, "unknown_tags": 1, "guard_cards": 0,
                                          "rejudged": 0, "alarms_cleared": []}, kept  # fmt: skip
        status, said = upload(url, guard, (FIXTURES / "damaged.csv").read_bytes())
        assert status == 422 and "line 2" in said["detail"] and said["detail_zh"], said

        # a handheld reads a tag now, on MQTT
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="handheld-1")
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        c.publish("gatehouse/gate-test/patrol/hh-1/read",
                  json.dumps({"tag": TAGS["south"], "guard": "巡逻员小李"}), qos=1
                  ).wait_for_publish(10)  # fmt: skip
        c.loop_stop()
        c.disconnect()
        wait_for(lambda: any(r["device"] == "hh-1" and r["checkpoint"] == "south"
                             for r in http_call(url, "GET", "/api/v1/patrol/reads", guard)[1]
                             ["items"]), 20, "the handheld's read")  # fmt: skip
    finally:
        node.stop()

    # the plans are set: the rounds whose time is up are judged at once
    node.config.write_text(synced.replace(patrol_config(None), patrol_config([first, second])))
    node.start(wait_ready=True)
    try:

        def rounds() -> list[dict[str, Any]]:
            day = f"{first:%Y-%m-%d}"
            found = http_call(url, "GET", f"/api/v1/patrol/rounds?day={day}", guard)[1]["items"]
            if f"{second:%Y-%m-%d}" != day:  # the rounds straddle midnight
                found += http_call(url, "GET", f"/api/v1/patrol/rounds?day={second:%Y-%m-%d}",
                                   guard)[1]["items"]  # fmt: skip
            return found

        judged = wait_for(lambda: len(r := rounds()) == 2 and r, 20, "the two rounds judged")
        assert [(r["status"], r["missing"]) for r in judged] == [
            ("done", []), ("incomplete", ["south", "b5"])]  # fmt: skip
        assert judged[0]["guards"] == "巡逻员老王"
        status, page = http_call(url, "GET", "/api/v1/alarms?limit=50", officer)
        (missed,) = [a for a in page["items"] if a["type"] == "patrol_missed"]
        assert "south-点" in missed["notes"] and "b5-点" in missed["notes"], missed
        status, log = http_call(url, "GET", "/api/v1/duty-log?limit=100", guard)
        assert sum("round of 花园巡查" in e["text"] for e in log["items"]) == 2
        time.sleep(1)
        node.stop()
        node.start(wait_ready=True)  # judged once: a restart does not judge them again
        assert len(rounds()) == 2

        # a second wand is docked late: 小李 read his own staff card, then the two
        # checkpoints the second round missed, in its time: the round is judged again, done,
        # his, and its alarm clears
        data = wand_file([("0000700001", second + timedelta(minutes=4)),
                          (TAGS["south"], second + timedelta(minutes=9)),
                          (TAGS["b5"], second + timedelta(minutes=15))])  # fmt: skip
        status, kept = upload(url, guard, data)
        assert status == 201 and kept == {
            "recorded": 3, "unknown_tags": 0, "guard_cards": 1, "rejudged": 1,
            "alarms_cleared": [missed["id"]]}, kept  # fmt: skip
        again = wait_for(lambda: len(r := rounds()) == 2 and r, 20, "the rounds")
        assert [(r["status"], r["guards"]) for r in again] == [
            ("done", "巡逻员老王"), ("done", "巡逻员小李,巡逻员老王")]  # fmt: skip
        status, got = http_call(url, "GET", f"/api/v1/alarms/{missed['id']}", officer)
        assert status == 200 and got["active"] in (0, False), got

        # the missed checkpoint's fault, on a notice: received by the duty officer, closed
        # by the repair team
        incomplete = judged[1]["id"]
        status, fault = http_call(url, "POST", "/api/v1/patrol/faults", guard, {
            "place": "5栋消防通道", "category": "fire", "description": "消防通道堆放杂物",
            "round_id": incomplete})  # fmt: skip
        assert status == 201 and fault["number"].startswith("GZ-"), fault
        status, said = http_call(url, "POST", "/api/v1/patrol/faults", guard, {
            "place": "x", "category": "ufo", "description": "y"})  # fmt: skip
        assert status == 422 and said["detail_zh"], said
        base_f = f"/api/v1/patrol/faults/{fault['id']}"
        status, said = http_call(url, "POST", base_f + "/close", guard, {"repaired_by": "工程部"})
        assert status == 409 and said["detail_zh"], said  # not received yet
        assert http_call(url, "POST", base_f + "/receive", guard)[0] == 403  # the officer's
        status, got = http_call(url, "POST", base_f + "/receive", officer)
        assert status == 200 and got["received_by"] == "值班员", got
        status, made = http_call(url, "POST", "/api/v1/handovers", officer, {"items": {}})
        assert [f["number"] for f in made["report"]["faults_open"]] == [fault["number"]]
        status, done = http_call(url, "POST", base_f + "/close", officer,
                                 {"repaired_by": "工程部小刘", "notes": "已清理"})  # fmt: skip
        assert status == 200 and done["closed_by"] == "工程部小刘" and done["closed_at"], done
        assert http_call(url, "GET", "/api/v1/patrol/faults?open=true", guard)[1]["items"] == []

        month = f"{second:%Y-%m}"
        want = {"gate-test:garden:done": 2}  # each round as judged last

        def counted() -> dict[str, Any]:
            total: dict[str, int] = {}
            for m in {f"{first:%Y-%m}", month}:
                _, report = office.call("GET", f"/api/v1/reports/monthly?month={m}", clerk)
                for k, n in (report.get("patrol_by_route") or {}).items():
                    total[k] = total.get(k, 0) + n
            return total

        wait_for(lambda: counted() == want, 30, "the rounds in the office's report")
        wait_for(lambda: len(office.call("GET", "/api/v1/events?kind=fault_notice", clerk)[1]
                             ["items"]) == 3, 30, "the notice's three changes")  # fmt: skip
    finally:
        node.stop()
        office.stop()
