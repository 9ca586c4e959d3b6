"""Office sync when something was restored, copied back or closed twice (issue 12): each
fault is caused for real with running gates and a running office on PostgreSQL — the
office restored from its backup, a gate's database file copied back, a gate's backup
restored after its outbox was pruned, a slip released at two gates cut off from the
office — and the checks are what the users see: the gates' decisions, the office's
records and anomalies, the gates' alarms."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.helpers import Broker, Node, Office, cli, pg_rows, wait_for
from tests.test_desk_e2e import call
from tests.test_sync import SLIP, backlog, make_gate, outbox, swipes


@contextlib.contextmanager
def running(office: Office, *gates: Node) -> Iterator[None]:
    """The office and the gates started, and stopped again whatever happens."""
    office.start()
    for g in gates:
        g.start()
    try:
        yield
    finally:
        for g in gates:
            g.stop()
        office.stop()


def decision(gate: Node, card: str) -> str:
    return str(json.loads(cli(gate.config, "--json", "check", card).stdout)["reason"])


@contextlib.contextmanager
def edge_db(gate: Node) -> Iterator[sqlite3.Connection]:
    """The gate's database, committed and closed after: a connection left open across a
    restore would write its old pages into the restored file when it is collected."""
    db = sqlite3.connect(gate.config.parent / "var" / "edge.db")
    try:
        with db:
            yield db
    finally:
        db.close()


def gate_alarms(gate: Node, kind: str) -> list[tuple[Any, ...]]:
    with edge_db(gate) as db:
        return db.execute("SELECT type, notes FROM alarms WHERE type = ?", (kind,)).fetchall()


def anomalies(pg_url: str, kind: str) -> list[str]:
    return [r[0] for r in pg_rows(pg_url, "SELECT detail FROM anomalies WHERE kind = %s", kind)]


def office_pass(pg_url: str, pass_id: str) -> tuple[str, int] | None:
    found = pg_rows(pg_url, "SELECT status, version FROM passes WHERE id = %s", pass_id)
    return (found[0][0], found[0][1]) if found else None


def visitor(card: str, name: str) -> dict[str, str]:
    return {"kind": "temporary", "card": card, "name": name}


def test_after_the_office_is_restored_revocations_still_reach_the_gates_and_nothing_issued_is_lost(
    tmp_path: Path, broker: Broker, pg_url: str
):
    """Before: change ids after a restore were ones the gate's cursor had passed, so a
    revocation made after it never reached the gate; passes issued between the dump and the
    loss answered 404 to a revocation."""
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    gate = make_gate(tmp_path, broker, office, "gate-a")
    dump = tmp_path / "office.dump"
    with running(office, gate):
        _, first = office.call("POST", "/api/v1/passes", clerk, visitor("0000000101", "甲"))
        _, kept = office.call("POST", "/api/v1/passes", clerk, visitor("0000000102", "乙"))
        wait_for(lambda: decision(gate, "0000000102") == "ok", 15, "the passes at the gate")
        office.token("backup", str(dump))
        # after the backup: a pass issued, one renewed twice, one revoked (the gate has all)
        _, late = office.call("POST", "/api/v1/passes", clerk, visitor("0000000103", "丙"))
        for _ in range(2):
            assert office.call("POST", f"/api/v1/passes/{kept['id']}/renew", clerk, {})[0] == 200
        office.call("POST", f"/api/v1/passes/{first['id']}/revoke", clerk, {"reason": "丢失"})
        wait_for(lambda: (decision(gate, "0000000103"), decision(gate, "0000000101"))
                 == ("ok", "revoked"), 15, "the later changes")  # fmt: skip

        office.stop()
        out = cli(office.config, "restore", str(dump))
        assert "pull it again" in out.stdout
        assert office_pass(pg_url, late["id"]) is None  # lost with the restore, for now
        office.start()

        # the gate notices the new log, tells the office what it holds, and pulls again
        wait_for(lambda: office_pass(pg_url, late["id"]) is not None, 30,
                 "the office to take back the pass issued after its backup")  # fmt: skip
        assert office_pass(pg_url, first["id"])[0] == "revoked"  # the revocation kept
        assert office_pass(pg_url, kept["id"])[1] >= 3  # the renewals: past the gate's v3
        assert anomalies(pg_url, "relearned")

        # revocations after the restore: of a pass the office had lost, and of one it had
        assert office.call("POST", f"/api/v1/passes/{late['id']}/revoke", clerk, {})[0] == 200
        assert office.call("POST", f"/api/v1/passes/{kept['id']}/revoke", clerk, {})[0] == 200
        office.call("POST", "/api/v1/passes", clerk, visitor("0000000104", "丁"))
        wait_for(lambda: [decision(gate, c) for c in ("0000000103", "0000000102", "0000000104")]
                 == ["revoked", "revoked", "ok"], 20, "the revocations at the gate")  # fmt: skip
        assert decision(gate, "0000000101") == "revoked"


def test_a_slip_released_at_two_gates_cut_off_from_the_office_is_one_release_and_an_anomaly(
    tmp_path: Path, broker: Broker, pg_url: str
):
    """Before: a gate's release changed the office's slip but no gate heard of it, and a
    second release at another gate (or a cancellation at a gate) was silently ignored."""
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    gates = [make_gate(tmp_path, broker, office, g) for g in ("gate-a", "gate-b")]
    guards = [cli(g.config, "user", "add", "老张", "--role", "admin").stdout.strip()
              for g in gates]  # fmt: skip

    def slip_at(i: int, number: str) -> dict[str, Any]:
        return call(gates[i], "GET", f"/api/v1/slips/{number}", guards[i])[1]

    with running(office, *gates):
        numbers = [office.call("POST", "/api/v1/slips", clerk, SLIP)[1]["number"] for _ in "123"]
        wait_for(lambda: all(slip_at(i, n).get("status") == "issued" for i in (0, 1)
                             for n in numbers), 15, "the slips at both gates")  # fmt: skip

        # online: released at gate A, gate B hears of it and refuses it
        assert (
            call(gates[0], "POST", f"/api/v1/slips/{numbers[0]}/release", guards[0], {})[0] == 200
        )
        wait_for(lambda: slip_at(1, numbers[0]).get("status") == "released", 15,
                 "the release at the other gate")  # fmt: skip
        again = call(gates[1], "POST", f"/api/v1/slips/{numbers[0]}/release", guards[1], {})
        assert again[0] == 409

        # cut off: both release the second slip; gate B cancels the third
        texts = [g.config.read_text() for g in gates]
        for g, text in zip(gates, texts, strict=True):
            g.stop()
            g.config.write_text(text.replace(office.url, "http://127.0.0.1:9"))
            g.start()
        for i in (0, 1):
            path = f"/api/v1/slips/{numbers[1]}/release"
            assert call(gates[i], "POST", path, guards[i], {})[0] == 200
        cancel = {"reason": "业主改期"}
        assert (
            call(gates[1], "POST", f"/api/v1/slips/{numbers[2]}/cancel", guards[1], cancel)[0]
            == 200
        )
        for g, text in zip(gates, texts, strict=True):
            g.stop()
            g.config.write_text(text)
            g.start()

        wait_for(lambda: anomalies(pg_url, "slip_released_after_released"), 20,
                 "the second release at the office")  # fmt: skip
        detail = anomalies(pg_url, "slip_released_after_released")[0]
        assert numbers[1] in detail and "gate-a" in detail and "gate-b" in detail
        statuses = dict(pg_rows(pg_url, "SELECT number, status FROM slips"))
        assert [statuses[n] for n in numbers] == ["released", "released", "cancelled"]
        facts = pg_rows(pg_url, "SELECT node_id FROM edge_events WHERE kind = 'slip_released' "
                        "AND ref = %s", numbers[1])  # fmt: skip
        assert sorted(n for (n,) in facts) == ["gate-a", "gate-b"]  # both facts kept
        wait_for(lambda: slip_at(0, numbers[2]).get("status") == "cancelled", 15,
                 "gate B's cancellation at gate A")  # fmt: skip


def test_a_pass_confiscated_at_one_gate_stops_at_every_gate(
    tmp_path: Path, broker: Broker, pg_url: str
):
    """Before: the gate bumped the office's version counter and the office never followed,
    so the other gates kept opening for a confiscated card."""
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    gates = [make_gate(tmp_path, broker, office, g) for g in ("gate-a", "gate-b")]
    guard = cli(gates[0].config, "user", "add", "老张", "--role", "admin").stdout.strip()
    with running(office, *gates):
        _, taken = office.call("POST", "/api/v1/passes", clerk, visitor("0000000201", "戊"))
        _, revoked = office.call("POST", "/api/v1/passes", clerk, visitor("0000000202", "己"))
        wait_for(lambda: all(decision(g, "0000000202") == "ok" for g in gates), 15, "the passes")
        body = {"pass_id": taken["id"], "reason": "证件与人不符", "gate": "main"}
        assert call(gates[0], "POST", "/api/v1/confiscations", guard, body)[0] == 201
        path = f"/api/v1/passes/{revoked['id']}/revoke"
        assert call(gates[0], "POST", path, guard, {"reason": "挂失"})[0] == 200
        wait_for(lambda: decision(gates[1], "0000000201") == "confiscated"
                 and decision(gates[1], "0000000202") == "revoked", 20,
                 "gate A's confiscation and revocation at gate B")  # fmt: skip
        assert office_pass(pg_url, taken["id"]) == ("confiscated", 2)
        assert office_pass(pg_url, revoked["id"]) == ("revoked", 2)
        # the office's own later change of it does not revive it anywhere
        assert office.call("POST", f"/api/v1/passes/{taken['id']}/renew", clerk, {})[0] == 409
        assert decision(gates[0], "0000000201") == "confiscated"


def test_a_database_file_copied_back_keeps_both_records_and_the_gate_goes_on_in_a_new_epoch(
    tmp_path: Path, broker: Broker, pg_url: str
):
    """Before: the same (node, epoch, seq) with other content was acknowledged and thrown
    away, silently but for an anomaly."""
    office = Office(tmp_path, pg_url)
    gate = make_gate(tmp_path, broker, office, "gate-a")
    var = gate.config.parent / "var"
    saved = tmp_path / "copied"
    with running(office, gate):
        swipes(broker, "gate-a", 1, 20)
        wait_for(lambda: backlog(gate) == 0 and sum(map(len, outbox(gate).values())) == 20, 30,
                 "the first 20 at the office")  # fmt: skip
        gate.stop()  # the file copied while stopped: a "backup" by hand
        shutil.copytree(var, saved)
        gate.start()
        swipes(broker, "gate-a", 100, 15)
        wait_for(lambda: backlog(gate) == 0 and sum(map(len, outbox(gate).values())) == 35, 30,
                 "the next 15 at the office")  # fmt: skip
        (epoch,) = outbox(gate)

        gate.stop()  # the copy put back: the next records reuse seqs 21..
        shutil.rmtree(var)
        shutil.copytree(saved, var)
        gate.start()
        swipes(broker, "gate-a", 500, 10)
        wait_for(lambda: backlog(gate) == 0 and len(outbox(gate)) == 2, 30,
                 "the new records under a new epoch")  # fmt: skip
        wait_for(lambda: gate_alarms(gate, "sync_conflict"), 10, "the gate's alarm")
    mine = outbox(gate)
    (new_epoch,) = set(mine) - {epoch}
    # the 10 swipes, and the gate's own alarm about it, from seq 21 on
    n = len(mine[new_epoch])
    assert n >= 11 and mine[new_epoch] == list(range(21, 21 + n))
    at_office = pg_rows(pg_url, "SELECT epoch, count(*), min(seq), max(seq) FROM edge_events "
                        "WHERE kind != 'set_aside' GROUP BY epoch")  # fmt: skip
    assert sorted(at_office) == sorted([(epoch, 35, 1, 35), (new_epoch, n, 21, 20 + n)])
    # the rewritten rows as they came, beside the originals
    aside = pg_rows(pg_url, "SELECT seq FROM set_aside WHERE epoch = %s ORDER BY seq", epoch)
    assert [s for (s,) in aside][:1] == [21]
    assert pg_rows(pg_url, "SELECT flagged_at IS NOT NULL FROM nodes WHERE node_id = 'gate-a'") == [
        (True,)
    ]
    assert any("copied back" in d for d in anomalies(pg_url, "integrity"))


def test_records_a_gate_no_longer_has_are_a_gap_both_sides_raise_and_sync_moves_past(
    tmp_path: Path, broker: Broker, pg_url: str
):
    """Before: an office restored from a dump older than the gate's pruned outbox waited
    forever for the pruned rows, and so did everything after them; and a gate restored from
    a backup taken after pruning counted its new epoch from a seq it would never write."""
    office = Office(tmp_path, pg_url)
    gate = make_gate(tmp_path, broker, office, "gate-a")
    dump, backup = tmp_path / "office.dump", tmp_path / "edge.bak"
    with running(office, gate):
        swipes(broker, "gate-a", 1, 10)
        wait_for(lambda: backlog(gate) == 0 and sum(map(len, outbox(gate).values())) == 10, 30,
                 "the first 10 at the office")  # fmt: skip
        (epoch,) = outbox(gate)
        office.token("backup", str(dump))
        swipes(broker, "gate-a", 100, 10)
        wait_for(lambda: backlog(gate) == 0 and sum(map(len, outbox(gate).values())) == 20, 30,
                 "the next 10 at the office")  # fmt: skip
        gate.stop()
        with edge_db(gate) as db:  # what housekeeping does to acknowledged rows after 30 days
            db.execute("DELETE FROM outbox WHERE acked_at IS NOT NULL")
        office.stop()
        office.token("restore", str(dump))  # it has 1..10; 11..20 are nowhere now
        office.start()
        gate.start()
        swipes(broker, "gate-a", 200, 5)
        # backlog() is 0 too before the swipes are written, so wait for the anomaly and rows
        wait_for(lambda: anomalies(pg_url, "gap") and backlog(gate) == 0
                 and sum(map(len, outbox(gate).values())) >= 5, 30,
                 "the records after the gap at the office")  # fmt: skip
        assert "11..20" in anomalies(pg_url, "gap")[0]
        assert gate_alarms(gate, "sync_gap")
        seqs = pg_rows(pg_url, "SELECT seq FROM edge_events WHERE node_id = 'gate-a' ORDER BY seq")
        top = seqs[-1][0]  # the 5 swipes, and the gate's alarm about the gap
        assert [s for (s,) in seqs] == [*range(1, 11), *range(21, top + 1)] and top >= 25

        # a backup of the pruned database, restored: its new epoch starts where the outbox's
        # counter is, not after the rows that are left
        gate.stop()
        with edge_db(gate) as db:
            db.execute("DELETE FROM outbox WHERE acked_at IS NOT NULL")
        assert cli(gate.config, "backup", str(backup)).returncode == 0
        assert cli(gate.config, "restore", str(backup)).returncode == 0
        gate.start()
        swipes(broker, "gate-a", 300, 5)
        wait_for(lambda: any(e != epoch for e in outbox(gate)), 30, "the restored gate's swipes")
        (restored,) = (e for e in outbox(gate) if e != epoch)

        def arrived() -> bool:
            first, top = pg_rows(pg_url, "SELECT base, contiguous_hwm FROM edge_cursors "
                                 "WHERE epoch = %s", restored)[0]  # fmt: skip
            return backlog(gate) == 0 and top - first + 1 >= 5

        wait_for(arrived, 30, "the restored gate's new epoch at the office")
    assert len(anomalies(pg_url, "gap")) == 1  # the new epoch had none


def test_what_the_office_cannot_store_of_a_gate_s_holdings_is_passed_over_not_refused(
    pg_url: str,
):
    """A held pass with U+0000 in its name (jsonb and text refuse it) must not fail the whole
    post: the gate would retry it for ever and pull nothing more."""
    from sync import officedb, recovery

    eng = officedb.engine(pg_url)
    officedb.migrate(eng)
    held = {"kind": "temporary", "card_key": 1, "valid_from": 1.8e9, "status": "active",
            "version": 1, "issued_at": 1.8e9, "updated_at": 1.8e9}  # fmt: skip
    body = recovery.Holdings.model_validate({"passes": [
        held | {"id": "p-bad", "name": "甲\x00"}, held | {"id": "p-good", "name": "乙"},
    ]})  # fmt: skip
    with eng.begin() as c:
        took = recovery.relearn(c, "gate-a", body, 1.8e9)
    eng.dispose()
    assert (took["passes"], took["refused"]) == (1, 1)
    assert pg_rows(pg_url, "SELECT id FROM passes") == [("p-good",)]
    assert any("p-bad" in d and "U+0000" in d for d in anomalies(pg_url, "relearned"))
