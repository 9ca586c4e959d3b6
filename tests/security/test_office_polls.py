"""Attack on the office's long poll (issue 11, finding 12c): 45 long polls from one node
token held the office's 40 threads for 25 s, and a clerk's request waited behind them
(0.09 s became 22.9 s). Now a poll waits on the event loop, holding no thread, and a node
has one waiting poll at a time: a newer one answers the older at once."""

from __future__ import annotations

import threading
import time
from typing import Any

from sync import office as office_db
from sync import officedb
from tests.helpers import Office, http_call, wait_for

POLLS = 45  # the review's figure: more than the threadpool's 40


class Polls:
    """Long polls as a gate's pull worker makes them, each in a thread of its own; the
    answers as they come."""

    def __init__(self, office: Office, tokens: list[str], since: int) -> None:
        self.answers: dict[int, tuple[int, Any]] = {}
        self.threads = [
            threading.Thread(target=self._poll, args=(office, i, t, since), daemon=True)
            for i, t in enumerate(tokens)
        ]
        for th in self.threads:
            th.start()

    def _poll(self, office: Office, i: int, token: str, since: int) -> None:
        self.answers[i] = http_call(office.url, "GET", f"/sync/v1/pull?since={since}&wait=25",
                                    token)  # fmt: skip

    def open(self) -> list[int]:
        return [i for i in range(len(self.threads)) if i not in self.answers]

    def join(self) -> None:
        for th in self.threads:
            th.join(35)


def issue(office: Office, clerk: str, card: str) -> int:
    """A pass issued at the office: the change every waiting poll is told of."""
    status, _ = office.call("POST", "/api/v1/passes", clerk,
                            {"kind": "resident", "card": card, "name": "张三"})  # fmt: skip
    assert status == 201
    return status


def test_a_node_s_extra_long_polls_are_answered_at_once_and_a_clerk_is_served_meanwhile(
    clerk_office: tuple[Office, str],
):
    o, clerk = clerk_office
    reader = o.token("user", "add", "管理员", "--role", "admin")  # the node list is theirs
    token = o.token("office", "node", "add", "gate-x")
    polls = Polls(o, [token] * POLLS, since=0)
    try:
        # every poll but the newest is answered at once (no change: "superseded"); before
        # this fix each waited its 25 s, so this wait ran out first
        wait_for(lambda: len(polls.answers) == POLLS - 1, 20, "the older polls to be answered")
        assert all(status == 200 and body["changes"] == [] and body.get("superseded")
                   for status, body in polls.answers.values())  # fmt: skip
        [kept] = polls.open()

        status, nodes = o.call("GET", "/api/v1/nodes", reader)
        assert status == 200
        assert polls.open() == [kept]  # the clerk was answered while the poll waited
        assert [n["polling"] for n in nodes["items"] if n["node"] == "gate-x"] == [True]

        issue(o, clerk, "0040856634")
        wait_for(lambda: not polls.open(), 10, "the waiting poll to hear of the change")
        status, body = polls.answers[kept]
        assert status == 200 and [c["change_id"] for c in body["changes"]] == [1]
        assert "superseded" not in body
    finally:
        polls.join()


def test_gates_waiting_in_long_polls_hold_no_thread_so_the_desk_answers_meanwhile(
    clerk_office: tuple[Office, str], pg_url: str
):
    """45 gates each with its poll open (one each is allowed): a clerk is served while all
    45 still wait, and one commit answers them all."""
    o, clerk = clerk_office
    reader = o.token("user", "add", "管理员", "--role", "admin")  # the node list is theirs
    eng = officedb.engine(pg_url)
    try:
        with eng.begin() as c:  # 45 node tokens at once, as `office node add` makes each
            tokens = [office_db.add_node(c, f"gate-{i:02d}", time.time()) for i in range(POLLS)]
    finally:
        eng.dispose()
    polls = Polls(o, tokens, since=0)
    try:

        def all_waiting() -> bool:
            status, nodes = o.call("GET", "/api/v1/nodes", reader)  # answers: the point
            assert status == 200
            return sum(n["polling"] for n in nodes["items"]) == POLLS

        # (before this fix the clerk's call itself waited for the polls to end)
        wait_for(all_waiting, 20, "every gate's poll to be waiting, seen by the clerk")
        assert len(polls.open()) == POLLS  # none answered yet: the clerk went first

        issue(o, clerk, "0040856634")
        wait_for(lambda: not polls.open(), 10, "every poll to hear of the change")
        assert {(s, tuple(c["change_id"] for c in b["changes"]))
                for s, b in polls.answers.values()} == {(200, (1,))}  # fmt: skip
    finally:
        polls.join()
