"""Sites and gate scopes at the office (issue 12): each gate holds only its own estate's
cards; node tokens are listed, revoked and rotated; office roles are enforced and every
office write is in the audit log. A real office on PostgreSQL and real gates."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

from tests.helpers import Broker, Node, Office, cli, node_for, pg_rows, wait_for
from tests.helpers import add_sync as _add_sync
from tests.security.test_office_push import line, push
from tests.test_desk_e2e import call as gate_call
from tests.test_sync import SLIP
from tests.test_sync_recovery import anomalies, edge_db, running


def gate_at(tmp_path: Path, broker: Broker, office: Office, name: str, *node_add: str) -> Node:
    """A gate (its [[gates]]: main, side) registered as ``office node add name *node_add``."""
    workdir = tmp_path / name
    workdir.mkdir()
    node = node_for(workdir, [{"id": "net", "gate": "main", "transport": "mqtt"}], broker.port)
    node.config.write_text(node.config.read_text().replace('id = "gate-test"', f'id = "{name}"'))
    _add_sync(node, office, office.token("office", "node", "add", name, *node_add))
    return node


def held(gate: Node) -> tuple[set[str], set[str]]:
    """The office's passes (by holder) and slips (by number) the gate holds."""
    with edge_db(gate) as db:
        passes = {r[0] for r in db.execute("SELECT name FROM passes WHERE origin = 'office'")}
        slips = {r[0] for r in db.execute("SELECT number FROM goods_slips WHERE origin = 'office'")}
    return passes, slips


def caught_up(gate: Node, pg_url: str) -> bool:
    """The gate's pull cursor is at the office's newest change, in the scope it holds."""
    (top,) = pg_rows(pg_url, "SELECT coalesce(max(change_id), 0) FROM change_log")[0]
    with edge_db(gate) as db:
        meta = dict(db.execute("SELECT key, value FROM node_meta"))
    return meta.get("pull_cursor") == str(top) and bool(meta.get("pull_scope"))


def polling(office: Office, admin: str, node: str) -> bool:
    """The node's long poll is open at the office (the admin's node list says so)."""
    status, nodes = office.call("GET", "/api/v1/nodes", admin)
    return status == 200 and any(n["node"] == node and n["polling"] for n in nodes["items"])


def token_of(gate: Node) -> str:
    line = next(ln for ln in gate.config.read_text().splitlines() if ln.startswith("token = "))
    return str(json.loads(line.split("=", 1)[1]))


def upload(office: Office, token: str, picture: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(office.url + "/api/v1/photos", data=picture, method="POST",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "image/jpeg"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, json.loads(r.read())


def fetch(office: Office, path: str, token: str) -> int:
    req = urllib.request.Request(office.url + path, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return e.code


def on_disk(gate: Node) -> bytes:
    """Every byte of the gate's database, its write-ahead log included."""
    var = gate.config.parent / "var"
    return b"".join(p.read_bytes() for p in sorted(var.glob("edge.db*")))


def test_a_gate_holds_only_its_own_estate_s_cards_and_cannot_state_facts_about_another(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office = Office(tmp_path, pg_url)
    office.token("office", "site", "add", "east", "--name", "东区", "--gates", "main,side")
    office.token("office", "site", "add", "west", "--name", "西区", "--gates", "main,side")
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    admin = office.token("user", "add", "管理员", "--role", "admin")
    east = gate_at(tmp_path, broker, office, "gate-east", "--site", "east", "--gates", "main")
    west = gate_at(tmp_path, broker, office, "gate-west", "--site", "west")
    west_token = office.token("office", "node", "rotate", "gate-west")  # the one it now uses
    west.config.write_text(
        "\n".join(
            f'token = "{west_token}"' if ln.startswith("token = ") else ln
            for ln in west.config.read_text().splitlines()
        )
        + "\n"
    )

    key = office.token("office", "key")
    with east.config.open("a") as f:  # trusts the office's printed codes
        f.write(f'[qr]\noffice_public_keys = ["{key}"]\n')
    guard = cli(east.config, "user", "add", "门卫老张", "--role", "guard").stdout.strip()

    def issue(name: str, card: str, site: str, gates: list[str] | None = None) -> int:
        body = {"kind": "resident", "card": card, "name": name, "site": site}
        status, answer = office.call("POST", "/api/v1/passes", clerk,
                              body | ({"gates": gates} if gates else {}))  # fmt: skip
        assert status == 201, answer
        return status

    with running(office, east, west):
        # no site named, with several: refused, naming them
        nameless = {"kind": "resident", "card": "0000000009", "name": "无名"}
        status, answer = office.call("POST", "/api/v1/passes", clerk, nameless)
        assert status == 422 and "east" in answer["detail"] and answer["detail_zh"]
        assert "default" not in answer["detail"]  # an empty office's default site is gone
        status, answer = office.call("POST", "/api/v1/passes", clerk, {
            "kind": "resident", "card": "0000000008", "name": "错门", "site": "east",
            "gates": ["gate-9"]})  # fmt: skip
        assert status == 422 and "gate-9" in answer["detail"]

        issue("东区正门甲", "0000001001", "east", ["main"])
        issue("东区侧门乙", "0000001002", "east", ["side"])
        issue("东区全门丙", "0000001003", "east")
        issue("西区住户丁", "0000002001", "west")
        for site in ("east", "west"):
            status, slip = office.call("POST", "/api/v1/slips", clerk, SLIP | {"site": site})
            assert status == 201, slip
        east_slip, west_slip = (r[0] for r in pg_rows(
            pg_url, "SELECT number FROM slips ORDER BY site"))  # fmt: skip

        wait_for(lambda: caught_up(east, pg_url) and caught_up(west, pg_url), 30,
                 "both gates to pull everything of their scope")  # fmt: skip
        assert held(east) == ({"东区正门甲", "东区全门丙"}, {east_slip})
        assert held(west) == ({"西区住户丁"}, {west_slip})
        assert east.ready()[1]["sync"]["site"] == "east"  # readiness names its estate
        # a change for the other estate only: the east gate's cursor moves past it, no more
        issue("西区住户戊", "0000002002", "west")
        wait_for(lambda: caught_up(east, pg_url) and caught_up(west, pg_url), 30,
                 "the east gate to move past a west change")  # fmt: skip
        assert held(east)[0] == {"东区正门甲", "东区全门丙"}
        # a printed code of the other estate is refused at this gate, its own is granted
        for site, card in (("west", "0000002003"), ("east", "0000001004")):
            status, printed = office.call("POST", "/api/v1/passes", clerk, {
                "kind": "temporary", "card": card, "name": "访客", "site": site})  # fmt: skip
            assert status == 201, printed
            status, said = gate_call(east, "POST", "/api/v1/check", guard, {"qr": printed["qr"]})
            if site == "west":
                assert status == 422 and "estate west" in said["detail"], said
                assert said["detail_zh"]
            else:
                assert status == 200 and said["decision"] == "grant", said
        # not there in any form: a stolen east gate PC carries no west card
        assert "西区住户丁".encode() not in on_disk(east)
        assert "东区".encode() not in on_disk(west)

        # its gates change: it drops what it may no longer hold and pulls what it now may
        office.token("office", "node", "set", "gate-east", "--gates", "side")
        wait_for(lambda: held(east)[0] == {"东区侧门乙", "东区全门丙", "访客"}, 30,
                 "gate-east to hold the side gate's passes only")  # fmt: skip
        assert held(east)[1] == {east_slip}

        # a photo is fetched only by a gate whose passes name it
        shot = io.BytesIO()
        Image.new("RGB", (200, 240), (180, 140, 120)).save(shot, "JPEG")
        status, uploaded = upload(office, clerk, shot.getvalue())
        assert status == 201, uploaded
        status, _ = office.call("POST", "/api/v1/passes", clerk, {
            "kind": "resident", "card": "0000002009", "name": "西区住户己", "site": "west",
            "photo": uploaded["photo"]})  # fmt: skip
        path = f"/sync/v1/photos/{uploaded['photo']}"
        assert status == 201 and fetch(office, path, west_token) == 200
        assert fetch(office, path, token_of(east)) == 404

        # a west node stating facts about an east slip or a gate its site has not
        facts = [
            line(1, "slip_released", json.dumps({"number": east_slip, "closed_at": 1.8e9,
                                                 "closed_by": "x", "gate": "main"})),
            line(2, "access_event", json.dumps({"ts": 1.8e9, "decision": "grant",
                                                "gate": "ghost", "pass_id": "p"})),
        ]  # fmt: skip
        status, answer = push(office, west_token, "".join(facts), epoch=424242)
        assert status == 200 and answer["acked_through"] == 2  # kept as sent, not acted on
        scoped = anomalies(pg_url, "out_of_scope")
        assert any(east_slip in d for d in scoped) and any("ghost" in d for d in scoped)
        assert pg_rows(pg_url, "SELECT status FROM slips WHERE number = %s", east_slip) == [
            ("issued",)
        ]

        # roles: the anomalies, the nodes and the audit log are the admin's
        for path in ("/api/v1/anomalies", "/api/v1/nodes", "/api/v1/audit"):
            assert office.call("GET", path, clerk)[0] == 403
            assert office.call("GET", path, admin)[0] == 200
        status, trail = office.call("GET", "/api/v1/audit?limit=1000", admin)
        actions = [(a["who"], a["action"]) for a in trail["items"]]
        assert actions.count(("客服小王", "pass_issue")) == 8
        assert ("客服小王", "slip_issue") in actions
        assert {a for _w, a in actions} >= {"site_add", "node_add", "node_rotate", "node_gates"}
        assert not any("0000001001" in json.dumps(a) for a in trail["items"])  # cards masked

        # a revoked node token: 401 from its next request, push and pull alike
        office.token("office", "node", "revoke", "gate-west")
        assert push(office, west_token, "", epoch=424242)[0] == 401
        assert office.call("GET", "/sync/v1/pull?since=0", west_token)[0] == 401
        listed = json.loads(cli(office.config, "--json", "office", "node", "list").stdout)
        assert [(n["node_id"], n["revoked_at"] is not None) for n in listed["items"]] == [
            ("gate-east", False),
            ("gate-west", True),
        ]

        # a revoked clerk: 401 at once; the same name comes back with a new token
        office.token("user", "revoke", "客服小王")
        assert office.call("GET", "/api/v1/sites", clerk)[0] == 401
        again = office.token("user", "add", "客服小王", "--role", "clerk")
        assert office.call("GET", "/api/v1/sites", again)[0] == 200
        # a leaked token: a new one under the same name, the old one refused at once
        rotated = office.token("user", "rotate", "客服小王")
        assert office.call("GET", "/api/v1/sites", again)[0] == 401
        assert office.call("GET", "/api/v1/sites", rotated)[0] == 200


def test_a_rotated_node_token_replaces_the_old_one_at_once(tmp_path: Path, pg_url: str):
    office = Office(tmp_path, pg_url)
    old = office.token("office", "node", "add", "gate-x")
    new = office.token("office", "node", "rotate", "gate-x")
    admin = office.token("user", "add", "管理员", "--role", "admin")
    with running(office):
        assert office.call("GET", "/sync/v1/pull?since=0", old)[0] == 401
        status, body = office.call("GET", "/sync/v1/pull?since=0", new)
        assert status == 200 and body["changes"] == []
        # a poll waiting when the token is replaced is answered 401, not at its end (200)
        answers: list[int] = []
        poll = threading.Thread(target=lambda: answers.append(
            office.call("GET", "/sync/v1/pull?since=0&wait=25", new)[0]))  # fmt: skip
        poll.start()
        wait_for(lambda: polling(office, admin, "gate-x"), 10, "the poll to wait")
        office.token("office", "node", "rotate", "gate-x")
        poll.join(30)
        assert answers == [401]
    bad = cli(office.config, "office", "node", "rotate", "gate-nobody", check=False)
    assert bad.returncode == 2 and "gate-nobody" in bad.stderr and "Traceback" not in bad.stderr
