"""Office sync with real processes: three gates, one office on PostgreSQL, faults caused
for real (kill -9 of a gate mid-push, of the office mid-drain, the office away for a
while), then a checker: per node, every outbox row arrived once, contiguously."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sqlite3
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg2
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers import Broker, Node, Office, add_sync, cli, node_for, wait_for

GATES = ("gate-a", "gate-b", "gate-c")


def make_gate(tmp_path: Path, broker: Broker, office: Office, name: str) -> Node:
    workdir = tmp_path / name
    workdir.mkdir()
    node = node_for(workdir, [{"id": "net", "gate": "main", "transport": "mqtt"}], broker.port)
    node.config.write_text(node.config.read_text().replace('id = "gate-test"', f'id = "{name}"'))
    add_sync(node, office, office.token("office", "node", "add", name))
    return node


def swipes(broker: Broker, name: str, first: int, n: int) -> None:
    """n swipes of distinct cards (no debounce) on the gate's MQTT reader."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{name}-{first}")
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    infos = [
        c.publish(f"gatehouse/{name}/reader/net/swipe", json.dumps({"card": f"{i:010d}"}), qos=1)
        for i in range(first, first + n)
    ]
    for info in infos:
        info.wait_for_publish(30)
    c.loop_stop()
    c.disconnect()


def outbox(node: Node) -> dict[int, list[int]]:
    # closed at once: a connection the collector closes later, after a restore replaced the
    # file, would write its stale pages into the restored database
    with contextlib.closing(sqlite3.connect(node.config.parent / "var" / "edge.db")) as db:
        out: dict[int, list[int]] = {}
        for epoch, seq in db.execute("SELECT epoch, seq FROM outbox ORDER BY seq"):
            out.setdefault(epoch, []).append(seq)
        return out


def backlog(node: Node) -> int:
    with contextlib.closing(sqlite3.connect(node.config.parent / "var" / "edge.db")) as db:
        return int(db.execute("SELECT count(*) FROM outbox WHERE acked_at IS NULL").fetchone()[0])


def at_office(pg_url: str, node_id: str) -> dict[int, list[int]]:
    conn = psycopg2.connect(pg_url.removeprefix("postgresql://").replace("/", "dbname=", 1))
    out: dict[int, list[int]] = {}
    with conn, conn.cursor() as cur:
        cur.execute(
            "SELECT epoch, seq FROM edge_events WHERE node_id = %s ORDER BY seq", (node_id,)
        )
        for epoch, seq in cur.fetchall():
            out.setdefault(epoch, []).append(seq)
    conn.close()
    return out


def test_every_record_reaches_the_office_once_through_kills_and_outages(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office = Office(tmp_path, pg_url)
    office.token("office", "node", "add", "warm-up")  # migrates the scratch database
    gates = [make_gate(tmp_path, broker, office, g) for g in GATES]
    office.start()
    for g in gates:
        g.start()
    try:
        for name in GATES:
            swipes(broker, name, 1, 50)
        wait_for(lambda: all(backlog(g) == 0 and outbox(g) for g in gates), 30, "first sync")

        office.stop()  # the office away for a while, thousands recorded meanwhile
        for name in GATES:
            swipes(broker, name, 1000, 1500)
        wait_for(lambda: all(sum(map(len, outbox(g).values())) >= 1550 for g in gates), 60,
                 "the gates to record the burst offline")  # fmt: skip

        office.start()
        # kill -9 a gate in the middle of its drain
        wait_for(lambda: 50 < sum(map(len, at_office(pg_url, "gate-a").values())) < 1550, 60,
                 "gate-a to be mid-push")  # fmt: skip
        gates[0].kill()
        # kill -9 the office while the others are draining (some batches committed, unanswered)
        office.stop(signal.SIGKILL)
        office.start()
        gates[0].start()
        wait_for(lambda: all(backlog(g) == 0 for g in gates), 120, "every backlog to drain")
    finally:
        for g in gates:
            g.stop()
        office.stop()

    for name, g in zip(GATES, gates, strict=True):
        edge, remote = outbox(g), at_office(pg_url, name)
        assert remote == edge, f"{name}: the office's sequences differ from the gate's"
        for seqs in remote.values():
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"{name}: gap"
    status, body = office_call_nodes(office)
    assert status == 200 and body["anomalies"] == 0


def office_call_nodes(office: Office) -> tuple[int, dict]:
    admin = office.token("user", "add", f"admin-{time.time_ns()}", "--role", "admin")
    office.start()
    try:
        return office.call("GET", "/api/v1/nodes", admin)
    finally:
        office.stop()


def test_a_pass_issued_at_the_office_works_at_every_gate_and_its_revocation_follows(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    gates = [make_gate(tmp_path, broker, office, g) for g in GATES[:2]]
    office.start()
    for g in gates:
        g.start()
    try:
        visitor = {"kind": "temporary", "card": "0040856634", "name": "访客甲"}
        status, p = office.call("POST", "/api/v1/passes", clerk, visitor)
        assert status == 201

        def decided(reason: str) -> bool:
            return all(
                json.loads(cli(g.config, "--json", "check", "01026F6C3A").stdout)["reason"]
                == reason
                for g in gates
            )

        wait_for(lambda: decided("ok"), 10, "the pass at every gate")
        office.call("POST", f"/api/v1/passes/{p['id']}/revoke", clerk, {"reason": "lost"})
        wait_for(lambda: decided("revoked"), 10, "the revocation at every gate")
        assert office.call("POST", "/api/v1/passes", "nope", {})[0] == 401
    finally:
        for g in gates:
            g.stop()
        office.stop()


def test_concurrent_writers_never_let_a_puller_skip_a_change(tmp_path: Path, pg_url: str):
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "clerk", "--role", "clerk")
    node = office.token("office", "node", "add", "reader")
    office.start()
    try:
        seen: list[int] = []
        done = threading.Event()

        def puller() -> None:
            cursor, scope = 0, ""
            while not done.is_set() or cursor < 200:
                _, body = office.call(
                    "GET", f"/sync/v1/pull?since={cursor}&limit=7&scope={scope}", node
                )
                scope = body.get("rescope", scope)  # the first answer names the node's scope
                seen.extend(c["change_id"] for c in body["changes"])
                cursor = body["next"]

        def writer(k: int) -> None:
            for i in range(20):
                card = f"{k * 100 + i + 1:010d}"
                office.call(
                    "POST", "/api/v1/passes", clerk, {"kind": "resident", "card": card, "name": "x"}
                )

        pull = threading.Thread(target=puller)
        pull.start()
        writers = [threading.Thread(target=writer, args=(k,)) for k in range(10)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        done.set()
        pull.join(60)
        assert seen == list(range(1, 201))  # every change, once, in order
    finally:
        office.stop()


def test_a_qr_pass_issued_while_a_gate_is_cut_off_is_granted_by_signature(
    tmp_path: Path, broker: Broker, listener, pg_url: str
):
    from tests.helpers import Pty

    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    key = office.token("office", "key")
    scanner = Pty()
    node = node_for(tmp_path, [{"id": "scan", "gate": "main", "port": scanner.path,
                                "protocol": "line"}], broker.port)  # fmt: skip
    token = office.token("office", "node", "add", "gate-test")
    with node.config.open("a") as f:  # the office address is wrong: the gate is cut off
        f.write(f'[qr]\noffice_public_keys = ["{key}"]\n'
                f'[sync]\noffice_url = "http://127.0.0.1:9"\ntoken = "{token}"\n')  # fmt: skip
    guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    office.start()
    node.start()
    try:
        visitor = {"kind": "temporary", "card": "0040856634", "name": "访客乙"}
        status, p = office.call("POST", "/api/v1/passes", clerk, visitor)
        assert status == 201 and p["qr"].startswith("GH1.")
        scanner.write(p["qr"].encode() + b"\r\n")
        decision = listener.next("/gate/main/decision")
        assert (decision["decision"], decision["reason"]) == ("grant", "ok")
        assert decision["pass_id"] == p["id"] and decision["holder"] == "访**"
        forged = p["qr"][:-6] + ("AAAAAA" if not p["qr"].endswith("AAAAAA") else "BBBBBB")
        scanner.write(forged.encode() + b"\r\n")
        assert listener.next("/gate/main/decision")["reason"] == "invalid_qr"
        from tests.test_desk_e2e import call

        _, got = call(node, "POST", "/api/v1/check", guard, {"qr": p["qr"]})
        # the code carries only the masked name (finding 15): the whole one comes with a sync
        assert got["decision"] == "grant" and got["pass"]["name"] == "访**"

        # once the gate can reach the office, the revocation is pulled and wins over the QR
        office.call("POST", f"/api/v1/passes/{p['id']}/revoke", clerk, {"reason": "lost"})
        node.stop()
        node.config.write_text(node.config.read_text().replace("http://127.0.0.1:9", office.url))
        node.start()
        wait_for(lambda: call(node, "POST", "/api/v1/check", guard, {"qr": p["qr"]})[1]["reason"]
                 == "revoked", 15, "the revocation to win over the signature")  # fmt: skip
    finally:
        node.stop()
        office.stop()
        scanner.close()


def test_restore_drill_edge_starts_a_new_epoch_and_a_restored_office_is_refilled(
    tmp_path: Path, broker: Broker, pg_url: str
):
    office = Office(tmp_path, pg_url)
    office.token("office", "node", "add", "warm-up")
    gate = make_gate(tmp_path, broker, office, "gate-a")
    office.start()
    gate.start()
    edge_backup, office_backup = tmp_path / "edge.bak", tmp_path / "office.dump"
    try:
        swipes(broker, "gate-a", 1, 100)
        wait_for(lambda: backlog(gate) == 0 and sum(map(len, outbox(gate).values())) == 100, 30,
                 "the first 100 at the office")  # fmt: skip
        assert cli(gate.config, "backup", str(edge_backup)).returncode == 0  # online
        office.token("backup", str(office_backup))
        swipes(broker, "gate-a", 200, 50)  # recorded after both backups
        wait_for(lambda: backlog(gate) == 0 and sum(map(len, outbox(gate).values())) == 150, 30,
                 "the next 50 at the office")  # fmt: skip
        old_epoch = next(iter(outbox(gate)))

        # the office is restored from its backup: it has lost 50 records the gate sent
        office.stop()
        office.token("restore", str(office_backup))
        assert sum(map(len, at_office(pg_url, "gate-a").values())) == 100
        office.start()
        wait_for(lambda: sum(map(len, at_office(pg_url, "gate-a").values())) == 150, 60,
                 "the gate to send the lost records again")  # fmt: skip

        # the gate is restored from its backup: a new epoch, no sequence number reused
        gate.stop()
        out = cli(gate.config, "restore", str(edge_backup))
        assert out.returncode == 0 and "new epoch" in out.stdout
        gate.start()
        swipes(broker, "gate-a", 400, 30)
        wait_for(lambda: backlog(gate) == 0 and len(outbox(gate)) == 2, 30, "the new epoch synced")
    finally:
        gate.stop()
        office.stop()
    remote, edge = at_office(pg_url, "gate-a"), outbox(gate)
    new_epoch = next(e for e in edge if e != old_epoch)
    assert len(remote[old_epoch]) == 150  # all that the lost database ever sent, kept
    assert remote[new_epoch] == edge[new_epoch] and edge[new_epoch][0] == 101
    assert len(edge[new_epoch]) == 30


SLIP = {"unit": "3-1-502", "owner": "张三丰", "bearer": "张三丰", "authorisation": "in_person",
        "items": [{"name": "冰箱", "qty": 1}]}  # fmt: skip


def test_office_slips_reach_the_gate_and_a_release_after_cancellation_is_an_exception(
    tmp_path: Path, broker: Broker, pg_url: str
):
    from tests.test_desk_e2e import call

    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    admin = office.token("user", "add", "管理员", "--role", "admin")  # reads the anomalies
    key = office.token("office", "key")
    node = node_for(tmp_path, [], broker.port)
    token = office.token("office", "node", "add", "gate-test")
    with node.config.open("a") as f:
        f.write(f'[qr]\noffice_public_keys = ["{key}"]\n')
    add_sync(node, office, token)
    guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    office.start()
    node.start()
    try:
        status, slip = office.call("POST", "/api/v1/slips", clerk, SLIP)
        assert status == 201 and slip["number"].startswith("FO-") and slip["qr"].startswith("GH1.")
        number = slip["number"]
        wait_for(lambda: call(node, "GET", f"/api/v1/slips/{number}", guard)[0] == 200, 10,
                 "the slip at the gate")  # fmt: skip
        assert call(node, "POST", f"/api/v1/slips/{number}/release", guard, {})[0] == 200

        def office_slip(n: str) -> str:
            conn = psycopg2.connect(dbname=pg_url.rsplit("/", 1)[1])
            with conn, conn.cursor() as cur:
                cur.execute("SELECT status FROM slips WHERE number = %s", (n,))
                found = cur.fetchone()[0]
            conn.close()
            return found

        wait_for(lambda: office_slip(number) == "released", 15, "the release at the office")

        # cut off: the office cancels a slip the gate never saw; the mover shows its QR
        node.stop()
        text = node.config.read_text()
        node.config.write_text(text.replace(office.url, "http://127.0.0.1:9"))
        node.start()
        _, second = office.call("POST", "/api/v1/slips", clerk, SLIP)
        office.call("POST", f"/api/v1/slips/{second['number']}/cancel", clerk,
                    {"reason": "业主改期"})  # fmt: skip
        got = call(node, "POST", f"/api/v1/slips/{second['number']}/release", guard,
                   {"qr": second["qr"]})  # fmt: skip
        assert got[0] == 200 and got[1]["status"] == "released"  # the signature vouched for it
        bad = call(node, "POST", f"/api/v1/slips/{second['number']}/release", guard,
                   {"qr": slip["qr"]})  # fmt: skip
        assert bad[0] == 422 and "not" in bad[1]["detail"]
        node.stop()
        node.config.write_text(text)
        node.start()
        wait_for(lambda: any(a["kind"] == "released_after_cancellation"
                             for a in office.call("GET", "/api/v1/anomalies", admin)[1]["items"]),
                 15, "the exception at the office")  # fmt: skip
        assert office_slip(second["number"]) == "cancelled"  # both facts kept
    finally:
        node.stop()
        office.stop()


def test_the_office_s_monthly_report_counts_every_gate_s_month(
    tmp_path: Path, broker: Broker, pg_url: str
):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from tests.test_desk_e2e import call

    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    node = make_gate(tmp_path, broker, office, "gate-a")
    op = cli(node.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    office.start()
    node.start()
    try:
        swipes(broker, "gate-a", 1, 5)
        call(node, "POST", "/api/v1/alarms", op, {"type": "first_aid", "floor": "3"})
        call(node, "POST", "/api/v1/alarms", op, {"type": "repair"})
        office.call("POST", "/api/v1/slips", clerk, SLIP)
        wait_for(lambda: backlog(node) == 0 and sum(map(len, outbox(node).values())) > 5, 20,
                 "the gate's month at the office")  # fmt: skip
        month = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
        status, report = office.call("GET", f"/api/v1/reports/monthly?month={month}", clerk)
        assert status == 200
        assert report["alarms_by_type"] == {"first_aid": 1, "repair": 1}
        assert sum(report["alarms_by_shift"].values()) == 2
        assert report["decisions"] == {"gate-a:deny": 5}
        assert report["office_slips"]["issued"] == 1
        assert office.call("GET", "/api/v1/reports/monthly?month=13", clerk)[0] == 422
    finally:
        node.stop()
        office.stop()


def test_connections_dropped_in_the_middle_of_batches_lose_and_duplicate_nothing(
    tmp_path: Path, broker: Broker, pg_url: str
):
    from tests.helpers import CuttingProxy

    office = Office(tmp_path, pg_url)
    office.token("office", "node", "add", "warm-up")
    office.start()
    proxy = CuttingProxy(office.port, cuts=12, after=3000)  # a batch of 100 is ~30 kB
    gate = make_gate(tmp_path, broker, office, "gate-a")
    gate.config.write_text(
        gate.config.read_text().replace(office.url, f"http://127.0.0.1:{proxy.port}")
    )
    gate.start()
    try:
        swipes(broker, "gate-a", 1, 800)
        wait_for(lambda: sum(map(len, outbox(gate).values())) == 800 and backlog(gate) == 0, 90,
                 "every record through a line that keeps dropping")  # fmt: skip
    finally:
        gate.stop()
        office.stop()
        proxy.close()
    assert proxy.cut == 12  # the faults happened
    remote, edge = at_office(pg_url, "gate-a"), outbox(gate)
    assert remote == edge


def test_the_office_knows_every_kind_a_gate_sends():
    """The office refuses a record of a kind it does not know (422, naming it): every kind
    a gate's code hands to ``outbox.add`` must be one of ``sync.office.KINDS``, or that
    gate's push would stop at its first such record."""
    import ast

    from sync.office import KINDS
    from tests.helpers import ROOT

    sent: set[str] = set()
    for path in (ROOT / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "add" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "outbox" and len(node.args) > 2):  # fmt: skip
                continue
            kind = node.args[2]
            if isinstance(kind, ast.Constant):
                sent.add(kind.value)
            else:  # f"slip_{status}": the statuses a slip is closed with
                assert ast.unparse(kind) == "f'slip_{status}'", f"{path}: {ast.unparse(kind)}"
                closes = ast.unparse(ast.parse((ROOT / "edge" / "slips.py").read_text()))
                statuses = set(re.findall(r"_close\([^)]*?'(\w+)'", closes))
                assert statuses == {"released", "rejected", "cancelled"}
                sent |= {f"slip_{s}" for s in statuses}
    assert len(sent) >= 10, f"the walk found only {sorted(sent)}"
    assert sent <= KINDS, f"the office does not know {sorted(sent - KINDS)}"
