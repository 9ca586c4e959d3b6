"""One card, one answer; dates as a clerk means them; imports a clerk can use (issue 14).

Each test drives the real `gatehouse` executable (and, for the API, a running node) on its
own database, as a clerk or a guard would.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import cli, free_port, http_call, node_for, write_config

TZ = ZoneInfo("Asia/Shanghai")  # write_config's zone
CARD = "0040856634"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=free_port())


def add(config: Path, *args: str, check: bool = True) -> dict | str:
    out = cli(config, "--json", "pass", "add", *args, check=False)
    if not check:
        return out.stderr
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def granted(config: Path, card: str = CARD) -> bool:
    return cli(config, "check", card).returncode == 0


def test_a_card_holds_one_live_pass_of_a_kind_and_revoke_by_card_stops_it(config: Path):
    first = add(config, "--kind", "resident", "--card", CARD, "--name", "张三丰")
    # a second pass for the same card is refused, naming the one it has
    err = add(config, "--kind", "resident", "--card", CARD, "--name", "张三丰", check=False)
    assert err.startswith("gatehouse: card ****") and first["id"] in err, err
    assert len(err.splitlines()) == 1
    # by choice it replaces: the old one is revoked, saying by which
    second = add(config, "--kind", "resident", "--card", CARD, "--name", "张三丰", "--replace")
    db = sqlite3.connect(config.parent / "var" / "edge.db")
    old = db.execute("SELECT status, status_reason FROM passes WHERE id = ?", (first["id"],))
    assert old.fetchone() == ("revoked", f"replaced by {second['id']}")
    # another kind on the same card is its own answer (a resident who also works here)
    staff = add(config, "--kind", "staff", "--card", CARD, "--name", "张三丰")
    assert granted(config)
    # the guard knows the card only: every pass that lets it in is revoked
    out = cli(config, "--json", "pass", "revoke", "--card", CARD, "--reason", "卡丢失")
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout)["revoked"]) == sorted([second["id"], staff["id"]])
    assert not granted(config)
    again = cli(config, "pass", "revoke", "--card", CARD, check=False)
    assert again.returncode == 2 and "no live pass for card ****" in again.stderr
    neither = cli(config, "pass", "revoke", check=False)
    assert neither.returncode == 2 and "--card" in neither.stderr
    # each issue and revocation from the command line is in the audit log, whose chain holds
    trail = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    # (a replaced pass's revocation is in its status reason: "replaced by …")
    assert trail == ["pass:issue"] * 3 + ["pass:revoke"] * 2, trail
    assert json.loads(cli(config, "--json", "audit", "verify").stdout)["whole"]


def test_a_date_alone_ends_at_the_end_of_that_day_and_a_past_end_is_refused(config: Path):
    today = datetime.now(TZ).date()
    until = today + timedelta(days=30)
    p = add(config, "--kind", "resident", "--card", CARD, "--name", "李四",
            "--valid-until", until.isoformat())  # fmt: skip
    end = datetime.fromisoformat(p["valid_until"])
    assert end == datetime.combine(until + timedelta(days=1), datetime.min.time(), TZ), p
    # on the last day itself the card still opens (at noon of the day it names)
    noon = datetime.combine(until, datetime.min.time(), TZ) + timedelta(hours=12)
    at = cli(config, "--json", "check", CARD, "--at", noon.isoformat())
    assert at.returncode == 0, at.stdout
    # an end that has passed, as a date or a time, is refused naming it
    for past in ((today - timedelta(days=1)).isoformat(), "2026-01-01T08:00"):
        err = add(config, "--kind", "resident", "--card", "0040856635", "--name", "王五",
                  "--valid-until", past, check=False)  # fmt: skip
        assert err.startswith("gatehouse: valid_until: ") and "has passed" in err, err


def test_expired_passes_can_be_listed(config: Path):
    p = add(config, "--kind", "resident", "--card", CARD, "--name", "赵六")
    add(config, "--kind", "resident", "--card", "0040856635", "--name", "钱七")
    # time passes for one of them (a pass's end is only ever reached by waiting)
    db = sqlite3.connect(config.parent / "var" / "edge.db")
    with db:
        db.execute("UPDATE passes SET valid_until = 1.0e9 WHERE id = ?", (p["id"],))
    out = cli(config, "--json", "pass", "list", "--status", "expired")
    assert [x["id"] for x in json.loads(out.stdout)["items"]] == [p["id"]]
    active = cli(config, "--json", "pass", "list", "--status", "active")
    assert len(json.loads(active.stdout)["items"]) == 2  # still active: nobody revoked it


def _gbk_csv(path: Path, rows: list[list[str]]) -> Path:
    """A CSV as Excel on a Chinese Windows saves it: GBK, CRLF line ends."""
    with path.open("w", newline="", encoding="gbk") as f:
        w = csv.writer(f)
        w.writerow(["kind", "card", "name", "unit", "valid_from", "valid_until", "gates"])
        w.writerows(rows)
    return path


def test_a_gbk_csv_is_read_and_its_bad_rows_are_named_together(config: Path, tmp_path: Path):
    add(config, "--kind", "resident", "--card", "0000000009", "--name", "老住户")
    rows = [["resident", f"{i:010d}", f"业主{i}", "3-1-502", "", "", ""] for i in range(1, 9)]
    rows[1][6] = "west-gate"  # a gate this node does not have: the card would never open
    rows[3][5] = (date.today() - timedelta(days=2)).isoformat()  # ended already
    rows[5][1] = "0000000009"  # holds a resident pass already
    out = cli(config, "pass", "import", str(_gbk_csv(tmp_path / "gbk.csv", rows)), check=False)
    assert out.returncode == 2, out.stderr
    assert "codec" not in out.stderr, out.stderr
    assert "line 3: gate: 'west-gate' is not one of this node's gates" in out.stderr
    assert "line 5: valid_until: " in out.stderr and "has passed" in out.stderr
    assert "line 7: card '0000000009' already has resident pass" in out.stderr
    listed = json.loads(cli(config, "--json", "pass", "list").stdout)["items"]
    assert len(listed) == 1  # all or nothing
    for i in (1, 3, 5):
        rows[i] = ["resident", f"{i + 1:010d}", f"业主{i + 1}", "3-1-502", "", "", ""]
    out = cli(config, "--json", "pass", "import", str(_gbk_csv(tmp_path / "ok.csv", rows)))
    assert json.loads(out.stdout)["imported"] == 8
    db = sqlite3.connect(config.parent / "var" / "edge.db")
    names = {r[0] for r in db.execute("SELECT name FROM passes")}
    assert {"业主1", "业主8", "老住户"} <= names  # the Chinese names read as written
    assert granted(config, "0000000002")


def test_the_api_replaces_and_revokes_by_card(tmp_path: Path):
    node = node_for(tmp_path, [])
    admin = cli(node.config, "user", "add", "主管", "--role", "admin").stdout.strip()
    base = f"http://127.0.0.1:{node.api_port}"

    def call(method: str, path: str, body: object = None) -> tuple[int, dict]:
        return http_call(base, method, path, admin, body)

    node.start()
    try:
        body = {"kind": "resident", "card": CARD, "name": "孙八"}
        code, first = call("POST", "/api/v1/passes", body)
        assert code == 201, first
        code, refused = call("POST", "/api/v1/passes", body)
        assert code == 409 and first["id"] in refused["detail"], refused
        assert "已有" in refused.get("detail_zh", ""), refused
        code, second = call("POST", "/api/v1/passes", body | {"replace": True})
        assert code == 201, second
        code, out = call("POST", "/api/v1/passes/revoke", {"card": CARD, "reason": "卡丢失"})
        assert code == 200 and out["revoked"] == [second["id"]], out
        assert out["card"].startswith("****")
        code, out = call("POST", "/api/v1/passes/revoke", {"card": CARD})
        assert code == 404, out
        code, out = call("POST", "/api/v1/passes/revoke", {"card": "not a card"})
        assert code == 422, out
        code, expired = call("GET", "/api/v1/passes?status=expired")
        assert code == 200 and expired["items"] == []

        # confiscation by card takes the pass the gate would grant, not the newest one
        other = "0040856635"
        code, grants = call("POST", "/api/v1/passes", body | {"card": other})
        assert code == 201, grants
        later = (datetime.now(TZ) + timedelta(days=1)).isoformat()
        visit = {"kind": "temporary", "card": other, "name": "孙八", "valid_from": later}
        code, newer = call("POST", "/api/v1/passes", visit)
        assert code == 201, newer
        code, taken = call("POST", "/api/v1/confiscations",
                           {"card": other, "reason": "冒用", "gate": "main"})  # fmt: skip
        assert code == 201 and taken["pass_id"] == grants["id"], taken
    finally:
        node.stop()


def test_the_office_holds_a_card_to_one_live_pass_of_a_kind_too(tmp_path: Path, pg_url: str):
    """A clerk at the office meets the same rule as at the gate: a second live pass of a
    kind for a card is refused naming the first, or replaces it; the gates hear of both."""
    from tests.helpers import Office, pg_rows
    from tests.test_sync_recovery import running

    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    with running(office):
        body = {"kind": "resident", "card": CARD, "name": "周敏", "unit": "5-1-0801"}
        code, first = office.call("POST", "/api/v1/passes", clerk, body)
        assert code == 201, first
        code, refused = office.call("POST", "/api/v1/passes", clerk, body)
        assert code == 409 and first["id"] in refused["detail"], refused
        code, second = office.call("POST", "/api/v1/passes", clerk, body | {"replace": True})
        assert code == 201, second
    rows = dict(pg_rows(pg_url, "SELECT id, status FROM passes"))
    assert rows == {first["id"]: "revoked", second["id"]: "active"}
    changes = pg_rows(pg_url, "SELECT entity_id, op FROM change_log ORDER BY change_id")
    assert (first["id"], "revoke") in [tuple(c) for c in changes], changes
