"""The console: people log in as themselves, and the guard's screen shows each decision as
it happens, in Chinese, in a real browser (Debian's Chromium) with the outside world cut
off, against a real service, a real pty and a real broker."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import paho.mqtt.publish as publish
import pytest
from PIL import Image

from drivers.rdm6300 import Rdm6300
from edge import alarms, db, users
from edge.cards import parse_card
from edge.console.text import EN, OWN_NAMES, ZH, words
from edge.sessions import Sessions
from tests.helpers import (
    Broker,
    Node,
    Office,
    Pty,
    add_sync,
    cli,
    free_port,
    http_call,
    node_for,
    passwd,
    pg_rows,
    wait_for,
)
from tests.test_keys import signature_png, upload

PASSWORD = "night-shift-42"
# `make screenshots` sets this: the browser tests keep their pictures there (docs/)
SHOTS = os.environ.get("GATEHOUSE_SCREENSHOTS")


def keep_screenshot(page: Any, tmp_path: Path, name: str) -> None:
    """A page's picture (or a part's: ``page`` may be a locator)."""
    page.screenshot(path=str(Path(SHOTS) / name if SHOTS else tmp_path / name))


def frame(card: str) -> bytes:
    return Rdm6300.encode(parse_card(card))


def add_user(node: Node, name: str, role: str, password: str = PASSWORD) -> None:
    assert cli(node.config, "user", "add", name, "--role", role).returncode == 0
    proc = passwd(node.config, name, password)
    assert proc.returncode == 0, proc.stderr


def login(base: str, name: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=10)
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, page.text
    r = client.post("/login", data={"username": name, "password": password, "csrf": token[1]})
    assert r.status_code == 303
    return client


# -- sessions and passwords, in process ------------------------------------------------


def test_a_session_ends_after_its_idle_time_and_each_has_its_own_csrf_token():
    now = [100.0]
    sessions = Sessions(lambda: now[0], idle_s=60)
    a, b = sessions.start("li", "guard"), sessions.start("wang", "control")
    assert a.csrf != b.csrf and a.sid != b.sid
    assert a.csrf_ok(a.csrf) and not a.csrf_ok(b.csrf) and not a.csrf_ok(None)
    now[0] += 59
    assert sessions.get(a.sid) is a  # in use: its idle clock starts again
    now[0] += 59
    assert sessions.get(a.sid) is a
    assert sessions.get(b.sid) is None  # 118 s untouched
    now[0] += 61
    assert sessions.get(a.sid) is None
    assert sessions.get("made-up") is None and sessions.get(None) is None


def test_passwords_are_argon2id_and_a_wrong_name_or_password_or_revoked_user_gets_nothing(
    path: Path,
):
    conn = db.connect(path)
    users.add(conn, "li", "guard", 1.0)
    with pytest.raises(users.DomainError, match="at least 8"):
        users.set_password(conn, "li", "short", 2.0)
    with pytest.raises(users.NotFound):
        users.set_password(conn, "nobody", PASSWORD, 2.0)
    users.set_password(conn, "li", PASSWORD, 2.0)
    stored = conn.execute("SELECT password_hash FROM users WHERE name = 'li'").fetchone()[0]
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert users.check_password(conn, "li", PASSWORD) == ("li", "guard")
    assert users.check_password(conn, "li", PASSWORD + "x") is None
    assert users.check_password(conn, "nobody", PASSWORD) is None
    users.add(conn, "token-only", "guard", 1.0)  # a device's user has no password
    assert users.check_password(conn, "token-only", "") is None
    users.revoke(conn, "li", 3.0)
    assert users.check_password(conn, "li", PASSWORD) is None


def test_both_languages_have_every_word():
    assert set(EN) == {k for k in ZH if not k.startswith(OWN_NAMES)}
    english = words("en")
    assert english["alarm.first_aid"] == "first aid" and english["step.call 120"] == "call 120"


def test_every_alarm_type_resolution_and_default_step_has_chinese_words():
    named = {f"alarm.{t}" for t in (*alarms.DEVICE_TYPES, *alarms.HELP_TYPES)}
    named |= {f"resolution.{r}" for r in alarms.RESOLUTIONS}
    steps = {s for c in alarms.DEFAULT_CHECKLISTS.values() for s in c}
    named |= {f"step.{s}" for s in (*steps, *alarms.GENERIC_CHECKLIST)}
    assert named - set(ZH) == set()


# -- logging in, against a real service ------------------------------------------------


@pytest.fixture
def node(tmp_path: Path, broker: Broker, pty: Pty) -> Iterator[Node]:
    readers = [{"id": "main-in", "gate": "main", "port": pty.path, "protocol": "rdm6300"}]
    n = node_for(tmp_path, readers, broker.port).start(wait_ready=True)
    yield n
    n.stop()


def test_a_person_logs_in_with_a_cookie_the_page_cannot_read_and_changes_need_its_csrf(
    node: Node,
):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    assert httpx.get(base + "/").headers["location"] == "/login"
    # a wrong password and a login form without its token both send the person back
    wrong = login(base, "li", "not-the-password")
    assert wrong.cookies.get("gh_session") is None
    with httpx.Client(base_url=base) as forged:
        r = forged.post("/login", data={"username": "li", "password": PASSWORD, "csrf": "x"})
        assert r.headers["location"] == "/login?error=expired"
    assert "用户名或密码错误" in httpx.get(base + "/login?error=failed").text

    client = login(base, "li")
    page = client.get("/guard")
    assert page.status_code == 200 and "门岗" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    csrf = re.search(r'"csrf": "([^"]+)"', page.text)
    assert csrf
    r = client.get("/")
    assert r.headers["location"] == "/guard"
    # another role's page sends the guard home, not to a second login
    assert client.get("/control").headers["location"] == "/"
    # the API with the session: reads need nothing more, changes need the CSRF header
    check = {"card": "01026F6C3A"}
    assert client.post("/api/v1/check", json=check).status_code == 403
    r = client.post("/api/v1/check", json=check, headers={"X-CSRF-Token": csrf[1]})
    assert r.status_code == 200 and r.json()["reason"] == "unknown_credential"
    # revoked at the command line: the session is worth nothing from then on
    cli(node.config, "user", "revoke", "li")
    assert client.get("/api/v1/events").status_code == 401
    assert client.get("/guard").headers["location"] == "/login"


def test_the_login_cookie_is_http_only_and_same_site_strict(node: Node):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    with httpx.Client(base_url=base) as client:
        token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)
        assert token
        r = client.post("/login", data={"username": "li", "password": PASSWORD, "csrf": token[1]})
        cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie"
                      and v.startswith("gh_session="))  # fmt: skip
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie


def test_user_passwd_refuses_a_short_password_and_an_unknown_user(node: Node):
    proc = passwd(node.config, "ghost", PASSWORD)
    assert proc.returncode == 2 and "no active user named 'ghost'" in proc.stderr
    assert cli(node.config, "user", "add", "li", "--role", "guard").returncode == 0
    proc = passwd(node.config, "li", "abc")
    assert proc.returncode == 2 and "at least 8 characters" in proc.stderr


# -- the guard's screen in a real browser ----------------------------------------------


def offline_page(browser: Any, base: str) -> tuple[Any, list[str]]:
    """A 1366x768 page (a guard-room PC) that can reach the node and nothing else."""
    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    outside: list[str] = []

    def only_the_node(route: Any) -> None:
        if route.request.url.startswith(base):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_the_node)
    return page, outside


def browser_login(page: Any, base: str, name: str) -> None:
    page.goto(base + "/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("body[data-live='1']")  # the stream sent its state


def test_a_guard_sees_each_swipe_with_name_photo_and_reason_in_chinese(
    tmp_path: Path, node: Node, pty: Pty, browser: Any
):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    photo = tmp_path / "photo.jpg"
    picture = np.zeros((160, 120, 3), np.uint8)
    picture[:, :, 2] = 200  # a red square: the holder
    cv2.imwrite(str(photo), picture)
    out = cli(node.config, "pass", "add", "--kind", "resident", "--card", "01026F6C3A",
              "--name", "张三丰", "--unit", "3-1-502", "--photo", str(photo))  # fmt: skip
    assert out.returncode == 0, out.stderr
    pass_id = out.stdout.strip()

    page, outside = offline_page(browser, base)
    browser_login(page, base, "li")
    assert page.inner_text("#live") == ZH["live.ok"]

    pty.write(frame("01026F6C3A"))
    page.wait_for_selector("#verdict.grant")
    assert page.inner_text("#verdict-word") == "通行"
    assert page.inner_text("#verdict-reason") == ZH["reason.ok"]
    assert page.inner_text("#f-name") == "张三丰"  # whole: the guard compares it
    assert page.inner_text("#f-unit") == "3-1-502"
    assert page.inner_text("#f-kind") == "住户卡"
    keep_screenshot(page, tmp_path, "guard-grant.png")
    # the photo came through the session cookie (a browser cannot send a bearer header)
    img = page.locator("#photo")
    img.wait_for(state="visible")
    assert img.get_attribute("src") == f"/api/v1/passes/{pass_id}/photo"
    assert img.evaluate("i => i.complete && i.naturalWidth") == 120

    pty.write(frame("0099999999"))  # no pass for this card
    page.wait_for_selector("#verdict.deny")
    assert page.inner_text("#verdict-word") == "禁止通行"
    assert page.inner_text("#verdict-reason") == "此卡未登记"
    assert page.locator("#recent li").count() == 2
    keep_screenshot(page, tmp_path, "guard-deny.png")
    assert outside == []


def test_a_guard_checks_a_card_by_typing_then_confiscates_it_and_opens_by_hand(
    node: Node, pty: Pty, browser: Any
):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    out = cli(node.config, "pass", "add", "--kind", "resident", "--card", "0A0B0C0D0E",
              "--name", "李四", "--unit", "5-2-101")  # fmt: skip
    pass_id = out.stdout.strip()
    page, outside = offline_page(browser, base)
    browser_login(page, base, "li")

    # a scanner types the number and Enter into the one field that always has the focus
    page.keyboard.type("0A0B0C0D0E")
    page.keyboard.press("Enter")
    page.wait_for_selector("#verdict.grant.checked")
    assert page.inner_text("#f-name") == "李四"
    assert page.evaluate("() => document.activeElement.id") == "check-input"

    page.once("dialog", lambda d: d.accept("冒用他人证件"))
    page.click("#confiscate")
    page.wait_for_selector("#notice.good")
    assert page.inner_text("#notice") == ZH["guard.confiscated"]
    conn = sqlite3.connect(node.config.parent / "var" / "edge.db")
    status = conn.execute("SELECT status FROM passes WHERE id = ?", (pass_id,)).fetchone()
    assert status == ("confiscated",)
    pty.write(frame("0A0B0C0D0E"))
    page.wait_for_selector("#verdict.deny:not(.checked)")
    assert page.inner_text("#verdict-reason") == "证件已被没收"

    page.once("dialog", lambda d: d.accept("救护车进入"))
    page.click("#open")
    # the broker took it: the screen says the open really went out
    page.locator("#notice.good", has_text=ZH["guard.open.sent"]).wait_for()
    page.locator("#recent li", has_text=ZH["reason.manual_override"]).wait_for()
    assert page.locator("#recent li").count() == 2  # the check was not recorded
    assert outside == []


class Proxy:
    """The LAN between the guard-room PC and the node: socat forwarding a port. Stopping it
    (the whole process group, every forwarded connection with it) is pulling the cable."""

    def __init__(self, target: int) -> None:
        self.port, self.target = free_port(), target
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proxy:
        self.proc = subprocess.Popen(
            [shutil.which("socat") or "/usr/bin/socat",
             f"TCP-LISTEN:{self.port},fork,reuseaddr,bind=127.0.0.1",
             f"TCP:127.0.0.1:{self.target}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        wait_for(lambda: _answers(self.port), 5, "the proxy")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


def test_a_page_that_loses_its_stream_catches_up_and_a_restart_asks_for_the_login(
    node: Node, pty: Pty, browser: Any
):
    add_user(node, "li", "guard")
    lan = Proxy(node.api_port).start()
    base = f"http://127.0.0.1:{lan.port}"
    try:
        page, _outside = offline_page(browser, base)
        browser_login(page, base, "li")
        # the cable is pulled: the page says so, and what happened meanwhile is there when
        # it is back
        lan.stop()
        page.wait_for_selector("#live.lost")
        pty.write(frame("0099999999"))
        wait_for(lambda: node.ready()[1].get("counts", {}).get("deny:unknown_credential"),
                 what="the swipe decided while the page was away")  # fmt: skip
        lan.start()
        page.wait_for_selector("#live.ok", timeout=15_000)
        page.locator("#recent li").first.wait_for()
        assert "此卡未登记" in page.inner_text("#recent li")

        # sessions live in memory: after a restart the guard logs in again, and the page
        # takes them there itself when its stream is refused
        node.stop()
        page.wait_for_selector("#live.lost")
        node.start(wait_ready=True)
        page.wait_for_url(base + "/login", timeout=15_000)
        browser_login(page, base, "li")
        pty.write(frame("0099999999"))
        wait_for(lambda: page.locator("#recent li").count() == 2, what="the new swipe listed")
    finally:
        lan.stop()


# -- the control room's board ----------------------------------------------------------


def test_an_alarm_on_mqtt_appears_on_the_board_sounds_and_is_worked_to_resolved(
    tmp_path: Path, node: Node, broker: Broker, browser: Any
):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "wang", "control")
    page, outside = offline_page(browser, base)
    browser_login(page, base, "wang")
    assert page.url == base + "/control"
    page.click("#sound")  # browsers make sound only after a click on the page
    page.locator("#sound.on").wait_for()
    assert page.get_attribute("body", "data-sounding") == "0"

    publish.single("gatehouse/gate-test/alarm-input/smoke-7", json.dumps(
        {"type": "fire", "state": "active", "location": "3号楼大堂"}), qos=1,
        port=broker.port)  # fmt: skip
    row = page.locator("#queue li.unacked", has_text="火警")  # no reload: pushed
    row.wait_for()
    assert "3号楼大堂" in row.inner_text() and "未确认" in row.inner_text()
    page.locator("body[data-sounding='1']").wait_for()  # P1, unacknowledged: it beeps

    row.click()
    page.locator("#d-title", has_text="P1 火警").wait_for()
    steps = page.locator("#d-steps li button")
    assert steps.nth(2).inner_text().startswith("拨打119")
    page.click("#d-ack")
    page.locator("body[data-sounding='0']").wait_for()
    page.locator("#queue li:not(.unacked)", has_text="火警").wait_for()
    steps.nth(2).click()  # any order: 119 first
    page.locator("#d-steps li.done").first.wait_for()
    page.select_option("#d-code", "genuine_external")
    page.fill("#d-notes", "消防已到场")
    page.click("#d-resolve button")
    page.locator("#d-state", has_text="已处理").wait_for()
    # 紧急事件处理记录表 for it
    page.click("#d-emergency")
    page.fill("#e-cause", "3号楼大堂垃圾桶烟头引燃")
    page.fill("#e-responsible", "保洁主管")
    page.fill("#e-remedial", "灭火器扑灭，通风")
    page.fill("#e-preventive", "大堂禁烟提示，垃圾桶换阻燃型")
    page.click("#emergency-form button[type=submit]")
    page.locator("#e-notice.good").wait_for()
    page.click("#emergency-close")
    conn = sqlite3.connect(node.config.parent / "var" / "edge.db")
    assert conn.execute("SELECT cause, by FROM emergency_records").fetchone() == (
        "3号楼大堂垃圾桶烟头引燃",
        "wang",
    )

    # a help request entered by type, floor and room goes into the same queue
    page.select_option("#help-type", "first_aid")
    page.fill("#help-floor", "12")
    page.fill("#help-room", "1203")
    page.click("#help-form button")
    page.locator("#queue li", has_text="急救").wait_for()
    page.locator("#d-title", has_text="急救").wait_for()
    keep_screenshot(page, tmp_path, "control.png")

    # the workload as charts: 144 ten-minute bars for the day, the fire acknowledged fast
    page.click("text=" + ZH["stats.page"])
    page.locator("body[data-drawn='1']").wait_for()
    assert page.locator("#chart-10min rect").count() == 144
    first_band = page.locator("#chart-ack rect").first.locator("title").text_content()
    assert first_band == "<1m: 1"
    assert outside == []


def test_a_guard_releases_a_slip_once_and_the_second_scan_is_refused_on_screen(
    node: Node, browser: Any
):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    admin = cli(node.config, "user", "add", "office-admin", "--role", "admin").stdout.strip()
    slip = httpx.post(
        base + "/api/v1/slips", headers={"Authorization": f"Bearer {admin}"},
        json={"unit": "3-1-502", "owner": "张三丰", "bearer": "搬家公司 刘师傅",
              "authorisation": "in_person", "items": [{"name": "冰箱", "qty": 1},
                                                       {"name": "纸箱", "qty": 12}]},
    ).json()  # fmt: skip
    number = slip["number"]
    page, outside = offline_page(browser, base)
    browser_login(page, base, "li")

    page.keyboard.type(number.lower())  # a scanner or a person, either case
    page.keyboard.press("Enter")
    page.locator("#s-status.ok", has_text=ZH["slip.status.issued"]).wait_for()
    assert "冰箱 × 1" in page.inner_text("#s-items")
    assert page.inner_text("#s-bearer") == "搬家公司 刘师傅"
    page.click("#s-release")
    page.locator("#s-status.bad", has_text=ZH["slip.status.released"]).wait_for()
    assert page.inner_text("#notice") == ZH["slip.released"]
    assert "li" in page.inner_text("#s-closed")  # who let it out, and when

    page.keyboard.type(number)  # the same slip again
    page.keyboard.press("Enter")
    page.locator("#s-status.bad", has_text=ZH["slip.status.released"]).wait_for()
    assert page.locator("#s-release").is_disabled()
    page.keyboard.type("FX-2026-99999")  # a number nobody issued: refused in words
    page.keyboard.press("Enter")
    page.locator("#notice.bad", has_text=ZH["error.404"] + "：").wait_for()
    said = page.inner_text("#notice").replace("FX-2026-99999", "")
    assert not re.search("[A-Za-z]", said), said  # the service's detail in Chinese too
    status = httpx.get(base + f"/api/v1/slips/{number}",
                       headers={"Authorization": f"Bearer {admin}"}).json()["status"]  # fmt: skip
    assert status == "released"
    assert outside == []


def test_a_guard_registers_a_visitor_records_the_host_s_yes_and_lets_them_out(
    node: Node, browser: Any
):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    page, outside = offline_page(browser, base)
    browser_login(page, base, "li")
    page.click("#visitors-open")
    page.fill("#v-host", "5-2-101")  # whom they visit first
    page.fill("#v-name", "赵六")
    page.fill("#v-id", "110101199003071234")
    page.click("#visitor-form button[type=submit]")
    page.locator("#v-notice.good", has_text=ZH["visitor.registered"]).wait_for()
    row = page.locator("#v-list li", has_text="5-2-101")  # names are masked in lists
    row.locator("button", has_text=ZH["visitor.how.phone"]).click()
    row.locator("button", has_text=ZH["visitor.exit"]).wait_for()  # inside now
    row.locator("button", has_text=ZH["visitor.exit"]).click()
    page.locator("#v-list li", has_text=ZH["visitor.none"]).wait_for()
    conn = sqlite3.connect(node.config.parent / "var" / "edge.db")
    row_db = conn.execute(
        "SELECT confirmed_how, exited_at IS NOT NULL, id_last4 FROM visitors"
    ).fetchone()
    assert row_db == ("phone", 1, "1234")  # the ID number itself is nowhere
    assert outside == []


def test_the_board_shows_a_complaint_s_stages_and_marks_the_one_overdue(
    tmp_path: Path, broker: Broker, browser: Any
):
    node = node_for(tmp_path, [], broker.port)
    node.config.write_text(node.config.read_text() + "[alarms.deadlines]\n"
                           "complaint = { dispatched = 0.02, resolved = 600 }\n")  # fmt: skip
    node.start(wait_ready=True)
    try:
        base = f"http://127.0.0.1:{node.api_port}"
        add_user(node, "wang", "control")
        officer = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
        status, raised = http_call(base, "POST", "/api/v1/alarms", officer,
                                   {"type": "complaint", "notes": "噪音"})  # fmt: skip
        assert status == 201, raised
        page, outside = offline_page(browser, base)
        browser_login(page, base, "wang")
        page.locator("#queue li", has_text=ZH["alarm.complaint"]).click()
        overdue = page.locator("#d-deadlines .overdue", has_text=ZH["deadline.dispatched"])
        overdue.wait_for()  # pushed when it escalated: no reload
        assert ZH["control.overdue"] in overdue.inner_text()
        assert ZH["deadline.resolved"] in page.inner_text("#d-deadlines")
        assert outside == []
    finally:
        node.stop()


def test_after_the_end_of_work_the_guard_s_screen_names_the_workers_still_inside(
    tmp_path: Path, broker: Broker, pty: Pty, browser: Any
):
    readers = [{"id": "main-in", "gate": "main", "port": pty.path, "protocol": "rdm6300"}]
    node = node_for(tmp_path, readers, broker.port)
    node.config.write_text(node.config.read_text() + '[permits]\nwork_ends = "00:00"\n')
    node.start(wait_ready=True)
    try:
        base = f"http://127.0.0.1:{node.api_port}"
        admin = cli(node.config, "user", "add", "陈主管", "--role", "admin").stdout.strip()
        status, made = http_call(base, "POST", "/api/v1/passes", admin, {
            "kind": "worker", "card": "0000007001", "name": "王师傅", "unit": "8-0801",
            "daily_window": "00:00-24:00"})  # fmt: skip
        assert status == 201, made
        add_user(node, "li", "guard")
        page, outside = offline_page(browser, base)
        browser_login(page, base, "li")
        assert page.locator("#workers").is_hidden()  # nobody inside yet
        pty.write(frame("0000007001"))
        page.locator("#verdict.grant").wait_for()
        page.reload()  # (the list is looked at once a minute; a reload looks now)
        page.locator("#workers-list li", has_text="王** · 8-0801").wait_for()
        assert ZH["workers.inside"] in page.inner_text("#workers")
        assert outside == []
    finally:
        node.stop()


def test_the_guard_s_screen_shows_live_when_the_control_room_locks_the_gate(
    tmp_path: Path, broker: Broker, browser: Any
):
    node = node_for(tmp_path, [], broker.port)
    node.start(wait_ready=True)
    try:
        base = f"http://127.0.0.1:{node.api_port}"
        officer = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
        add_user(node, "li", "guard")
        page, outside = offline_page(browser, base)
        browser_login(page, base, "li")
        page.locator("#live.ok").wait_for()
        assert page.locator("#modes").is_hidden()
        status, _ = http_call(base, "PUT", "/api/v1/gates/main/mode", officer,
                              {"mode": "locked", "reason": "抢劫：等待警方"})  # fmt: skip
        assert status == 200
        page.locator("#modes-list li", has_text="抢劫：等待警方").wait_for()  # no reload
        assert ZH["mode.locked"] in page.inner_text("#modes")
        keep_screenshot(page, tmp_path, "guard-gate-locked.png")
        page.reload()  # a page that connects later starts with it
        page.locator("#modes-list li", has_text="值班员").wait_for()
        http_call(base, "PUT", "/api/v1/gates/main/mode", officer,
                  {"mode": "normal", "reason": "警方已到场"})  # fmt: skip
        page.locator("#modes").wait_for(state="hidden")
        assert outside == []

        # the officer holds the side gate open from the board, for the fire engines
        add_user(node, "wang", "control")
        board, outside = offline_page(browser, base)
        browser_login(board, base, "wang")
        board.select_option("#mode-gate", "side")
        board.select_option("#mode-mode", "held_open")
        board.click("#mode-form button[type=submit]")  # no reason: the form says so
        assert board.evaluate("document.getElementById('mode-reason').validity.valueMissing")
        board.fill("#mode-reason", "3栋火警，保持车道畅通")
        board.click("#mode-form button[type=submit]")
        board.locator("#mode-now", has_text=ZH["mode.held_open"]).wait_for()
        page.locator("#modes-list li", has_text="3栋火警").wait_for()  # the guard sees it
        got = http_call(base, "GET", "/api/v1/gates/side/mode", officer)[1]
        assert (got["mode"], got["set_by"]) == ("held_open", "wang"), got
        assert outside == []
    finally:
        node.stop()


def test_a_guard_lends_a_key_against_a_drawn_signature_and_takes_it_back(node: Node, browser: Any):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    admin = cli(node.config, "user", "add", "陈主管", "--role", "admin").stdout.strip()
    status, _ = http_call(base, "POST", "/api/v1/keys", admin,
                          {"id": "B5-1203", "label": "5栋1203 入户门", "kind": "unit"})  # fmt: skip
    assert status == 201
    page, outside = offline_page(browser, base)
    browser_login(page, base, "li")
    page.click("#keys-open")
    page.locator("#k-key option", has_text="B5-1203").wait_for(state="attached")
    page.fill("#k-borrower", "张三")
    page.select_option("#k-kind", "owner")
    page.fill("#k-phone", "13800138000")
    page.fill("#k-reason", "取快递")
    page.click("#key-form button[type=submit]")  # not signed yet: refused on the page
    page.locator("#k-notice.bad", has_text=ZH["keys.sign.missing"]).wait_for()
    box = page.locator("#k-sign").bounding_box()
    page.mouse.move(box["x"] + 30, box["y"] + 100)
    page.mouse.down()
    for x, y in ((120, 40), (220, 110), (400, 30)):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
    page.mouse.up()
    page.click("#key-form button[type=submit]")
    page.locator("#k-notice.good", has_text=ZH["keys.lent"]).wait_for()
    row = page.locator("#k-list li", has_text="B5-1203")
    row.wait_for()
    assert "张*" in row.inner_text() and "138****8000" in row.inner_text()  # masked
    assert "张三" not in row.inner_text()
    keep_screenshot(page, node.config.parent, "guard-keys.png")
    page.once("dialog", lambda d: d.accept("1"))  # the count, as the prompt asks
    row.locator("button", has_text=ZH["keys.return"]).click()
    page.locator("#k-list li", has_text=ZH["keys.none"]).wait_for()
    conn = sqlite3.connect(node.config.parent / "var" / "edge.db")
    loan = conn.execute("SELECT borrower, lent_by, returned_by, returned_count, closed_at IS NOT "
                        "NULL, signature_sha256 FROM key_loans").fetchone()  # fmt: skip
    assert loan[:5] == ("张三", "li", "li", 1, 1)
    drawn = node.config.parent / "var" / "photos" / loan[5][:2] / f"{loan[5]}.jpg"
    ink = np.asarray(Image.open(drawn).convert("L"))
    assert (ink < 100).sum() > 200  # the strokes are in the signature kept
    assert outside == []


def test_a_guard_admits_an_announced_visitor_by_the_code_they_show(node: Node, browser: Any):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    now = time.time()
    with sqlite3.connect(node.config.parent / "var" / "edge.db") as conn:  # as pulled
        conn.execute(
            "INSERT INTO expected_visitors (id, code, host_unit, name, category, valid_from, "
            "valid_until, entries, used, status, version) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 0, "
            "'active', 1)",
            ("e1", "20261206", "5-1203", "张家教", "tutor", now - 60, now + 3600),
        )
    page, outside = offline_page(browser, base)
    browser_login(page, base, "li")
    page.click("#visitors-open")
    row = page.locator("#e-list li", has_text="5-1203")
    row.wait_for()
    assert "张**" in row.inner_text() and ZH["visitor.category.tutor"] in row.inner_text()
    assert ZH["visitor.state.waiting"] in row.inner_text()
    page.fill("#v-code", "20261206")
    page.click("#arrive-form button[type=submit]")
    page.locator("#a-notice.good", has_text=ZH["visitor.arrived"]).wait_for()
    page.locator("#e-list li", has_text=ZH["visitor.state.inside"]).wait_for()
    page.fill("#v-code", "20261206")  # once only: the refusal is shown in Chinese
    page.click("#arrive-form button[type=submit]")
    page.locator("#a-notice.bad", has_text="次入场已用完").wait_for()
    assert outside == []


# -- the office clerk's desk -----------------------------------------------------------


def read_qr(picture: Path) -> str:
    """What a scanner reads off the printed code. OpenCV's readers miss now and then on a
    screenshot, so both of them are tried at a few enlargements (crisp modules)."""
    image = cv2.cvtColor(cv2.imread(str(picture)), cv2.COLOR_BGR2GRAY)
    readers = [cv2.QRCodeDetector(), cv2.QRCodeDetectorAruco()]
    for scale in (2, 3, 1, 4):
        big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        big = cv2.copyMakeBorder(big, 40, 40, 40, 40, cv2.BORDER_CONSTANT, value=255)
        for reader in readers:
            text, _points, _ = reader.detectAndDecode(big)
            if text:
                return str(text)
    return ""


def office_and_scanning_gate(
    tmp_path: Path, pg_url: str, broker: Broker
) -> tuple[Office, Node, Pty]:
    """An office with a clerk who has a desk password, and a gate with a QR scanner that
    trusts the office's signature (neither started)."""
    office = Office(tmp_path, pg_url)
    office.token("user", "add", "客服小王", "--role", "clerk")
    proc = passwd(office.config, "客服小王", PASSWORD)
    assert proc.returncode == 0, proc.stderr
    key = office.token("office", "key")
    scanner = Pty()
    node = node_for(tmp_path, [{"id": "scan", "gate": "main", "port": scanner.path,
                                "protocol": "line"}], broker.port)  # fmt: skip
    with node.config.open("a") as f:
        f.write(f'[qr]\noffice_public_keys = ["{key}"]\n')
    return office, node, scanner


def desk_page(browser: Any, office: Office, name: str = "客服小王") -> tuple[Any, list[str]]:
    """The clerk logged in at the desk, on a page that can reach only the office."""
    page, outside = offline_page(browser, office.url)
    page.goto(office.url + "/")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(office.url + "/desk")
    return page, outside


def test_a_clerk_issues_a_temporary_pass_prints_its_qr_and_the_gate_grants_it(
    tmp_path: Path, broker: Broker, pg_url: str, browser: Any
):
    # no sync: the gate knows the pass only by its QR
    office, node, scanner = office_and_scanning_gate(tmp_path, pg_url, broker)
    office.start()
    node.start(wait_ready=True)
    try:
        page, outside = desk_page(browser, office)
        page.select_option("#p-kind", "temporary")
        page.fill("#p-card", "0040856634")
        page.fill("#p-name", "访客乙")
        page.fill("#p-unit", "7-3-1201")
        page.click("#issue-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/desk/passes/.+/print$"))
        assert page.inner_text("#pp-name") == "访客乙"
        page.locator("#qr svg").wait_for()
        pdf = page.pdf(format="A5")  # what the clerk's printer gets
        assert pdf.startswith(b"%PDF") and len(pdf) > 1000
        assert outside == []

        # the QR on paper, read back from the page's own SVG, is what a guard scans
        svg = page.inner_html("#qr")
        picture = tmp_path / "qr.png"
        png = page.locator("#qr svg").screenshot()
        picture.write_bytes(png)
        found = read_qr(picture)
        assert found.startswith("GH1."), svg[:200]
        scanner.write(found.encode() + b"\r\n")
        wait_for(lambda: node.ready()[1].get("counts", {}).get("grant:ok"),
                 what="the gate to grant the printed pass")  # fmt: skip

        # a goods release slip issued at the desk, printed, and checked at the gate by its QR
        page.goto(office.url + "/desk")
        page.fill("#sl-unit", "3-1-502")
        page.fill("#sl-owner", "张三丰")
        page.fill("#sl-bearer", "搬家公司 刘师傅")
        page.fill("#sl-items", "冰箱 1\n纸箱 × 12\n台灯")
        page.click("#slip-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/desk/slips/FO-\d{4}-\d{5}/print$"))
        assert page.inner_text("#ps-items").split("\n") == ["冰箱 × 1", "纸箱 × 12", "台灯 × 1"]
        number = page.inner_text("#ps-number")
        png = page.locator("#qr svg").screenshot()
        picture.write_bytes(png)
        slip_qr = read_qr(picture)
        guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
        checked = httpx.post(f"http://127.0.0.1:{node.api_port}/api/v1/check",
                             headers={"Authorization": f"Bearer {guard}"},
                             json={"qr": slip_qr}).json()  # fmt: skip
        assert checked["decision"] == "grant" and checked["slip"]["number"] == number

        # the desk lists it; a slip written out wrong is cancelled there
        page.goto(office.url + "/desk")
        slip_row = page.locator(f"#slips tr[data-number='{number}']")
        assert ZH["slip.status.issued"] in slip_row.inner_text()
        page.once("dialog", lambda d: d.accept("物品填错"))
        slip_row.locator("button.cancel-slip").click()
        page.locator(f"#slips tr[data-number='{number}']",
                     has_text=ZH["slip.status.cancelled"]).wait_for()  # fmt: skip

        # the visitor stays another day: renewed from now, printed again with a new code
        page.once("dialog", lambda d: d.accept(""))  # empty: the longest a temporary pass may
        page.locator("#passes tr", has_text="访客乙").locator("button.renew").click()
        page.wait_for_url(re.compile(r".*/desk/passes/.+/print$"))
        picture.write_bytes(page.locator("#qr svg").screenshot())
        renewed = read_qr(picture)
        assert renewed.startswith("GH1.") and renewed != found

        # back at the desk: find the pass by its unit, revoke it (reported lost)
        page.goto(office.url + "/desk")
        page.fill("#search", "7-3-1201")
        page.click("#search + button")
        row = page.locator("#passes tr", has_text="访客乙")
        row.wait_for()
        assert page.locator("#passes tr").count() == 1
        page.once("dialog", lambda d: d.accept("挂失"))
        row.locator("button.revoke").click()
        page.locator("#passes tr", has_text=ZH["desk.status.revoked"]).wait_for()

        # the month as tables, and as a CSV that Excel on a Chinese Windows reads as UTF-8
        page.click("text=" + ZH["desk.report.go"])
        page.wait_for_url(re.compile(r".*/desk/report\?month=\d{4}-\d{2}$"))
        assert "管理处放行条" in page.inner_text("main")
        assert ZH["slip.status.cancelled"] + "\t1" in page.inner_text("main")  # in words
        with page.expect_download() as download:
            page.click("#csv")
        data = Path(download.value.path()).read_bytes()
        assert data.startswith(b"\xef\xbb\xbf")  # the byte-order mark
        lines = data.decode("utf-8-sig").splitlines()
        assert lines[0] == "项目,明细,数量"
        assert f"管理处放行条,{ZH['slip.status.cancelled']},1" in lines
    finally:
        node.stop()
        office.stop()
        scanner.close()


def test_a_clerk_takes_the_holder_s_photo_and_the_gate_shows_it_when_the_pass_is_scanned(
    tmp_path: Path, broker: Broker, pg_url: str, browser: Any
):
    office, node, scanner = office_and_scanning_gate(tmp_path, pg_url, broker)
    add_sync(node, office, office.token("office", "node", "add", "gate-test"))
    add_user(node, "li", "guard")
    guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    # a phone's picture, held upright: its pixels lie on their side, EXIF says so
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "holder.jpg"
    Image.new("RGB", (1600, 1200), (40, 160, 40)).save(photo, "JPEG", exif=exif.tobytes())
    office.start()
    node.start(wait_ready=True)
    try:
        page, outside = desk_page(browser, office)
        page.select_option("#p-kind", "temporary")
        page.fill("#p-card", "0040856634")
        page.fill("#p-name", "访客丙")
        page.set_input_files("#p-photo-file", str(photo))
        page.locator("#p-photo-state", has_text=ZH["desk.photo.ready"]).wait_for()
        preview = page.locator("#p-photo-img")
        preview.wait_for(state="visible")
        assert page.evaluate("() => document.getElementById('p-photo-img').naturalWidth") == 480
        keep_screenshot(page.locator("#issue-form"), tmp_path, "desk.png")
        page.click("#issue-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/desk/passes/.+/print$"))
        pass_id = page.url.rsplit("/", 2)[-2]
        page.locator("#pp-photo").wait_for()
        assert page.evaluate("() => document.getElementById('pp-photo').naturalHeight") == 640
        picture = tmp_path / "qr.png"
        picture.write_bytes(page.locator("#qr svg").screenshot())
        code = read_qr(picture)
        assert code.startswith("GH1.")
        keep_screenshot(page, tmp_path, "desk-print.png")
        assert outside == []

        # the gate pulls the pass and its photo, and shows both when the code is scanned
        edge = f"http://127.0.0.1:{node.api_port}"

        def pulled() -> bool:
            r = httpx.get(f"{edge}/api/v1/passes", params={"card": "0040856634"},
                          headers={"Authorization": f"Bearer {guard}"})  # fmt: skip
            return any(p["photo_url"] for p in r.json()["items"])

        wait_for(pulled, 20, "the gate to pull the pass with its photo")
        desk_photo = page.request.get(office.url + str(page.get_attribute("#pp-photo", "src")))
        assert desk_photo.ok
        screen, cut_off = offline_page(browser, edge)
        browser_login(screen, edge, "li")
        scanner.write(code.encode() + b"\r\n")
        screen.wait_for_selector("#verdict.grant")
        assert screen.inner_text("#f-name") == "访客丙"
        img = screen.locator("#photo")
        img.wait_for(state="visible")
        assert img.get_attribute("src") == f"/api/v1/passes/{pass_id}/photo"
        assert img.evaluate("i => i.complete && i.naturalWidth") == 480
        at_gate = screen.request.get(edge + f"/api/v1/passes/{pass_id}/photo")
        assert at_gate.body() == desk_photo.body()  # the same bytes: checked by their SHA-256
        keep_screenshot(screen, tmp_path, "guard-grant-office-photo.png")
        assert cut_off == []
    finally:
        node.stop()
        office.stop()
        scanner.close()


# -- the duty log and the handover -----------------------------------------------------


def test_a_handover_is_made_and_signed_by_the_outgoing_then_the_incoming_officer(
    tmp_path: Path, node: Node, browser: Any
):
    with node.config.open("a") as f:
        f.write('[handover]\nitems = { "对讲机" = 4, "钥匙" = 12 }\n')
    node.stop()
    node.start(wait_ready=True)
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "wang", "control")
    add_user(node, "zhao", "control")
    # a key out: the handover names who holds it
    admin = cli(node.config, "user", "add", "陈主管", "--role", "admin").stdout.strip()
    key = {"id": "B5-1203", "label": "5栋1203 入户门", "kind": "unit"}
    assert http_call(base, "POST", "/api/v1/keys", admin, key)[0] == 201
    status, sig = upload(base, admin, signature_png())
    assert status == 201, sig
    status, loan = http_call(base, "POST", "/api/v1/key-loans", admin, {
        "key": "B5-1203", "borrower": "张三", "borrower_kind": "owner", "phone": "13800138000",
        "reason": "取快递", "signature": sig["signature"]})  # fmt: skip
    assert status == 201, loan
    page, outside = offline_page(browser, base)
    browser_login(page, base, "wang")
    page.click("text=" + ZH["duty.page"])
    page.wait_for_url(base + "/duty")
    page.select_option("#log-category", "patrol")
    page.fill("#log-text", "22:00 巡逻一圈，3号楼消防通道畅通")
    page.click("#log-form button")
    page.locator("#log li", has_text="巡逻一圈").wait_for()
    assert "[巡逻]" in page.inner_text("#log")

    page.locator("#items input").first.fill("3")  # a radio is missing
    page.fill("#handover-notes", "3号对讲机送修")
    page.click("#handover-form button")
    page.locator("#sign", has_text=ZH["handover.sign_out"]).wait_for()
    assert "对讲机: 4 → 3" in page.inner_text("#r-body")
    assert ZH["handover.keys_out"] in page.inner_text("#r-body")
    assert "B5-1203 5栋1203 入户门 ×1 · 张*" in page.inner_text("#r-body")
    page.click("#sign")
    page.locator("#sign", has_text=ZH["handover.sign_in"]).wait_for()
    assert page.locator("#sign").is_disabled()  # not by the same person

    # the next shift: the quick user switch is logging out and in
    page.click("text=" + ZH["logout"])
    page.wait_for_url(base + "/login")
    page.fill("input[name=username]", "zhao")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/control")
    page.goto(base + "/duty")
    page.locator("#sign:not([disabled])", has_text=ZH["handover.sign_in"]).click()
    page.locator("#sign", has_text=ZH["handover.signed"]).wait_for()
    assert "zhao" in page.inner_text("#r-facts") and "wang" in page.inner_text("#r-facts")
    keep_screenshot(page, tmp_path, "handover.png")
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")
    assert outside == []


def test_the_guard_s_screen_is_live_with_no_broker_at_all(tmp_path: Path, pty: Pty, browser: Any):
    readers = [{"id": "main-in", "gate": "main", "port": pty.path, "protocol": "rdm6300"}]
    node = node_for(tmp_path, readers).start(wait_ready=True)  # no [mqtt] in its config
    try:
        base = f"http://127.0.0.1:{node.api_port}"
        add_user(node, "li", "guard")
        page, outside = offline_page(browser, base)
        browser_login(page, base, "li")
        pty.write(frame("0099999999"))
        page.locator("#verdict.deny").wait_for()
        assert page.inner_text("#verdict-reason") == "此卡未登记"
        assert outside == []
    finally:
        node.stop()


def test_a_page_that_falls_behind_is_told_to_start_over_and_the_stop_ends_every_stream():
    import asyncio

    from edge import live

    async def run() -> tuple[bool, list[Any], bool]:
        feed = live.LiveFeed()
        loop = asyncio.get_running_loop()
        slow = feed.listen(loop, lambda topic: topic.startswith("gate/"))
        other = feed.listen(loop, lambda topic: topic.startswith("alarm/"))
        for i in range(live.QUEUE + 5):  # the writer's thread, a burst the page never reads
            feed.on_record("gate/main/decision", {"n": i})
        await asyncio.sleep(0.05)
        feed.close()
        await asyncio.sleep(0.05)
        drained = []
        while not other.queue.empty():
            drained.append(other.queue.get_nowait())
        feed.leave(slow)
        return slow.behind, drained, feed.counts["fell_behind"] == 1

    behind, other_got, counted = asyncio.run(run())
    assert behind and counted  # it reconnects and gets the whole state again
    assert other_got == [None]  # an alarm page heard no decisions, then the stop


@pytest.mark.parametrize(("width", "height"), [(1366, 768), (800, 1280)])
def test_the_guard_s_screen_fits_a_guard_room_pc_and_a_tablet_without_sideways_scrolling(
    node: Node, pty: Pty, browser: Any, width: int, height: int
):
    base = f"http://127.0.0.1:{node.api_port}"
    add_user(node, "li", "guard")
    page = browser.new_page(viewport={"width": width, "height": height})
    browser_login(page, base, "li")
    pty.write(frame("0099999999"))
    page.locator("#verdict.deny").wait_for()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
    # the verdict, the check field and its buttons are on the first screen, and big
    for target in ("#verdict-word", "#check-input", "#open", "#confiscate"):
        box = page.locator(target).bounding_box()
        assert box is not None and box["y"] + box["height"] <= height, target
    assert page.locator("#open").bounding_box()["height"] >= 44  # a finger's target


def test_a_clerk_of_a_company_with_several_estates_chooses_each_pass_s_and_slip_s_estate(
    tmp_path: Path, broker: Broker, pg_url: str, browser: Any
):
    office, _node, _scanner = office_and_scanning_gate(tmp_path, pg_url, broker)
    office.token("office", "site", "add", "east", "--name", "东区", "--gates", "main")
    office.token("office", "site", "add", "west", "--name", "西区", "--gates", "main")
    office.token("user", "add", "王主任", "--role", "admin")
    proc = passwd(office.config, "王主任", PASSWORD)
    assert proc.returncode == 0, proc.stderr
    office.start()
    try:
        page, outside = desk_page(browser, office)
        page.select_option("#p-site", "west")
        page.select_option("#p-kind", "resident")
        page.fill("#p-card", "0040856634")
        page.fill("#p-name", "西区住户")
        with page.expect_navigation():  # the desk reloads once the pass is made: a goto
            page.click("#issue-form button[type=submit]")  # before that would be aborted
        wait_for(lambda: pg_rows(pg_url, "SELECT site FROM passes") == [("west",)], 10,
                 "the pass at the office, for the west estate")  # fmt: skip

        page.goto(office.url + "/desk")
        page.select_option("#sl-site", "east")
        page.fill("#sl-unit", "3-1-502")
        page.fill("#sl-owner", "张三丰")
        page.fill("#sl-bearer", "张三丰")
        page.fill("#sl-items", "冰箱 1")
        page.click("#slip-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/desk/slips/FO-\d{4}-\d{5}/print$"))
        assert pg_rows(pg_url, "SELECT site FROM slips") == [("east",)]
        page.goto(office.url + "/desk")
        assert page.locator("#anomalies").count() == 0  # a clerk's desk: no anomalies
        assert page.locator("#audit").count() == 0
        assert outside == []
        page.context.close()

        # the admin's desk: the anomalies, and who did what
        page, outside = desk_page(browser, office, "王主任")
        trail = page.inner_text("#audit")
        assert "客服小王 · pass_issue" in trail and "客服小王 · slip_issue" in trail, trail
        assert page.locator("#anomalies").count() == 1 and outside == []
    finally:
        office.stop()
