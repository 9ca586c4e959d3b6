"""The estate at the office clerk's desk (/desk/estate): the units, a renovation permit and
a visitor announced in advance, as a clerk does them in a real browser (Debian's Chromium)
cut off from the outside world, against a real office on a real PostgreSQL."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge.console.text import ZH
from tests.helpers import Office, passwd, pg_rows
from tests.test_console import PASSWORD, desk_page, keep_screenshot, read_qr

OFFICE_TZ = ZoneInfo("Asia/Shanghai")  # the office's default time zone: the forms' times


def local(when: datetime) -> str:
    """As a datetime-local field holds it: the office's time, to the minute."""
    return when.astimezone(OFFICE_TZ).strftime("%Y-%m-%dT%H:%M")


def clerk_office(tmp_path: Path, pg_url: str) -> Office:
    """An office (not started) with a clerk who has a desk password."""
    office = Office(tmp_path, pg_url)
    office.token("user", "add", "客服小王", "--role", "clerk")
    proc = passwd(office.config, "客服小王", PASSWORD)
    assert proc.returncode == 0, proc.stderr
    return office


def moves(page: Any, permit_no: str) -> list[str]:
    """The changes the desk offers for a permit, as its buttons say."""
    row = page.locator(f"#permits tr[data-permit='{permit_no}']")
    return [b.get_attribute("data-move") for b in row.locator("button.permit-move").all()]


def test_a_clerk_keeps_the_units_issues_and_stops_a_permit_and_prints_a_visitor_s_code(
    tmp_path: Path, pg_url: str, browser: Any
):
    office = clerk_office(tmp_path, pg_url).start()
    try:
        page, outside = desk_page(browser, office)
        page.click("#nav-estate")  # from the desk's bar
        page.wait_for_url(office.url + "/desk/estate")
        assert ZH["estate.units.none"] in page.inner_text("#units-count")

        # the estate's units: pasted as they come, one wrongly added removed again
        page.fill("#u-units", "5-1203\n5-1204, 8-0801")
        page.click("#unit-form button[type=submit]")
        page.locator("#units li[data-unit='8-0801']").wait_for()
        listed = [li.get_attribute("data-unit") for li in page.locator("#units li").all()]
        assert listed == ["5-1203", "5-1204", "8-0801"]
        assert page.inner_text("#units-count") == ZH["estate.units.count"] + "3"
        page.once("dialog", lambda d: d.accept())
        page.locator("#units li[data-unit='5-1204'] button.remove-unit").click()
        page.locator("#units li[data-unit='5-1204']").wait_for(state="detached")
        assert pg_rows(pg_url, "SELECT unit FROM units ORDER BY unit") == [("5-1203",), ("8-0801",)]

        # a renovation permit: issued, listed in force with the changes it allows
        until = datetime.now(OFFICE_TZ) + timedelta(days=30)
        page.fill("#pm-no", "ZX-2026-001")
        page.fill("#pm-unit", "8-0801")
        page.fill("#pm-company", "华美装饰")
        page.fill("#pm-scope", "厨卫改造，不得改动承重墙")
        page.fill("#pm-until", local(until))
        page.click("#permit-form button[type=submit]")
        row = page.locator("#permits tr[data-permit='ZX-2026-001']")
        row.wait_for()
        assert ZH["estate.permit.status.active"] in row.locator(".state").inner_text()
        assert "华美装饰" in row.inner_text() and until.strftime("%Y-%m-%d") in row.inner_text()
        assert moves(page, "ZX-2026-001") == ["suspend", "close"]

        # the same number again: refused, in Chinese, under the permit's form
        page.fill("#pm-no", "ZX-2026-001")
        page.fill("#pm-unit", "8-0801")
        page.fill("#pm-company", "华美装饰")
        page.click("#permit-form button[type=submit]")
        refused = page.locator("#pm-notice.bad")
        refused.wait_for()
        assert refused.inner_text() == ZH["error.409"] + "：许可证 ZX-2026-001 已存在"

        # a stop-work order needs its cause: without one, refused in Chinese; with it,
        # the permit stops (停工整顿) and offers to resume or close
        page.reload()
        page.once("dialog", lambda d: d.accept(""))
        row.locator("button[data-move=suspend]").click()
        page.locator("#pm-notice.bad", has_text="停工整顿须写明原因").wait_for()
        page.once("dialog", lambda d: d.accept("私改承重墙"))
        row.locator("button[data-move=suspend]").click()
        page.locator("#permits tr[data-permit='ZX-2026-001']",
                     has_text="停工整顿：私改承重墙").wait_for()  # fmt: skip
        assert moves(page, "ZX-2026-001") == ["resume", "close"]
        assert pg_rows(pg_url, "SELECT status, status_reason, updated_by FROM permits") == [
            ("suspended", "私改承重墙", "客服小王")
        ]

        # a visitor for a unit not on the estate's list: refused, in Chinese
        page.fill("#v-unit", "9-9999")
        page.fill("#v-name", "张老师")
        page.fill("#v-until", local(datetime.now(OFFICE_TZ) + timedelta(hours=3)))
        page.click("#visit-form button[type=submit]")
        refused = page.locator("#v-notice.bad")
        refused.wait_for()
        assert refused.inner_text().startswith(ZH["error.422"] + "：")
        assert "9-9999" in refused.inner_text() and "不是小区" in refused.inner_text()
        assert pg_rows(pg_url, "SELECT count(*) FROM expected_visitors") == [(0,)]

        # announced for a unit on the list: straight to the code to print, and its QR
        # reads as the same 8 digits (what a gate's scanner types into the guard's field)
        page.fill("#v-unit", "5-1203")
        page.select_option("#v-category", "tutor")
        page.fill("#v-entries", "2")
        page.click("#visit-form button[type=submit]")
        page.wait_for_url(re.compile(r".*/desk/visitors/[0-9a-f]+/print$"))
        code = page.inner_text("#pv-code")
        assert re.fullmatch(r"\d{8}", code), code
        assert page.inner_text("#pv-unit") == "5-1203"
        assert page.inner_text("#pv-category") == ZH["visitor.category.tutor"]
        assert " — " in page.inner_text("#pv-window")
        picture = tmp_path / "qr.png"
        picture.write_bytes(page.locator("#qr svg").screenshot())
        assert read_qr(picture) == code
        pdf = page.pdf(format="A5")  # what the clerk's printer gets
        assert pdf.startswith(b"%PDF") and len(pdf) > 1000
        printed = page.url
        keep_screenshot(page, tmp_path, "desk-visitor-print.png")

        # listed with its code; printed again from the list; cancelled there (the host
        # called it off), after which its page has no QR code to hand out
        page.click("#back")
        page.wait_for_url(office.url + "/desk/estate")
        visit = page.locator(f"#visits tr[data-code='{code}']")
        assert ZH["estate.visit.status.active"] in visit.locator(".state").inner_text()
        keep_screenshot(page, tmp_path, "desk-estate.png")
        assert office.url + str(visit.locator("a.print-visit").get_attribute("href")) == printed
        page.once("dialog", lambda d: d.accept())
        visit.locator("button.cancel-visit").click()
        page.locator(f"#visits tr[data-code='{code}']",
                     has_text=ZH["estate.visit.status.cancelled"]).wait_for()  # fmt: skip
        assert visit.locator("button.cancel-visit").count() == 0
        page.goto(printed)
        assert ZH["print.visit.closed"] in page.inner_text("#pv-closed")
        assert page.locator("#qr").count() == 0

        # the works are complete: the closed permit offers no more changes
        page.goto(office.url + "/desk/estate")
        page.once("dialog", lambda d: d.accept(d.default_value))  # the usual reason, as offered
        row.locator("button[data-move=close]").click()
        page.locator("#permits tr[data-permit='ZX-2026-001']",
                     has_text=ZH["estate.permit.status.closed"]).wait_for()  # fmt: skip
        assert moves(page, "ZX-2026-001") == []
        assert pg_rows(pg_url, "SELECT status, status_reason FROM permits") == [
            ("closed", ZH["estate.permit.close.usual"])
        ]
        assert outside == []
    finally:
        office.stop()
