"""Many gates long-polling one office process (LISTEN/NOTIFY, docs/sync.md).

A real ``gatehouse office`` on a scratch PostgreSQL database; N simulated gates (default
500), each with its own node token and HTTP client, keep a long poll open on
``/sync/v1/pull`` from one asyncio loop (httpx), as a real gate's pull worker does: an
answer with changes is followed at once by a poll with the new ``since``; an empty one (the
wait ran out) too. Each gate's first wait is drawn from 1..25 s, so that, as with gates
started at different times, their polls do not all end together. Measured in one run, with
no gates polling and with N:

- a clerk's ``GET /api/v1/nodes``, one call after another: p50/p95, and the ratio;
- office process CPU (% of one core, from /proc/<pid>/stat utime+stime) over an idle
  period (``--idle-s``, 30 s): no clerk, no change, the gates only waiting;
- PostgreSQL transactions/s over the same period (pg_stat_database for the bench's
  database: commits, and rollbacks, which is how SQLAlchemy's pool ends a read; its
  pool_pre_ping is a commit of its own at each checkout);
- with N gates: revocation to every gate: from the clerk's revoke call returning to each
  gate's poll answering with that change (0 when the gate's answer came first: the
  notification leaves at commit, before the clerk's answer is sent).

Targets beside the figures: clerk p50 <= 100 ms, revocation p95 <= 2 s, idle CPU <= 10 %.
The gates' clients run in this process, on one core at most, on the same machine as the
office and PostgreSQL: their time to read 500 answers is part of the revocation figure.

Run: .venv/bin/python bench/office_gates.py [--gates N]   (about three minutes; needs
PostgreSQL)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx
import psycopg2
from common import Stats, clerk_calls, drop, main_guard, scratch_db, wait_for

from sync import office as office_db
from sync import officedb
from tests.helpers import Office, http_call

WAIT_S = 25  # the office's LONG_POLL_MAX_S: an idle gate asks again this often
TARGET_CLERK_P50_MS = 100.0
TARGET_REVOKE_P95_MS = 2000.0
TARGET_IDLE_CPU = 10.0  # % of one core
STATS_FLUSH_S = 11.0  # an idle backend reports its counts within 10 s (PostgreSQL 15+)


class Gates:
    """``len(tokens)`` gates, each keeping one long poll open with its own token, on an
    event loop in a thread of its own. ``heard[entity_id]``: when each gate's poll
    answered with a change of that entity (perf_counter)."""

    def __init__(self, url: str, tokens: list[str], since: int) -> None:
        self.heard: dict[str, list[float]] = defaultdict(list)
        self.polls = 0
        self.errors: Counter[str] = Counter()  # why polls failed
        self._url, self._tokens, self._since = url, tokens, since
        self._loop = asyncio.new_event_loop()
        self._stopped = asyncio.Event()
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )
        self._thread.start()

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._gate(t)) for t in self._tokens]
        await self._stopped.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _gate(self, token: str) -> None:
        # a client (a connection pool) each, as each gate is a machine of its own; one pool
        # of 500 connections spends seconds finding a connection for each request
        async with httpx.AsyncClient(
            base_url=self._url, timeout=httpx.Timeout(WAIT_S + 20, connect=20)
        ) as client:
            await self._poll(client, token)

    async def _poll(self, client: httpx.AsyncClient, token: str) -> None:
        since = self._since  # the gate's cursor: caught up when the bench starts it
        auth = {"Authorization": f"Bearer {token}"}
        # gates started at other times: their polls end spread over the wait, not together
        wait = random.uniform(1, WAIT_S)
        while True:
            self.polls += 1
            try:
                r = await client.get("/sync/v1/pull", params={"since": since, "wait": wait},
                                     headers=auth)  # fmt: skip
                r.raise_for_status()
                body = r.json()
            except (httpx.HTTPError, ValueError) as e:
                self.errors[type(e).__name__] += 1
                await asyncio.sleep(1)  # as a gate backs off
                continue
            now = time.perf_counter()
            for c in body["changes"]:
                self.heard[c["entity_id"]].append(now)  # (only this thread appends)
            since, wait = body["next"], WAIT_S

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(30)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # fields 14, 15


def xacts(dbname: str) -> tuple[int, int]:
    """(commits, rollbacks) of the bench's database so far."""
    conn = psycopg2.connect(dbname=dbname)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT xact_commit, xact_rollback FROM pg_stat_database "
                        "WHERE datname = %s", (dbname,))  # fmt: skip
            commits, rollbacks = cur.fetchone()
            return int(commits), int(rollbacks)
    finally:
        conn.close()


def idle(pid: int, dbname: str, seconds: float) -> tuple[float, float, float]:
    """(CPU % of one core, commits/s, rollbacks/s) over ``seconds`` left alone."""
    time.sleep(STATS_FLUSH_S)  # what came before is in pg_stat_database, not in the period
    cpu0, (c0, r0), t0 = cpu_seconds(pid), xacts(dbname), time.monotonic()
    time.sleep(seconds)
    cpu1, (c1, r1), t1 = cpu_seconds(pid), xacts(dbname), time.monotonic()
    took = t1 - t0
    return 100 * (cpu1 - cpu0) / took, (c1 - c0) / took, (r1 - r0) / took


def polling(office: Office, clerk: str) -> int:
    status, nodes = http_call(office.url, "GET", "/api/v1/nodes", clerk)
    assert status == 200
    return sum(n["polling"] for n in nodes["items"])


def raise_open_files(want: int) -> None:
    """Each gate is a socket here (and one at the office, which raises its own limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gates", type=int, default=500, help="simulated gates")
    parser.add_argument("--calls", type=int, default=50, help="clerk calls a phase")
    parser.add_argument("--revocations", type=int, default=10, help="passes revoked")
    parser.add_argument("--idle-s", type=float, default=30.0, help="each idle period")
    args = parser.parse_args()
    raise_open_files(args.gates * 2 + 256)

    dbname, url = scratch_db()
    workdir = Path(tempfile.mkdtemp(prefix="gh-bench-gates-"))
    office = Office(workdir, url)
    gates: Gates | None = None
    try:
        clerk = office.token("user", "add", "clerk", "--role", "admin")  # reads every node
        eng = officedb.engine(url)
        with eng.begin() as c:  # as `office node add` makes each, without a process each
            tokens = [office_db.add_node(c, f"gate-{i:04d}", time.time())
                      for i in range(args.gates)]  # fmt: skip
        eng.dispose()
        office.start()
        assert office.proc is not None
        pid = office.proc.pid

        passes = []
        for i in range(args.revocations):  # issued before the gates start: their cursor
            body = {"kind": "resident", "card": f"{i + 1:010d}", "name": "x"}
            status, p = office.call("POST", "/api/v1/passes", clerk, body)
            assert status == 201, p
            passes.append(p["id"])
        clerk_calls(office, clerk, 5)  # warm: connections, the first query plans

        alone = Stats.of_seconds(clerk_calls(office, clerk, args.calls))
        cpu0, commits0, rollbacks0 = idle(pid, dbname, args.idle_s)

        gates = Gates(office.url, tokens, since=args.revocations)
        wait_for(lambda: polling(office, clerk) == args.gates, 120, "every gate's poll waiting")
        cpu_n, commits_n, rollbacks_n = idle(pid, dbname, args.idle_s)
        with_gates = Stats.of_seconds(clerk_calls(office, clerk, args.calls))

        latencies: list[float] = []
        revokes: list[float] = []
        first = 0  # gates answered before the clerk's revoke call returned
        for pass_id in passes:
            wait_for(lambda: polling(office, clerk) == args.gates, 60, "every gate waiting")
            t0 = time.perf_counter()
            status, _ = office.call("POST", f"/api/v1/passes/{pass_id}/revoke", clerk,
                                    {"reason": "bench"})  # fmt: skip
            returned = time.perf_counter()
            assert status == 200
            revokes.append(returned - t0)
            heard = gates.heard[pass_id]
            wait_for(lambda h=heard: len(h) >= args.gates, 60, "the revocation at every gate")
            first += sum(at < returned for at in heard)
            latencies += [max(0.0, at - returned) for at in heard]
        revoke_to_gates = Stats.of_seconds(latencies)
        revoke_call = Stats.of_seconds(revokes)
        errors = dict(gates.errors)
    finally:
        if gates is not None:
            gates.stop()
        with contextlib.suppress(Exception):
            office.stop()
        drop(dbname)
        shutil.rmtree(workdir, ignore_errors=True)

    n = args.gates
    print(f"office_gates: {n} gates long-polling one office process (wait={WAIT_S} s), "
          f"{args.calls} clerk calls a phase, {args.revocations} revocations, "
          f"idle periods of {args.idle_s:.0f} s, {os.cpu_count()} CPUs")  # fmt: skip
    print("clerk GET /api/v1/nodes")
    print(alone.row("0 gates polling"))
    print(with_gates.row(f"{n} gates polling"))
    print(f"  RATIO p50 {with_gates.p50 / alone.p50:.2f}  p95 {with_gates.p95 / alone.p95:.2f}"
          f"   target p50 <= {TARGET_CLERK_P50_MS:.0f} ms: "
          f"{verdict(with_gates.p50 <= TARGET_CLERK_P50_MS)}")  # fmt: skip
    print(f"revocation to every gate ({n} gates x {args.revocations}; {first} answers came "
          f"before the clerk's)")  # fmt: skip
    print(revoke_to_gates.row("revoke returned -> gate answered"))
    print(revoke_call.row("the clerk's revoke call itself"))
    print(
        f"  target p95 <= {TARGET_REVOKE_P95_MS:.0f} ms: "
        f"{verdict(revoke_to_gates.p95 <= TARGET_REVOKE_P95_MS)}"
    )
    print(f"idle, {args.idle_s:.0f} s        {'0 gates':>12} {f'{n} gates':>12}")
    print(f"  office CPU % of a core {cpu0:12.1f} {cpu_n:12.1f}   target <= "
          f"{TARGET_IDLE_CPU:.0f} %: {verdict(cpu_n <= TARGET_IDLE_CPU)}")  # fmt: skip
    print(f"  PostgreSQL commits/s   {commits0:12.1f} {commits_n:12.1f}")
    print(f"  PostgreSQL rollbacks/s {rollbacks0:12.1f} {rollbacks_n:12.1f}   (reads: "
          "the pool ends each with ROLLBACK)")  # fmt: skip
    print(f"gate polls sent: {gates.polls if gates else 0}, failed: {errors or 0}")


if __name__ == "__main__":
    main_guard(main)
