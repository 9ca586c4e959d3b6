"""An ID number matches across an estate (issue 14): the office derives one key per site
and hands it to the site's gates, so a number hashed at any gate of the estate, or at the
office for a pass of that estate, is the same hash; another estate's is not. A gate's own
earlier key is kept, so what it hashed before still matches. Real processes: an office on
PostgreSQL, three gates."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

from tests.helpers import Broker, Node, Office, add_sync, cli, http_call, node_for, wait_for
from tests.test_sync_recovery import running

NUMBER = "11010519491231002X"  # a well-formed resident ID (the manuals' example format)


def gate(tmp_path: Path, broker: Broker, name: str) -> tuple[Node, str, str]:
    workdir = tmp_path / name
    workdir.mkdir()
    node = node_for(workdir, [{"id": "net", "gate": "main", "transport": "mqtt"}], broker.port)
    node.config.write_text(node.config.read_text().replace('id = "gate-test"', f'id = "{name}"'))
    guard = cli(node.config, "user", "add", "门卫老张", "--role", "guard").stdout.strip()
    return node, guard, f"http://127.0.0.1:{node.api_port}"


def visit(url: str, guard: str, name: str) -> dict[str, Any]:
    status, v = http_call(url, "POST", "/api/v1/visitors", guard,
                          {"name": name, "host_unit": "5-1203", "id_number": NUMBER})  # fmt: skip
    assert status == 201, v
    return v


def hashes(node: Node) -> set[str]:
    import sqlite3

    with sqlite3.connect(node.config.parent / "var" / "edge.db") as db:
        rows = db.execute("SELECT id_hash FROM visitors UNION SELECT id_hash FROM passes")
        return {r[0] for r in rows if r[0]}


def retired(node: Node) -> list[Path]:
    return sorted((node.config.parent / "var" / "keys").glob("id_hash.retired-*.key"))


def test_an_id_number_matches_across_an_estate_and_not_beyond(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office = Office(tmp_path, pg_url)
    office.token("office", "site", "add", "east", "--name", "东区", "--gates", "main")
    office.token("office", "site", "add", "west", "--name", "西区", "--gates", "main")
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    east_a, guard_a, url_a = gate(tmp_path, broker, "east-a")
    east_b, guard_b, url_b = gate(tmp_path, broker, "east-b")
    west, guard_w, url_w = gate(tmp_path, broker, "west-a")

    # before it knew its office: gate A hashed a visitor's number with its own key
    east_a.start()
    try:
        visit(url_a, guard_a, "早到的访客")
    finally:
        east_a.stop()
    (before,) = hashes(east_a)

    for node, site in ((east_a, "east"), (east_b, "east"), (west, "west")):
        add_sync(node, office, office.token("office", "node", "add", node.config.parent.name,
                                            "--site", site))  # fmt: skip
    with running(office, east_a, east_b, west):
        wait_for(lambda: all(retired(n) for n in (east_a, east_b, west)), 30,
                 "each gate to take its estate's key")  # fmt: skip
        for node in (east_a, east_b, west):
            (kept,) = retired(node)  # its own first key, kept for what it hashed
            assert stat.S_IMODE(kept.stat().st_mode) == 0o600
            key = node.config.parent / "var" / "keys" / "id_hash.key"
            assert stat.S_IMODE(key.stat().st_mode) == 0o600

        status, issued = office.call("POST", "/api/v1/passes", clerk, {
            "kind": "worker", "card": "0000003001", "name": "工人甲", "unit": "5-1203",
            "id_number": NUMBER, "site": "east"})  # fmt: skip
        assert status == 201, issued
        wait_for(lambda: len(hashes(east_a)) == 2, 30, "gate A to pull the office's pass")
        visit(url_a, guard_a, "访客甲")
        visit(url_b, guard_b, "访客乙")
        visit(url_w, guard_w, "访客丙")

        # one estate, one hash: gate A's new visitor, gate B's, the office's pass
        (east_hash,) = hashes(east_b)
        assert hashes(east_a) == {before, east_hash}
        (west_hash,) = hashes(west)
        assert west_hash not in (east_hash, before)

        # the guard asks by number: the office's pass and both visits, the early one too
        status, found = http_call(url_a, "POST", "/api/v1/id-lookup", guard_a,
                                  {"id_number": NUMBER.lower()})  # fmt: skip
        assert status == 200, found
        assert [p["id"] for p in found["passes"]] == [issued["id"]]
        assert sorted(v["name"] for v in found["visits"]) == ["早****", "访**"]
        assert all(v["id_last4"] == "002X" for v in found["visits"])
        status, none = http_call(url_a, "POST", "/api/v1/id-lookup", guard_a,
                                 {"id_number": "110105194912310038"})  # fmt: skip
        assert status == 200 and none == {"passes": [], "visits": []}
        status, bad = http_call(url_a, "POST", "/api/v1/id-lookup", guard_a, {"id_number": "12-"})
        assert status == 422 and "id_number" in bad["detail"] and bad["detail_zh"]

    # the number is in no log and no file of the gate; its lookups are in the audit log
    var = east_a.config.parent
    for f in [*var.rglob("*.log"), *var.rglob("edge.db*")]:
        assert NUMBER.encode() not in f.read_bytes(), f
    trail = cli(east_a.config, "--json", "audit", "verify")
    assert trail.returncode == 0, trail.stderr
