"""The gates' records at the office, kept by month (issue 12): an office upgraded with
records keeps every one of them; a month is let go by detaching it; a gate sending again
records of a month let go does not bring them back, and what it sends after flows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import text

from sync import officedb, partitions
from tests.helpers import Office, cli, pg_rows
from tests.security.test_office_push import line, push
from tests.test_sync_recovery import running

JANUARY = datetime(2026, 1, 15, tzinfo=UTC).timestamp()


def months(office: Office) -> dict[str, int]:
    out = cli(office.config, "--json", "office", "events", "months")
    assert out.returncode == 0, out.stderr
    return {p["month"] or p["partition"]: p["rows"] for p in json.loads(out.stdout)["items"]}


def test_an_office_upgraded_with_records_keeps_every_one_in_its_month(pg_url: str) -> None:
    eng = officedb.engine(pg_url)
    cfg = officedb.alembic_config()
    try:
        with eng.begin() as c:  # an office as it was before months
            cfg.attributes["connection"] = c
            command.upgrade(cfg, "0007")
        rows = [(1, JANUARY), (2, JANUARY + 86400 * 40), (3, 1.0)]  # Jan, Feb, a clock at 1970
        for seq, at in rows:
            pg_rows(pg_url, "INSERT INTO edge_events VALUES ('gate-a', 1, %s, 'duty_log', 'r', "
                    "'{}', 'h', %s)", seq, at)  # fmt: skip
        officedb.migrate(eng)
        with eng.connect() as c:
            found = c.execute(text("SELECT seq, tableoid::regclass::text FROM edge_events"))
            where = dict(found.all())
        assert where == {1: "edge_events_2026_01", 2: "edge_events_2026_02",
                         3: "edge_events_default"}  # fmt: skip
    finally:
        eng.dispose()


def test_a_month_let_go_is_detached_and_a_gate_sending_it_again_does_not_bring_it_back(
    tmp_path: Path, pg_url: str
) -> None:
    office = Office(tmp_path, pg_url)
    token = office.token("office", "node", "add", "gate-x")
    first = "".join(line(s, "duty_log", json.dumps({"id": s, "text": "巡逻"})) for s in (1, 2, 3))
    with running(office):
        assert push(office, token, first, epoch=7)[1]["acked_through"] == 3
        # as if they had come in January: rows move between partitions on UPDATE (into the
        # default one, as January has none), and making January moves them into it
        pg_rows(pg_url, "UPDATE edge_events SET received_at = %s", JANUARY)
        eng = officedb.engine(pg_url)
        try:
            with eng.begin() as c:
                assert partitions.ensure(c, 2026, 1)
        finally:
            eng.dispose()
        assert "2026-01" in months(office)
        assert pg_rows(pg_url, "SELECT count(*) FROM edge_events_2026_01") == [(3,)]

        this_month = datetime.now(UTC).strftime("%Y-%m")
        out = cli(office.config, "office", "events", "detach", "--before", this_month)
        assert out.returncode == 0 and "2026-01" in out.stdout, out.stderr
        assert "2026-01" not in months(office)
        assert pg_rows(pg_url, "SELECT count(*) FROM edge_events") == [(0,)]
        assert pg_rows(pg_url, "SELECT count(*) FROM edge_events_archive_2026_01") == [(3,)]

        # the gate (a database copied back) sends them again, and one new record after
        again = first + line(4, "duty_log", json.dumps({"id": 4, "text": "交班"}))
        status, answer = push(office, token, again, epoch=7)
        assert status == 200 and answer["acked_through"] == 4
        assert pg_rows(pg_url, "SELECT seq FROM edge_events ORDER BY seq") == [(4,)]

        bad = cli(office.config, "office", "events", "detach", "--before", "2026-13", check=False)
        assert bad.returncode == 2 and "2026-13" in bad.stderr and "Traceback" not in bad.stderr
