"""The office under long polls (issue 11, finding 12c): a clerk's request while gates wait.

A real ``gatehouse office`` on a scratch PostgreSQL database. A clerk's ``GET
/api/v1/nodes`` is timed, one call after another:

1. alone (the baseline, measured in this run);
2. while 45 long polls from ONE node token are kept open (each answered poll is sent again
   at once, as an attacker holding a gate's token would): the review's attack. A node has
   one waiting poll now, so the other 44 are answered at once and come straight back: a
   flood of requests, no longer of waiting threads;
3. while 45 gates each keep a long poll open (one each, as many gates do): more waiting
   polls than the office's threadpool has threads (40);
4. while 45 threads send plain pulls (wait=0) in a loop with one node token: a flood any
   token holder could always send, for comparison with 2.

RATIO = the clerk's p50 with the polls / alone (1.0 is no slowdown). Before this fix the
polls held a thread each for 25 s: the review measured 0.09 s becoming 22.9 s.

Run: .venv/bin/python bench/office_long_polls.py [--calls N]   (about a minute; needs
PostgreSQL)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from common import Stats, clerk_calls, drop, main_guard, scratch_db, wait_for

from sync import office as office_db
from sync import officedb
from tests.helpers import Office, http_call

POLLS = 45


class Pollers:
    """``len(tokens)`` threads, each keeping a long poll open with its token until stopped."""

    def __init__(self, office: Office, tokens: list[str], wait: float = 25) -> None:
        self.wait = wait
        self.stop = threading.Event()
        self.sent = 0
        self.threads = [
            threading.Thread(target=self._run, args=(office, t), daemon=True) for t in tokens
        ]
        for th in self.threads:
            th.start()

    def _run(self, office: Office, token: str) -> None:
        since = 0  # as a gate's pull worker: from its cursor, which each answer moves
        while not self.stop.is_set():
            self.sent += 1
            try:
                path = f"/sync/v1/pull?since={since}&wait={self.wait}"
                _, body = http_call(office.url, "GET", path, token)
                since = body["next"]
            except (OSError, urllib.error.URLError):
                time.sleep(0.1)

    def end(self, release: Callable[[], None]) -> None:
        self.stop.set()
        release()  # a change answers every waiting poll at once
        for th in self.threads:
            th.join(40)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50, help="clerk calls per phase")
    calls = parser.parse_args().calls
    dbname, url = scratch_db()
    workdir = Path(tempfile.mkdtemp(prefix="gh-bench-polls-"))
    office = Office(workdir, url)
    clerk = office.token("user", "add", "clerk", "--role", "admin")  # reads every node
    eng = officedb.engine(url)
    with eng.begin() as c:
        one = office_db.add_node(c, "gate-attacked", time.time())
        many = [office_db.add_node(c, f"gate-{i:02d}", time.time()) for i in range(POLLS)]
    eng.dispose()
    cards = iter(range(1, 1000))

    def change() -> None:
        card = f"{next(cards):010d}"
        office.call("POST", "/api/v1/passes", clerk, {"kind": "resident", "card": card,
                                                       "name": "x"})  # fmt: skip

    office.start()
    try:
        change()  # the polls take it first, then wait for the next
        clerk_calls(office, clerk, 5)  # warm: connections, the first query plans
        alone = Stats.of_seconds(clerk_calls(office, clerk, calls))

        results = {}
        for label, tokens, wait in (
            (f"{POLLS} long polls, one node token", [one] * POLLS, 25),
            (f"{POLLS} gates, a long poll each", many, 25),
            # any token holder could always send this: the floor the first phase is on
            (f"{POLLS} loops of pulls, wait=0", [one] * POLLS, 0),
        ):
            pollers = Pollers(office, tokens, wait)
            wait_for(lambda p=pollers: p.sent >= POLLS, 30, "the polls to be sent")
            time.sleep(1)  # let them reach the office and settle into waiting
            results[label] = Stats.of_seconds(clerk_calls(office, clerk, calls))
            pollers.end(change)

        print(f"office_long_polls: a clerk's GET /api/v1/nodes, {calls} calls a phase")
        print(alone.row("alone (baseline)"))
        for label, st in results.items():
            print(st.row(f"with {label}"))
        for label, st in results.items():
            print(f"RATIO clerk p50 with {label} / alone = {st.p50 / alone.p50:.2f} "
                  f"(p95 {st.p95 / alone.p95:.2f})")  # fmt: skip
    finally:
        office.stop()
        drop(dbname)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main_guard(main)
