"""Several office processes on one database (LISTEN/NOTIFY, docs/sync.md): a change made
through one process wakes the gates waiting at another, and a process's change listener
outlives its connection."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sync import notify
from sync.office_api import LongPolls
from tests.helpers import Office, http_call, pg_rows, wait_for

WAIT = 20  # the gates' long poll: every answer below comes well before it ends
ANSWERED = 15  # generous (shared machines), and still before a wait of WAIT s ends


class Poll:
    """One long poll as a gate's pull worker sends it, in a thread; its answer when it came."""

    def __init__(self, office: Office, token: str, since: int) -> None:
        self.answer: tuple[int, Any] | None = None
        path = f"/sync/v1/pull?since={since}&wait={WAIT}"
        self._thread = threading.Thread(
            target=self._run, args=(office.url, path, token), daemon=True
        )
        self._thread.start()

    def _run(self, url: str, path: str, token: str) -> None:
        self.answer = http_call(url, "GET", path, token)

    def changes(self) -> list[tuple[int, str, str]]:
        """(change_id, entity_id, op) of each change answered, once answered in time."""
        wait_for(lambda: self.answer is not None, ANSWERED, "the waiting poll to answer")
        assert self.answer is not None
        status, body = self.answer
        assert status == 200, body
        return [(c["change_id"], c["entity_id"], c["op"]) for c in body["changes"]]

    def join(self) -> None:
        self._thread.join(WAIT + 10)


def waiting(office: Office, clerk: str, node: str) -> bool:
    """The node's long poll is open at this office process (``polling`` is per process)."""
    status, nodes = office.call("GET", "/api/v1/nodes", clerk)
    assert status == 200
    return any(n["node"] == node and n["polling"] for n in nodes["items"])


def issue(office: Office, clerk: str, card: str) -> str:
    status, p = office.call("POST", "/api/v1/passes", clerk,
                            {"kind": "resident", "card": card, "name": "张三"})  # fmt: skip
    assert status == 201, p
    return p["id"]


def listeners(pg_url: str) -> list[tuple[int, str]]:
    """(pid, query) of each office process's listening connection to this database."""
    return pg_rows(pg_url, "SELECT pid, query FROM pg_stat_activity WHERE application_name = %s"
                   " AND datname = current_database()", notify.APPLICATION_NAME)  # fmt: skip


def test_a_change_made_through_one_office_process_wakes_the_gates_waiting_at_another(
    tmp_path: Path, pg_url: str
):
    one = Office(tmp_path / "one", pg_url)
    two = Office(tmp_path / "two", pg_url, data_dir=one.data_dir)  # the same office's keys
    clerk = one.token("user", "add", "客服小王", "--role", "admin")
    gate_a = one.token("office", "node", "add", "gate-a")
    gate_b = two.token("office", "node", "add", "gate-b")
    one.start()
    two.start()
    polls: list[Poll] = []
    try:
        pass_id = issue(one, clerk, "0040856634")  # change 1: both gates hold it already
        wait_for(lambda: len(listeners(pg_url)) == 2, 20, "each process's listener")

        # gate-a waits at process 2, gate-b at process 1; the clerk revokes through 1
        polls = [Poll(two, gate_a, since=1), Poll(one, gate_b, since=1)]
        wait_for(lambda: waiting(two, clerk, "gate-a") and waiting(one, clerk, "gate-b"),
                 ANSWERED, "both polls waiting")  # fmt: skip
        status, _ = one.call("POST", f"/api/v1/passes/{pass_id}/revoke", clerk,
                             {"reason": "lost"})  # fmt: skip
        assert status == 200
        for poll in polls:
            assert poll.changes() == [(2, pass_id, "revoke")]

        # and the other way: issued through process 2, heard at 1 (and at 2 itself)
        polls = [Poll(one, gate_a, since=2), Poll(two, gate_b, since=2)]
        wait_for(lambda: waiting(one, clerk, "gate-a") and waiting(two, clerk, "gate-b"),
                 ANSWERED, "both polls waiting")  # fmt: skip
        second = issue(two, clerk, "0040856635")
        for poll in polls:
            assert poll.changes() == [(3, second, "upsert")]
    finally:
        for poll in polls:
            poll.join()
        two.stop()
        one.stop()


def test_the_change_listener_outlives_its_connection_being_killed(tmp_path: Path, pg_url: str):
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "admin")
    gate = office.token("office", "node", "add", "gate-a")
    office.start()
    poll: Poll | None = None
    try:
        [(old_pid, query)] = wait_for(lambda: listeners(pg_url), 20, "the office's listener")
        assert query.startswith("LISTEN")

        poll = Poll(office, gate, since=0)
        wait_for(lambda: waiting(office, clerk, "gate-a"), ANSWERED, "the poll waiting")
        pg_rows(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                "application_name = %s AND datname = current_database()",
                notify.APPLICATION_NAME)  # fmt: skip
        # committed while the listener is away or just back: a look finds it either way
        first = issue(office, clerk, "0040856634")
        assert poll.changes() == [(1, first, "upsert")]
        poll.join()

        # listening again, on a connection of its own: the next change is heard as before
        wait_for(lambda: [p for p, _ in listeners(pg_url)] not in ([], [old_pid]), 30,
                 "the listener to connect again")  # fmt: skip
        poll = Poll(office, gate, since=1)
        wait_for(lambda: waiting(office, clerk, "gate-a"), ANSWERED, "the poll waiting")
        second = issue(office, clerk, "0040856635")
        assert poll.changes() == [(2, second, "upsert")]

        said = office.log.read_text()
        assert said.count("change listener: connection lost") == 1, said  # once, not a flood
        assert said.count("change listener: listening again") == 1, said
    finally:
        if poll is not None:
            poll.join()
        office.stop()


def test_waiting_polls_look_at_the_log_while_no_listener_can_connect(
    caplog: pytest.LogCaptureFixture,
):
    """The database refuses the listener (down, or no connection slots): the polls are
    woken by the office looking at its change log instead, and the log says so once."""
    latest = 0
    attempts = 0

    def refused() -> Any:
        nonlocal attempts
        attempts += 1
        raise psycopg2.OperationalError("connection refused")

    async def run() -> tuple[str, str]:
        nonlocal latest
        polls = LongPolls(lambda: latest, 0.05, refused)
        polls.listen()
        try:
            waiting = asyncio.create_task(polls.wait("gate-a", 0, 10))
            await asyncio.sleep(0.3)
            assert not waiting.done() and not polls.listening
            latest = 1  # a change committed, heard by nobody
            changed = await asyncio.wait_for(waiting, ANSWERED)
            timeout = await polls.wait("gate-a", 1, 0.3)  # nothing more: it waits it out
            return changed, timeout
        finally:
            await polls.close()

    assert asyncio.run(run()) == ("changed", "timeout")
    assert attempts >= 1
    said = [r.getMessage() for r in caplog.records if r.name == notify.log.name]
    assert len(said) == 1 and "cannot listen (connection refused)" in said[0], said
