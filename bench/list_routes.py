"""How long the gate's list routes take on a database of a year's access events (1,000,000),
as a guard or the control room pages through them (target: p99 <= 50 ms per route).

One node (``gatehouse run``, no broker, no readers) on a database at the newest schema,
filled directly with sqlite3 beforehand: 1,000,000 access events spread over the year
ending now at 4 gates, 20,000 resident passes (~30 per unit), 2,000 alarms of which 30
are open. Each route is asked 10 times to warm up, then 200 times one after another over
one persistent HTTP connection (httpx, an admin's bearer token), each request timed from
sending to the whole body read. Every answer must be 200, and the filtered lists must
hold items, so an error is never what is timed. Routes: the newest page of events; one
gate's events on one day 200 days ago; every gate's events on one day 300 days ago, and
that list's second page (its ``next`` as ``cursor``); the passes of one unit; the open
alarm queue; one open alarm with its context (the events at its gate before it).

Then the same again with a new connection per request (``Connection: close``): a figure
of the route's own cost that no delay of a kept-alive connection's packets is part of
(the two tables differ by such a delay, if the node has one; the target is judged on the
first, what a browser's kept-alive connection sees).

Baseline, same run, same node and kind of connection: ``GET /health/live`` timed the same
way, the cost of any request through the node's HTTP stack. RATIO: route p99 / baseline
p99.

Run: .venv/bin/python bench/list_routes.py   (one to two minutes; no broker, no network)
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
from common import GATEHOUSE, Node, Stats, free_port, main_guard, make_cards, write_config

N_EVENTS = 1_000_000
N_PASSES = 20_000
N_ALARMS = 2_000
N_OPEN_ALARMS = 30
WARMUP = 10
REQUESTS = 200
TARGET_P99_MS = 50.0
DAY_S = 86400.0
YEAR_S = 365 * DAY_S
NAMED_S = 170 * DAY_S  # events keep the holder's name this long (housekeeping: 180 days)
TZ = ZoneInfo("Asia/Shanghai")  # the node's zone (tests.helpers.write_config)
GATES = ("main", "east", "west", "north")  # "main" and "side" come from write_config
UNIT = "1-2-301"  # the unit whose passes are listed
# 7 buildings x 2 entrances x 24 floors x 2 flats: 672 units, ~30 passes each
UNITS = [f"{b}-{e}-{f}{r:02d}" for b in range(1, 8) for e in (1, 2) for f in range(1, 25)
         for r in (1, 2)]  # fmt: skip
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
DENY_REASONS = ("unknown_credential", "expired", "revoked", "outside_hours", "wrong_gate")
# (type, its default priority); none the node watches itself (reader_silent, camera_*):
# it closes those of devices not configured when it starts
ALARM_TYPES = (("door_held", 3), ("door_forced", 2), ("tamper", 2), ("repeated_denial", 3),
               ("intrusion", 2), ("repair", 3), ("complaint", 3))  # fmt: skip


# -- the database -------------------------------------------------------------------------


def pass_rows(now: float, rng: random.Random) -> list[tuple[Any, ...]]:
    """(id, card_key, card_hex, name, unit, valid_from, issued_at) of each pass, with
    distinct cards (common.make_cards: 'C0' and the 8 hex digits of the key)."""
    rows = []
    for j, card in enumerate(make_cards(N_PASSES)):
        issued = now - 2 * YEAR_S + j * 60.0
        name = SURNAMES[rng.randrange(len(SURNAMES))] + "".join(
            rng.choice(GIVEN) for _ in range(rng.randint(1, 2))
        )
        rows.append((f"{rng.getrandbits(64):016x}", int(card[2:], 16), card, name,
                     UNITS[j % len(UNITS)], issued, issued))  # fmt: skip
    return rows


def event_rows(
    now: float, rng: random.Random, passes: list[tuple[Any, ...]]
) -> Iterator[tuple[Any, ...]]:
    """The access events, oldest first (ts ascending with id), as the gate writes them for
    a reader on MQTT: one in 20 denied; the holder's name kept on the recent ones only."""
    start, step = now - YEAR_S, YEAR_S / N_EVENTS
    named_from = now - NAMED_S
    for i in range(N_EVENTS):
        ts = start + (i + 0.5) * step
        gate = GATES[rng.randrange(4)]
        direction = "in" if rng.random() < 0.5 else "out"
        p = passes[rng.randrange(N_PASSES)]
        if rng.random() < 0.05:
            reason = DENY_REASONS[i % len(DENY_REASONS)]
            decision = "deny"
        else:
            reason, decision = "ok", "grant"
        known = reason != "unknown_credential"
        key = p[1] if known else rng.getrandbits(32)
        yield (i + 1, f"{rng.getrandbits(128):032x}", ts, gate, f"{gate}-{direction}",
               direction, decision, reason, p[0] if known else None,
               "resident" if known else None, key, f"C{0 if known else 1}{key:08X}",
               p[3] if known and ts >= named_from else None, 3 + i % 40)  # fmt: skip


def alarm_rows(now: float, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    """Closed alarms over the year (acknowledged, resolved, closed), the newest
    N_OPEN_ALARMS of them open: new, unacknowledged, at gate "east"."""
    start, step = now - YEAR_S, YEAR_S / N_ALARMS
    for a in range(N_ALARMS):
        kind, priority = ALARM_TYPES[a % len(ALARM_TYPES)]
        raised = start + (a + 0.5) * step + rng.uniform(-step / 4, step / 4)
        if a >= N_ALARMS - N_OPEN_ALARMS:
            state, gate = "new", "east"
            acked = resolved = closed = None
            acked_by = resolution = None
        else:
            state, gate = "closed", GATES[a % 4] if a % 3 else None
            acked, resolved, closed = raised + 25, raised + 600, raised + 660
            acked_by, resolution = "bench", "false_device"
        yield (a + 1, f"{rng.getrandbits(128):032x}", kind, priority, f"alarm-input:{a % 40}",
               f"{gate or 'block'} gate", gate, state == "new", raised, raised + 3,
               None if state == "new" else raised + 60, acked, acked_by, state, resolution,
               acked_by, resolved, closed)  # fmt: skip


def fill(db_path: Path, now: float) -> float:
    """Fill the migrated database at ``db_path`` in one transaction; the seconds taken."""
    started = time.perf_counter()
    rng = random.Random(20240501)
    passes = pass_rows(now, rng)
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous=OFF")  # this connection only: a failed fill is thrown away
        conn.execute("PRAGMA cache_size=-262144")  # 256 MB: the event_id index is random
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO passes (id, kind, card_key, card_hex, name, unit, valid_from, status, "
            "issued_at, updated_at, version, issued_by) "
            "VALUES (?, 'resident', ?, ?, ?, ?, ?, 'active', ?, ?, 1, 'bench')",
            ((*p, p[-1]) for p in passes),
        )
        conn.executemany(
            "INSERT INTO access_events (id, event_id, ts, gate, reader, direction, decision, "
            "reason, pass_id, pass_kind, card_key, card_hex, holder, source, read_age_ms, stale) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'mqtt', ?, 0)",
            event_rows(now, rng, passes),
        )
        conn.executemany(
            "INSERT INTO alarms (id, uid, type, priority, source, location, gate, active, count, "
            "raised_at, last_active_at, cleared_at, acked_at, acked_by, state, resolution, "
            "resolved_by, resolved_at, closed_at, escalation_level, checklist) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '[]')",
            alarm_rows(now, rng),
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for table, want in (("access_events", N_EVENTS), ("passes", N_PASSES),
                            ("alarms", N_ALARMS)):  # fmt: skip
            got = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if got != want:
                raise RuntimeError(f"filled {table}: {got} rows, expected {want}")
    return time.perf_counter() - started


def quiet_alarms(db_path: Path, now: float) -> None:
    """The open alarms last escalated now: none falls due while the routes are timed (the
    writes would be a cost of their own beside the reads)."""
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("UPDATE alarms SET escalated_at = ? WHERE state = 'new'", (now,))


# -- the routes ---------------------------------------------------------------------------


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, TZ).isoformat(timespec="seconds")


def day(days_ago: int, now: float, **more: str) -> tuple[str, float, float]:
    """The query of one day's events ``days_ago`` days back (``+`` encoded as %2B), and
    that day's bounds."""
    since, until = now - days_ago * DAY_S, now - (days_ago - 1) * DAY_S
    return urlencode({**more, "since": iso(since), "until": iso(until)}), since, until


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def within(items: list[dict[str, Any]], since: float, until: float, url: str) -> None:
    """The events answered for ``url`` are all of its day (whole seconds: the bounds sent)."""
    assert items, f"{url}: no events"
    bad = [e["ts"] for e in items if not int(since) <= seconds(e["ts"]) < int(until)]
    assert not bad, f"{url}: events outside the day asked for: {bad[:3]}"


def client(api: int, token: str, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=f"http://127.0.0.1:{api}",
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        timeout=30,
    )


def get(client: httpx.Client, url: str) -> Any:
    r = client.get(url)
    if r.status_code != 200:
        raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:300]}")
    return r.json()


def timed(client: httpx.Client, url: str) -> Stats:
    """WARMUP requests, then REQUESTS timed ones, one after another."""
    for _ in range(WARMUP):
        get(client, url)
    took = []
    for _ in range(REQUESTS):
        began = time.perf_counter()
        get(client, url)
        took.append(time.perf_counter() - began)
    return Stats.of_seconds(took)


def routes(client: httpx.Client, now: float) -> list[tuple[str, str, int]]:
    """(label, URL, items in its answer) of each route, each answer checked once."""
    query, since, until = day(200, now, gate="east")
    east = f"/api/v1/events?{query}"
    items = get(client, east)["items"]
    within(items, since, until, east)
    assert {e["gate"] for e in items} == {"east"}, f"{east}: events of other gates"
    query, since, until = day(300, now)
    old_day = f"/api/v1/events?{query}"
    first = get(client, old_day)
    within(first["items"], since, until, old_day)
    assert first["next"], f"{old_day}: no second page"
    second = f"{old_day}&cursor={first['next']}"
    page2 = get(client, second)["items"]
    within(page2, since, until, second)
    assert not {e["id"] for e in page2} & {e["id"] for e in first["items"]}, "pages overlap"
    assert seconds(page2[0]["ts"]) <= seconds(first["items"][-1]["ts"]), "page 2 is not older"
    passes = f"/api/v1/passes?{urlencode({'unit': UNIT})}"
    assert {p["unit"] for p in get(client, passes)["items"]} == {UNIT}, f"{passes}: other units"
    queue = get(client, "/api/v1/alarms")["items"]
    assert len(queue) == N_OPEN_ALARMS, f"open alarms: {len(queue)}, expected {N_OPEN_ALARMS}"
    # an open alarm with events in its context (~2 at its gate in the 5 minutes before)
    context = {a["id"]: get(client, f"/api/v1/alarms/{a['id']}")["context"] for a in queue}
    alarm_id = next((k for k, v in context.items() if v), None)
    assert alarm_id is not None, "no open alarm has events in its context"
    assert {e["gate"] for e in context[alarm_id]} == {"east"}, "context of other gates"
    out = []
    for label, url, key in (
        ("events, newest page", "/api/v1/events", "items"),
        ("events, gate east, a day 200 d ago", east, "items"),
        ("events, a day 300 d ago", old_day, "items"),
        ("  its second page (cursor)", second, "items"),
        (f"passes of unit {UNIT}", passes, "items"),
        ("alarms, the open queue", "/api/v1/alarms", "items"),
        ("one open alarm (with context)", f"/api/v1/alarms/{alarm_id}", "context"),
    ):
        got = get(client, url)[key]
        assert got, f"{url}: no {key}"
        out.append((label, url, len(got)))
    return out


# the events list's query before the (gate, ts) index and the time order (issue 14): the
# same filters, newest first by id, which sorts every event of the range
BEFORE_SQL = (
    "SELECT e.* FROM access_events e LEFT JOIN snapshots s ON s.id = e.snapshot_id "
    "WHERE e.ts >= ? AND e.ts < ? ORDER BY e.id DESC LIMIT 51"
)


def query_before_and_now(db_path: Path, now: float) -> tuple[Stats, Stats]:
    """One day's events 300 days back and a whole year's, by the query as it was and as
    it is (edge.event_reads), in this process on the same database: 20 runs each."""
    from edge import db, event_reads

    conn = db.connect(db_path)
    ranges = [(now - 300 * DAY_S, now - 299 * DAY_S), (now - YEAR_S, now)]
    before, after = [], []
    try:
        for _ in range(20):
            for since, until in ranges:
                began = time.perf_counter()
                conn.execute(BEFORE_SQL, (since, until)).fetchall()
                before.append(time.perf_counter() - began)
                began = time.perf_counter()
                event_reads.list_events(conn, 51, since=since, until=until)
                after.append(time.perf_counter() - began)
    finally:
        conn.close()
    return Stats.of_seconds(before), Stats.of_seconds(after)


def add_admin(config: Path) -> str:
    proc = subprocess.run(
        [GATEHOUSE, "--config", str(config), "user", "add", "bench", "--role", "admin"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"gatehouse user add failed: {proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-lists-") as tmp:
        api = free_port()
        config = write_config(Path(tmp) / "gatehouse.toml", broker_port=None, readers=[],
                              api_port=api)  # fmt: skip
        with config.open("a") as f:  # the gates write_config does not declare
            f.write("".join(f'[[gates]]\nid = "{g}"\n' for g in GATES if g != "main"))
        db_path = Path(tmp) / "var" / "edge.db"
        # a database at the newest schema, as the CLI makes it
        subprocess.run([GATEHOUSE, "--config", str(config), "pass", "list"], check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        now = time.time()
        fill_s = fill(db_path, now)
        token = add_admin(config)
        quiet_alarms(db_path, time.time())
        size_mb = db_path.stat().st_size / 2**20
        print(f"list_routes: {N_EVENTS:,} access events over 365 days at {len(GATES)} gates, "
              f"{N_PASSES:,} passes, {N_ALARMS:,} alarms ({N_OPEN_ALARMS} open); "
              f"filled in {fill_s:.1f} s, {size_mb:,.0f} MB")  # fmt: skip
        node = Node(config, api)
        try:
            node.start(wait_ready=True)  # its start-up work done (the alarms it takes up)
            keep, fresh = client(api, token), client(api, token, {"Connection": "close"})
            with keep, fresh:
                urls = routes(keep, now)
                base = timed(keep, "/health/live")
                measured = [(label, items, timed(keep, url)) for label, url, items in urls]
                fresh_base = timed(fresh, "/health/live")
                fresh_measured = [timed(fresh, url) for _label, url, _items in urls]
        finally:
            node.stop()
        print(f"  {WARMUP} warm-up then {REQUESTS} requests per route, one at a time")
        print(f"  {'one keep-alive connection':<36} {'items':>5} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'RATIO':>7}")  # fmt: skip
        print(f"  {'/health/live (baseline)':<36} {'':>5} {base.p50:8.2f} {base.p99:8.2f}")
        for label, items, s in measured:
            verdict = "meets target" if s.p99 <= TARGET_P99_MS else "MISSES target"
            ratio = s.p99 / base.p99
            print(f"  {label:<36} {items:>5} {s.p50:8.2f} {s.p99:8.2f} {ratio:7.1f}   "
                  f"p99 <= {TARGET_P99_MS:.0f} ms: {verdict}")  # fmt: skip
        print(f"  {'a new connection per request':<36} {'':>5} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'RATIO':>7}")  # fmt: skip
        print(f"  {'/health/live (baseline)':<36} {'':>5} {fresh_base.p50:8.2f} "
              f"{fresh_base.p99:8.2f}")  # fmt: skip
        for (label, _items, _s), s in zip(measured, fresh_measured, strict=True):
            print(f"  {label:<36} {'':>5} {s.p50:8.2f} {s.p99:8.2f} "
                  f"{s.p99 / fresh_base.p99:7.1f}")  # fmt: skip
        print("RATIO: route p99 / baseline p99 (same run, node and kind of connection); the "
              "target is judged on the keep-alive connection, as a browser keeps one")  # fmt: skip
        was, now_is = query_before_and_now(db_path, now)
        print("  the events query alone, a day 300 d ago and the whole year, in process:")
        print(f"  {'as it was (ORDER BY id, sorts the range)':<42} {was.p50:8.2f} {was.p99:8.2f}")
        print(f"  {'as it is (edge.event_reads, on an index)':<42} {now_is.p50:8.2f} "
              f"{now_is.p99:8.2f}   RATIO {now_is.p99 / was.p99:.3f}")  # fmt: skip


if __name__ == "__main__":
    main_guard(main)
