"""Alarms that reach people off the box (issue 16): which channel takes which news, what a
message says, what is stale (pure, table cases); then a real gate and broker sending to a
real local HTTP endpoint standing in for a group robot's webhook (Apprise's ``json://``),
with the link down and coming back, a flood, a kill -9 with news queued, and a host told
of their visitor."""

from __future__ import annotations

import json
import sqlite3
import time as time_
import urllib.request
from datetime import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge import notify
from edge.config import ChannelCfg, ConfigError, NotifyCfg, parse
from edge.notify import News, stale, takes
from tests.helpers import Broker, Robot, cli, free_port, http_call, node_for, publish, wait_for

NIGHT, DAY = time(3, 0), time(10, 0)


def channel(**kw: Any) -> ChannelCfg:
    return ChannelCfg.model_validate({"id": "c", "url": "json://127.0.0.1:9/x"} | kw)


@pytest.mark.parametrize(
    ("rules", "news", "local", "taken"),
    [
        ({}, News("raised", "fire", 1), DAY, True),
        ({}, News("resolved", "fire", 1), DAY, False),  # not asked for
        ({"events": ["resolved"]}, News("resolved", "fire", 1), DAY, True),
        ({"types": ["fire", "smoke"]}, News("raised", "door_held", 3), DAY, False),
        ({"types": ["fire", "smoke"]}, News("raised", "smoke", 1), DAY, True),
        ({"max_priority": 1}, News("raised", "door_forced", 2), DAY, False),
        ({"max_priority": 2}, News("raised", "door_forced", 2), DAY, True),
        # the director's channel: escalations only, from the first level
        ({"min_level": 1}, News("raised", "fire", 1), DAY, False),
        ({"min_level": 1}, News("escalated", "fire", 1, level=1), DAY, True),
        ({"min_level": 2}, News("escalated", "fire", 1, level=1), DAY, False),
        # special help requests go to the director, general ones to the supervisor
        ({"route_to": ["director"]}, News("raised", "first_aid", 1, 0, "director"), DAY, True),
        (
            {"route_to": ["director"]},
            News("raised", "repair", 3, 0, "service_supervisor"),
            DAY,
            False,
        ),
        ({"route_to": ["director"]}, News("raised", "fire", 1), DAY, False),  # not a request
        # quiet hours: only priority 1 wakes anybody
        ({"quiet": "22:00-07:00"}, News("raised", "door_held", 3), NIGHT, False),
        ({"quiet": "22:00-07:00"}, News("raised", "door_held", 3), DAY, True),
        ({"quiet": "22:00-07:00"}, News("raised", "fire", 1), NIGHT, True),
        ({"events": ["visitor"]}, News("visitor"), DAY, True),
        ({"events": ["visitor"], "quiet": "22:00-07:00"}, News("visitor"), NIGHT, False),
        ({}, News("visitor"), DAY, False),
        ({"events": ["gate_mode"]}, News("gate_mode", priority=1), NIGHT, True),
        (
            {"events": ["gate_mode"], "quiet": "22:00-07:00"},
            News("gate_mode", priority=1),
            NIGHT,
            True,
        ),  # a gate locked at night is news at night
    ],
)
def test_which_channel_takes_which_news(rules, news, local, taken):
    assert takes(channel(**rules), news, local) is taken


CFG = NotifyCfg()


@pytest.mark.parametrize(
    ("event", "alarm_state", "told", "age_s", "dropped"),
    [
        ("raised", "new", False, 5, False),
        ("raised", "acknowledged", False, 5, False),  # acknowledged: still news elsewhere
        ("raised", "resolved", False, 5, True),  # a resolved makes a queued raise pointless
        ("escalated", "closed", True, 5, True),
        ("resolved", "resolved", True, 5, False),
        ("resolved", "resolved", False, 5, True),  # nothing of it was ever sent there
        ("raised", "new", False, 86400, False),  # an alarm still open is news however late
        ("visitor", None, False, 60, False),
        ("visitor", None, False, 3600, True),  # the host has met them by now
    ],
)
def test_what_is_stale(event, alarm_state, told, age_s, dropped):
    assert (stale(event, alarm_state, told, 1000.0, 1000.0 + age_s, CFG) is not None) is dropped


@pytest.mark.parametrize(
    ("sends", "now", "left"),
    [
        ([], 100.0, 3),
        ([99.0], 100.0, 2),
        ([90.0, 95.0, 99.0], 100.0, 0),  # three in the window: the rest wait for a summary
        ([39.0, 95.0, 99.0], 100.0, 1),  # the first is more than a window ago
        ([40.0], 100.0, 3),  # exactly a window ago: let go
    ],
)
def test_a_channel_takes_flood_messages_a_window(sends, now, left):
    assert notify.room(sends, now, NotifyCfg(flood=3, flood_window_s=60)) == left


def view(**kw: Any) -> dict[str, Any]:
    return {
        "id": 7, "type": "fire", "priority": 1, "source": "panel-1", "location": "3号楼",
        "floor": "5", "room": "502", "gate": None, "route_to": None, "state": "new",
        "escalation_level": 0, "acked": False, "acked_by": None, "count": 1,
        "raised_at": "2026-12-06T03:01:02+08:00", "resolution": None, "resolved_by": None,
    } | kw  # fmt: skip


def test_messages_say_what_and_where_in_chinese_and_mask_names():
    title, body = notify.message(view(), News("raised", "fire", 1), "east-gate")
    assert title == "【P1】火警 报警"
    assert "地点：3号楼" in body and "楼层/房号：5 502" in body and "03:01:02" in body
    assert "控制室尚未确认" in body and "east-gate #7" in body
    first_aid = view(type="first_aid", route_to="director", escalation_level=2, location=None,
                     source="manual")  # fmt: skip
    title, body = notify.message(first_aid, News("escalated", "first_aid", 1, 2), "n")
    assert "已升级（第 2 级）" in title and "特殊求助，请主任知悉" in body
    assert "地点" not in body and "manual" not in body  # entered by the officer: floor, room
    done = view(state="resolved", resolution="genuine_external", resolved_by="王建国")
    title, body = notify.message(done, News("resolved", "fire", 1), "n")
    assert title.endswith("已处理") and "110/119/120" in body
    assert "王**" in body and "王建国" not in body
    title, body = notify.visitor_message(
        {"host_unit": "5-1203", "name": "李小龙", "gate": "east"}, "east", "14:05")  # fmt: skip
    assert "5-1203" in title and "李**" in body and "李小龙" not in body and "14:05" in body


def test_a_flood_is_one_summary_naming_the_most_urgent():
    rows = [{"id": i, "priority": 3, "title": "【P3】门长时间未关 报警", "body": f"地点：{i}号门"}
            for i in range(30)]  # fmt: skip
    rows.append({"id": 99, "priority": 1, "title": "【P1】火警 报警", "body": "地点：3号楼\n…"})
    title, body = notify.summary(rows)
    assert title == "【汇总】31 条通知"
    assert "门长时间未关 报警 × 30" in body
    assert body.index("【P1】火警 报警 · 地点：3号楼") < body.index(
        "【P3】门长时间未关 报警 · 地点：0号门"
    )


@pytest.mark.parametrize(
    ("channel_toml", "said"),
    [
        ('id = "a"\nurl = "nonsense"', "is not a notification URL Apprise knows"),
        ('id = "a"', "notify.channels[0].url: is required"),
        ('id = "a"\nurl = "json://h/{x}"', "may hold no braces but {unit}"),
        ('id = "a"\nurl = "ntfy://h/e-{unit}"', 'takes events = ["visitor"] only'),
        ('id = "a"\nurl = "json://h/x"\nevents = ["ringing"]', "notify.channels[0].events"),
        ('id = "a"\nurl = "json://h/x"\nmax_priority = 4', "must be 1, 2 or 3"),
        ('id = "a"\nurl = "json://h/x"\nquiet = "22-7"', "is not a window"),
        ('id = "a"\nurl_file = "missing.url"', "url_file: cannot be read"),
        ('id = "a"\nurl = "json://h/x"\ntypes = ["fier"]', "'fier' is no alarm type"),
    ],
)
def test_a_bad_channel_is_refused_naming_it(tmp_path, channel_toml, said):
    import tomllib

    raw = tomllib.loads(f'[node]\nid = "n"\n[[gates]]\nid = "g"\n[[notify.channels]]\n'
                        f'{channel_toml}\n')  # fmt: skip
    with pytest.raises(ConfigError, match=r"notify\.channels") as e:
        parse(raw, base=tmp_path)
    assert said in str(e.value)


def test_a_channel_url_can_be_kept_in_a_file_and_is_never_shown(tmp_path):
    (tmp_path / "robot.url").write_text("wecombot://ab12cd34ab12cd34\n")
    raw = {"node": {"id": "n"}, "gates": [{"id": "g"}],
           "notify": {"channels": [{"id": "w", "url_file": "robot.url"}]}}  # fmt: skip
    assert parse(raw, base=tmp_path).notify.channels[0].url == "wecombot://ab12cd34ab12cd34"
    config = tmp_path / "gatehouse.toml"
    config.write_text('[node]\nid = "n"\n[[gates]]\nid = "g"\n[[notify.channels]]\nid = "w"\n'
                      'url_file = "robot.url"\n')  # fmt: skip
    checked = cli(config, "config", "check")
    assert checked.returncode == 0, checked.stderr
    assert "ab12cd34" not in checked.stdout and "wecombot://… (hidden: 16 characters)" in (
        checked.stdout)  # fmt: skip


# -- a real gate, a real broker, a real HTTP endpoint --------------------------------------


def test_an_escalated_p1_reaches_the_robot_once_even_after_the_link_was_down(
    tmp_path: Path, broker: Broker
):
    robot = Robot().up()
    node = node_for(tmp_path, [], broker.port)
    base = f"json://127.0.0.1:{robot.port}"
    node.config.write_text(
        node.config.read_text()
        + f"""
[alarms]
escalate_after_s = {{"1" = 2.0}}
[notify]
retry_s = 1
[[notify.channels]]
id = "duty"
url = "{base}/duty"
events = ["raised", "escalated", "resolved"]
max_priority = 1
[[notify.channels]]
id = "director"
url = "{base}/director"
route_to = ["director"]
"""
    )
    officer = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    url = f"http://127.0.0.1:{node.api_port}"
    node.start(wait_ready=True)

    def fire(source: str, kind: str = "fire") -> int:
        publish(broker.port, f"alarm-input/{source}", {"type": kind, "state": "active"})
        return wait_for(lambda: of(source), 10, f"the alarm of {source}")

    def of(source: str) -> int | None:
        return next((a["id"] for a in alarms() if a["source"] == f"alarm-input:{source}"), None)

    def alarms() -> list[dict[str, Any]]:
        return http_call(url, "GET", "/api/v1/alarms?limit=500", officer)[1]["items"]

    def detail(alarm_id: int) -> dict[str, Any]:
        return http_call(url, "GET", f"/api/v1/alarms/{alarm_id}", officer)[1]

    def channel_state() -> dict[str, Any]:
        return node.ready()[1]["notify"]["channels"]["duty"]

    try:
        # a fire at 3 a.m. nobody acknowledges: raised, then escalated, each once
        first = fire("panel-1")
        wait_for(lambda: len(robot.titles("/duty")) >= 2, 20, "raised and escalated")
        assert http_call(url, "POST", f"/api/v1/alarms/{first}/ack", officer)[0] == 200
        titles = robot.titles("/duty")
        assert titles[0] == "【P1】火警 报警", titles
        assert "【P1】火警 无人确认，已升级（第 1 级）" in titles, titles
        assert len(titles) == len(set(titles)), titles  # each level once
        # a special help request reaches the director
        status, aid = http_call(url, "POST", "/api/v1/alarms", officer,
                                {"type": "first_aid", "floor": "5", "room": "502"})  # fmt: skip
        assert status == 201, aid
        wait_for(lambda: robot.titles("/director"), 15, "the director told")
        told = next(m for p, m in robot.got if p == "/director")
        assert told["title"] == "【P1】急救 报警", told
        assert "特殊求助，请主任知悉" in told["message"] and "5 502" in told["message"], told
        # both taken in hand: no more escalations of them while the link is down below
        assert http_call(url, "POST", f"/api/v1/alarms/{aid['id']}/ack", officer)[0] == 200

        # the link goes down: news waits, the channel shows failing, the duty log says so
        robot.down()
        waiting = fire("panel-2", "smoke")
        assert http_call(url, "POST", f"/api/v1/alarms/{waiting}/ack", officer)[0] == 200
        gone = fire("panel-3", "smoke")  # resolved before the link is back: never sent
        wait_for(lambda: not channel_state()["ok"], 15, "the channel failing")
        assert channel_state()["last_error"], channel_state()
        assert channel_state()["url"].startswith("json://… (hidden:"), channel_state()
        assert node.ready()[0], "a channel away is shown, not a reason to be unready"
        bearer = {"Authorization": f"Bearer {officer}"}
        req = urllib.request.Request(f"{url}/metrics", headers=bearer)
        with urllib.request.urlopen(req, timeout=10) as r:
            scraped = r.read().decode()
        assert 'gatehouse_notify_up{channel="duty"} 0.0' in scraped
        assert 'gatehouse_notify_queued{channel="duty"}' in scraped  # what waits, for a graph
        assert http_call(url, "POST", f"/api/v1/alarms/{gone}/ack", officer)[0] == 200
        status, said = http_call(url, "POST", f"/api/v1/alarms/{gone}/resolve", officer,
                                 {"resolution": "false_device"})  # fmt: skip
        assert status == 200, said
        log = http_call(url, "GET", "/api/v1/duty-log?limit=100", officer)[1]["items"]
        assert sum("通知渠道 duty 发送失败" in e["text"] for e in log) == 1, log

        # queued news survives a kill -9, and is sent once the link is back
        node.kill()
        node.start(wait_ready=True)
        robot.up()
        wait_for(lambda: any("烟感" in t for t in robot.titles("/duty")), 30, "the smoke sent")
        wait_for(lambda: channel_state()["queued"] == 0, 15, "the queue empty")
        smoke = [t for t in robot.titles("/duty") if "烟感" in t]
        assert smoke[0] == "【P1】烟感报警 报警", smoke  # panel-2's; panel-3's was dropped
        assert smoke.count("【P1】烟感报警 报警") == 1, smoke
        states = {n["event"]: n["state"] for n in detail(gone)["notifications"]}
        assert states == {"raised": "dropped", "resolved": "dropped"}, states
        assert detail(waiting)["notifications"][0]["state"] == "sent"
        history = [h["action"] for h in detail(waiting)["history"]]
        assert "notify_failed" in history and "notified" in history, history
        log = http_call(url, "GET", "/api/v1/duty-log?limit=200", officer)[1]["items"]
        assert any("通知渠道 duty 已恢复" in e["text"] for e in log), log

        # a flood while the link is down is one summary when it comes back
        robot.down()
        for i in range(14):
            publish(broker.port, f"alarm-input/zone-{i}", {"type": "fire", "state": "active"})
        wait_for(lambda: sum("zone-" in a["source"] for a in alarms()) == 14, 15, "the flood")
        for a in alarms():  # worked at the board: no more escalations of them
            if "zone-" in a["source"]:
                assert http_call(url, "POST", f"/api/v1/alarms/{a['id']}/ack", officer)[0] == 200
        wait_for(lambda: not channel_state()["ok"], 15, "failing again")
        before = len(robot.got)
        robot.up()
        wait_for(lambda: len(robot.got) > before, 30, "the summary")
        wait_for(lambda: channel_state()["queued"] == 0, 15, "the queue empty")
        flood = [m["title"] for p, m in robot.got[before:] if p == "/duty"]
        assert flood[0].startswith("【汇总】"), flood
        zone = of("zone-3")
        assert zone is not None
        assert detail(zone)["notifications"][0]["state"] == "summarised"
        # nothing was sent twice
        sent = [(m["title"], m["message"]) for p, m in robot.got if p == "/duty"]
        assert len(sent) == len(set(sent)), sent
    finally:
        node.stop()
        robot.down()


def test_a_steady_stream_of_alarms_is_rate_limited_to_a_few_messages_and_a_summary(
    tmp_path: Path, broker: Broker
):
    robot = Robot().up()
    node = node_for(tmp_path, [], broker.port)
    node.config.write_text(
        node.config.read_text() + f'[alarms]\nescalate_after_s = {{"1" = 600}}\n'
        f"[notify]\nflood = 3\nflood_window_s = 4\n"
        f'[[notify.channels]]\nid = "duty"\nurl = "json://127.0.0.1:{robot.port}/duty"\n'
    )
    officer = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    url = f"http://127.0.0.1:{node.api_port}"
    node.start(wait_ready=True)
    try:
        panel = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="panel")
        panel.connect("127.0.0.1", broker.port)
        panel.loop_start()
        for i in range(12):  # one every 0.3 s: a few waiting at each pass, never many
            body = json.dumps({"type": "fire", "state": "active"})
            panel.publish(f"gatehouse/gate-test/alarm-input/zone-{i}", body, qos=1)
            time_.sleep(0.3)
        panel.loop_stop()
        panel.disconnect()

        def told() -> list[str]:
            page = http_call(url, "GET", "/api/v1/alarms?limit=50", officer)[1]["items"]
            return [http_call(url, "GET", f"/api/v1/alarms/{a['id']}", officer)[1]
                    ["notifications"][0]["state"] for a in page]  # fmt: skip

        wait_for(lambda: len(told()) == 12 and "queued" not in told(), 30, "each alarm told")
        titles = robot.titles("/duty")
        assert len(titles) < 12 and any(t.startswith("【汇总】") for t in titles), titles
        assert told().count("sent") == len(titles) - sum(t.startswith("【汇总】") for t in titles)
    finally:
        node.stop()
        robot.down()


def test_a_host_is_told_when_their_announced_visitor_arrives(tmp_path: Path, broker: Broker):
    robot = Robot()  # down at first: three arrivals wait, more than the flood limit
    node = node_for(tmp_path, [], broker.port)
    node.config.write_text(
        node.config.read_text()
        + f"""
[notify]
flood = 2
retry_s = 1
[[notify.channels]]
id = "hosts"
url = "json://127.0.0.1:{robot.port}/unit-{{unit}}"
events = ["visitor"]
"""
    )
    guard = cli(node.config, "user", "add", "门卫老张", "--role", "guard").stdout.strip()
    url = f"http://127.0.0.1:{node.api_port}"
    now = time_.time()
    node.start(wait_ready=True)  # makes the database
    node.stop()
    with sqlite3.connect(tmp_path / "var" / "edge.db") as db:
        for code, unit, name in (("12345678", "5-1203", "李小龙"), ("23456781", "5-1204", "王五"),
                                 ("34567812", "6-0101", "赵六")):  # fmt: skip
            db.execute(  # announced at the office, as its pull would bring them
                "INSERT INTO expected_visitors (id, code, host_unit, name, category, valid_from, "
                "valid_until, entries, used, status, version) VALUES "
                "(?, ?, ?, ?, 'guest', ?, ?, 1, 0, 'active', 1)",
                (f"e-{code}", code, unit, name, now - 60, now + 3600),
            )
    node.start(wait_ready=True)
    try:
        for code in ("12345678", "23456781", "34567812"):
            status, v = http_call(url, "POST", "/api/v1/visitors/arrive", guard,
                                  {"code": code, "gate": "main"})  # fmt: skip
            assert status == 201, v
        wait_for(lambda: not node.ready()[1]["notify"]["channels"]["hosts"]["ok"], 15, "failing")
        robot.up()
        # each household hears of its own visitor, never a summary of the others'
        wait_for(lambda: len(robot.got) == 3, 30, "each host told")
        assert sorted(p for p, _ in robot.got) == ["/unit-5-1203", "/unit-5-1204", "/unit-6-0101"]
        (told,) = [m for p, m in robot.got if p == "/unit-5-1203"]
        assert told["title"] == "访客已到达：5-1203", told
        assert "李**" in told["message"] and "李小龙" not in told["message"], told
    finally:
        node.stop()
        robot.down()


def test_the_board_shows_what_reached_people_off_the_box_and_what_waits(
    tmp_path: Path, broker: Broker, browser: Any
):
    from tests.test_console import add_user, browser_login, offline_page

    robot = Robot()  # down: the first message waits
    node = node_for(tmp_path, [], broker.port)
    node.config.write_text(
        node.config.read_text() + f'[notify]\nretry_s = 1\n[[notify.channels]]\nid = "duty"\n'
        f'url = "json://127.0.0.1:{robot.port}/duty"\n'
    )
    node.start(wait_ready=True)
    add_user(node, "wang", "control")
    base = f"http://127.0.0.1:{node.api_port}"
    try:
        page, _outside = offline_page(browser, base)
        browser_login(page, base, "wang")
        publish(broker.port, "alarm-input/smoke-7", {"type": "fire", "state": "active"})
        row = page.locator("#queue li", has_text="火警")
        row.wait_for()
        wait_for(lambda: not node.ready()[1]["notify"]["channels"]["duty"]["ok"], 15, "failing")
        row.click()
        waiting = page.locator("#d-notifications li.overdue", has_text="duty · 报警 · 待发送")
        waiting.wait_for()
        robot.up()
        wait_for(lambda: robot.titles("/duty"), 30, "the message sent")
        row.click()
        sent = page.locator("#d-notifications li:not(.overdue)", has_text="duty · 报警 · 已发送")
        sent.wait_for()
    finally:
        node.stop()
        robot.down()


def test_notify_test_tells_the_it_person_whether_each_channel_works(tmp_path: Path):
    robot = Robot().up()
    closed = free_port()
    config = tmp_path / "gatehouse.toml"
    config.write_text(
        f'[node]\nid = "gate-test"\ndata_dir = "var"\n[[gates]]\nid = "main"\n'
        f'[[notify.channels]]\nid = "duty"\nurl = "json://127.0.0.1:{robot.port}/duty"\n'
        f'[[notify.channels]]\nid = "gone"\nurl = "json://127.0.0.1:{closed}/x"\n'
    )
    try:
        one = cli(config, "notify", "test", "duty")
        assert one.returncode == 0 and one.stdout.strip() == "duty: sent", one
        assert robot.titles("/duty") == ["【测试】Gatehouse 通知测试"]
        both = cli(config, "--json", "notify", "test")
        said = json.loads(both.stdout)
        assert both.returncode == 1 and said["duty"]["ok"] and not said["gone"]["ok"], said
        assert "127.0.0.1" in said["gone"]["error"], said
        assert both.stderr == "", both.stderr  # the reason once, in the answer
        unknown = cli(config, "notify", "test", "nobody", check=False)
        assert unknown.returncode == 2 and "is not configured (channels: duty, gone)" in (
            unknown.stderr), unknown.stderr  # fmt: skip
    finally:
        robot.down()


def test_a_channel_may_take_an_alarm_type_the_site_declared():
    channel = {"id": "w", "url": "json://h/x", "types": ["gas_leak"]}
    raw = {"node": {"id": "n"}, "gates": [{"id": "g"}], "alarms": {"priorities": {"gas_leak": 1}},
           "notify": {"channels": [channel]}}  # fmt: skip
    assert parse(raw).notify.channels[0].types == ("gas_leak",)
