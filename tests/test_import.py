"""Bulk import that never stops the gate: the file checked whole first, the rows written in
short transactions as staged passes that never grant, all made active by one last step —
with a running node deciding swipes all the while, and an importer killed part-way."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from drivers.rdm6300 import Rdm6300
from edge import db, gate, pass_ops
from edge.cards import parse_card
from edge.decision import SiteRules
from edge.passes import PassError
from edge.privacy import IdHasher
from tests.helpers import GATEHOUSE, Broker, Listener, Pty, cli, node_for, wait_for

TZ = ZoneInfo("Asia/Shanghai")
HEADER = ["kind", "card", "name", "unit", "valid_from", "valid_until"]
HASHER = IdHasher(b"k" * 32)


def cards(n: int, base: int) -> list[str]:
    """``n`` cards as 10 printed decimal digits (distinct 32-bit keys)."""
    return [f"{base + i:010d}" for i in range(n)]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def residents(card_list: list[str]) -> list[list[str]]:
    return [["resident", c, f"业主{i}", f"{i % 40 + 1}-{i % 3000 + 101}", "", ""]
            for i, c in enumerate(card_list)]  # fmt: skip


def database(tmp_path: Path) -> tuple[Path, sqlite3.Connection]:
    path = tmp_path / "var" / "edge.db"
    db.migrate(path)
    return path, db.connect(path)


def statuses(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as ro:
        return dict(ro.execute("SELECT status, count(*) FROM passes GROUP BY status").fetchall())


# -- in process -----------------------------------------------------------------------------


def test_a_bad_file_names_every_bad_line_first_one_first_and_writes_nothing(tmp_path: Path):
    path, conn = database(tmp_path)
    rows = residents(cards(30, 1000))
    rows[1][5] = "not a date"  # line 3
    rows[3] = rows[3][:4]  # line 5: too few fields
    rows[5][1] = rows[0][1]  # line 7: line 2's card again
    rows[7][0] = "visitor"  # line 9: no such kind
    rows[8][1] = rows[0][1]  # line 10: line 2's card a third time
    with pytest.raises(PassError) as e:
        pass_ops.import_csv(
            conn, write_csv(tmp_path / "bad.csv", rows), HASHER, TZ, "clerk", time.time()
        )
    lines = str(e.value).splitlines()
    assert lines[0].startswith("line 3: ") and "not a date" in lines[0]
    assert [ln.split(":")[0] for ln in lines] == [f"line {n}" for n in (3, 5, 7, 9, 10)]
    assert lines[1] == "line 5: wrong number of fields"
    assert lines[2] == f"line 7: card {rows[0][1]!r} is already on line 2"
    assert lines[4] == f"line 10: card {rows[0][1]!r} is already on line 2"
    assert statuses(path) == {} and not conn.in_transaction


def test_a_very_bad_file_is_summed_up_from_its_first_bad_line(tmp_path: Path):
    _, conn = database(tmp_path)
    rows = residents(cards(100, 1000))
    rows[3][1] = rows[2][1]  # line 5: a card already on line 4
    rows[50:] = [["resident", "nope", "x", "1-1", "", ""]] * 50  # lines 52-101
    with pytest.raises(PassError) as e:
        pass_ops.import_csv(
            conn, write_csv(tmp_path / "bad.csv", rows), HASHER, TZ, "clerk", time.time()
        )
    lines = str(e.value).splitlines()
    assert len(lines) == pass_ops.ERRORS_SHOWN + 1 and lines[-1] == "... 51 bad lines in all"
    assert lines[0] == f"line 5: card {rows[2][1]!r} is already on line 4"
    assert lines[1].startswith("line 52: card")


def test_rows_go_in_short_transactions_and_none_grants_before_the_last_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path, conn = database(tmp_path)
    card_list = cards(5000, 7000)
    csv_path = write_csv(tmp_path / "p.csv", residents(card_list))
    seen: dict[str, object] = {}
    activate = pass_ops._activate

    def before_the_last_step(c: sqlite3.Connection, first: int, last: int) -> int:
        other = db.connect(path)  # what the node's writer and the API would see
        seen["before"] = statuses(path)
        decision, _ = gate.check(other, parse_card(card_list[123]), time.time(), "main",
                                 SiteRules(tz=TZ))  # fmt: skip
        seen["granted"] = decision.granted
        other.close()
        return activate(c, first, last)

    monkeypatch.setattr(pass_ops, "_activate", before_the_last_step)
    traced: list[str] = []
    conn.set_trace_callback(traced.append)
    n = pass_ops.import_csv(
        conn, csv_path, HASHER, TZ, "clerk", time.time(), chunk=500, hold_s=10.0
    )
    conn.set_trace_callback(None)
    assert n == 5000
    assert seen == {"before": {"staged": 5000}, "granted": False}
    assert statuses(path) == {"active": 5000}
    # 10 transactions of 500 rows on the database, then the one that made them active
    assert traced.count("BEGIN IMMEDIATE") == 11
    ids = [r[0] for r in conn.execute("SELECT id FROM passes ORDER BY card_key")]
    assert ids == sorted(ids) and len(set(ids)) == 5000  # random, rising with the card
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    decision, _ = gate.check(conn, parse_card(card_list[123]), time.time(), "main",
                             SiteRules(tz=TZ))  # fmt: skip
    assert decision.granted


def test_a_failure_part_way_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path, conn = database(tmp_path)
    csv_path = write_csv(tmp_path / "p.csv", residents(cards(3000, 7000)))

    def disk_full(c: sqlite3.Connection, first: int, last: int) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(pass_ops, "_activate", disk_full)
    with pytest.raises(sqlite3.OperationalError):
        pass_ops.import_csv(conn, csv_path, HASHER, TZ, "clerk", time.time(), chunk=500)
    assert statuses(path) == {}
    monkeypatch.undo()
    assert pass_ops.import_csv(conn, csv_path, HASHER, TZ, "clerk", time.time()) == 3000
    assert statuses(path) == {"active": 3000}


def test_one_import_at_a_time(tmp_path: Path):
    path, conn = database(tmp_path)
    csv_path = write_csv(tmp_path / "p.csv", residents(cards(10, 7000)))
    fd = os.open(f"{path}-import.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with pytest.raises(pass_ops.ImportBusy):
            pass_ops.import_csv(conn, csv_path, HASHER, TZ, "clerk", time.time())
    finally:
        os.close(fd)
    assert pass_ops.import_csv(conn, csv_path, HASHER, TZ, "clerk", time.time()) == 10


# -- real processes ---------------------------------------------------------------------


def importer(config: Path, csv_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [GATEHOUSE, "--config", str(config), "--json", "pass", "import", str(csv_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_importer_killed_part_way_leaves_no_pass_that_grants(tmp_path: Path):
    n = node_for(tmp_path, [])  # a config and its database; the node need not run
    path = n.config.parent / "var" / "edge.db"
    card_list = cards(200_000, 1_000_000)
    csv_path = write_csv(tmp_path / "p.csv", residents(card_list))
    cli(n.config, "pass", "list")  # the database made
    proc = importer(n.config, csv_path)
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as ro:

            def staged() -> bool:
                return ro.execute(
                    "SELECT 1 FROM passes WHERE status = 'staged' LIMIT 1"
                ).fetchone() is not None  # fmt: skip

            wait_for(staged, 60, "the importer to write its first rows")
        proc.send_signal(signal.SIGKILL)  # between two chunks, or inside one
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    left = statuses(path)
    assert set(left) == {"staged"} and 0 < left["staged"] < 200_000
    out = cli(n.config, "--json", "check", card_list[0], check=False)
    assert out.returncode == 1 and json.loads(out.stdout)["decision"] == "deny"
    out = cli(n.config, "--json", "pass", "list")
    # the next import removes the dead one's rows first, then does the whole file
    done = cli(n.config, "--json", "pass", "import", str(csv_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imported"] == 200_000
    assert statuses(path) == {"active": 200_000}
    assert cli(n.config, "check", card_list[0]).returncode == 0


def test_swipes_are_decided_in_time_while_200k_passes_are_imported(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty
):
    reader = {"id": "main-in", "gate": "main", "port": pty.path, "protocol": "rdm6300"}
    node = node_for(tmp_path, [reader], broker.port)
    path = node.config.parent / "var" / "edge.db"
    regulars = cards(600, 3_000_000_000)  # the estate's residents, swiping in
    cli(node.config, "pass", "import", str(write_csv(tmp_path / "r.csv", residents(regulars))))
    newcomers = cards(200_000, 1_000_000)
    big = write_csv(tmp_path / "big.csv", residents(newcomers))
    node.start(wait_ready=True)
    try:
        proc = importer(node.config, big)
        swipes: list[tuple[float, dict, bool]] = []  # (seconds to decision, decision, staged)
        ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            while proc.poll() is None or len(swipes) < 20:
                started = time.monotonic()
                copying = (
                    ro.execute("SELECT 1 FROM passes WHERE status = 'staged' LIMIT 1").fetchone()
                    is not None
                )
                pty.write(Rdm6300.encode(parse_card(regulars[len(swipes)])))
                decision = listener.next("/decision", timeout=10)
                swipes.append((time.monotonic() - started, decision, copying))
                time.sleep(max(0.0, 0.1 - (time.monotonic() - started)))
        finally:
            ro.close()
            if proc.poll() is None:
                proc.kill()
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert json.loads(out)["imported"] == 200_000
        assert sum(1 for *_, copying in swipes if copying) >= 3  # swipes met the copy
        assert [d["card"] for _, d, _ in swipes] == [
            parse_card(c).masked for c in regulars[: len(swipes)]
        ]  # every swipe got its own decision, in order
        assert all(d["decision"] == "grant" and d["stale"] is False for _, d, _ in swipes)
        slowest = max(t for t, _, _ in swipes)
        print(f"{len(swipes)} swipes ({sum(c for *_, c in swipes)} during the copy), "
              f"slowest decision {slowest * 1000:.0f} ms")  # fmt: skip
        assert slowest < 2.0, f"a swipe waited {slowest:.2f} s for its decision"
        pty.write(Rdm6300.encode(parse_card(newcomers[-1])))  # an imported card, at once
        assert listener.next("/decision")["decision"] == "grant"
    finally:
        node.stop()
    with sqlite3.connect(path) as conn:
        recorded = conn.execute(
            "SELECT count(*), coalesce(sum(stale), 0) FROM access_events"
        ).fetchone()
    assert recorded == (len(swipes) + 1, 0)  # nothing lost, nothing stale
    assert statuses(path) == {"active": 200_600}


def test_a_large_import_shows_its_progress_on_a_terminal_and_not_in_a_pipe(tmp_path: Path):
    """A clerk importing a big file sees it checked and written (issue 14); a script that
    reads the output gets the one line it always got."""
    import pty
    import struct
    import termios

    from tests.helpers import free_port, write_config

    config = write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=free_port())
    csv_path = write_csv(tmp_path / "big.csv", residents(cards(5000, 1_000_000)))
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))  # 100 columns
    proc = subprocess.Popen([GATEHOUSE, "--config", str(config), "pass", "import", str(csv_path)],
                            stdout=subprocess.PIPE, stderr=terminal, text=True)  # fmt: skip
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the other end closed: the command is done
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(controller)
    assert proc.returncode == 0 and out.startswith("imported 5000 passes"), out
    shown = seen.decode("utf-8", "replace")
    assert "写入 writing" in shown and "5000/5000" in shown, shown
    more = write_csv(tmp_path / "more.csv", residents(cards(3000, 2_000_000)))
    plain = cli(config, "pass", "import", str(more))
    assert plain.returncode == 0 and plain.stderr == "", plain.stderr
