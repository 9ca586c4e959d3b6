"""Swipe to decision: how long a card read on a serial reader takes to become a decision.

The node's database is the realistic one of ``common.seed_realistic`` (issue 9): 1,000,000
resident passes, 1,000,000 access events, 1,000,000 outbox rows (two thirds acknowledged
and past the 30-day keep horizon: a pruning backlog), 500,000 snapshot rows (~167,000
past retention and still "on disk": a retention backlog; the files are missing but for a
few real ones) and 100,000 alarms (3,000 open and unacknowledged, escalating again and
again at their priority's interval). So whatever clean-up the service runs works through
its backlog while the swipes are timed; the backlog before and after is printed, and so
whether housekeeping ran. The node reads an RDM6300 reader on a pty. For 300 distinct
seeded cards, ~50 ms apart (after 10 uncounted warm-up swipes), it times from writing
the last byte of the 14-byte frame to the pty until the decision arrives at a QoS 1
subscriber on ``gatehouse/<node>/gate/main/decision``.

Baseline, measured in the same run on the same machine and broker: the three things a
decision cannot do without, each bare (each loop also drops its first 10 iterations):
  (a) an SQLite point lookup on the seeded database (``passes.card_key``, indexed),
  (b) a durable commit (small INSERT + COMMIT, WAL, synchronous=FULL) in the node's dir,
  (c) a paho -> Mosquitto -> paho QoS 1 delivery of a ~300-byte JSON message.
Each baseline runs at the swipes' cadence (one every ~50 ms), not back to back: on this
kind of machine an fsync after 50 ms of idleness costs 3-4 times one issued right after
another, so a back-to-back baseline would measure a disk the swipes never see.
It prints p50/p95/p99 of each and RATIO = swipe p99 / (a+b+c p99 sum); target <= 1.5.

Run: .venv/bin/python bench/swipe_latency.py   (a minute or two; needs mosquitto; the
first run builds the database, about a minute more, and caches it: common.SEED_CACHE)
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import sqlite3
import time
from pathlib import Path

from common import (
    NODE_ID,
    REALISTIC,
    Stats,
    Subscriber,
    Workspace,
    backlog,
    backlog_line,
    close_client,
    import_passes,
    main_guard,
    make_cards,
    mqtt_client,
    realistic_cards,
    seed_realistic,
    wait_for,
    workspace,
    write_passes_csv,
)

from drivers.rdm6300 import Rdm6300
from edge.cards import mask_key, parse_card

PASSES = REALISTIC["passes"]
SWIPES = 300
SPACING_S = 0.05
BASELINE_N = 300
WARMUP = 10  # first iterations of each loop, not counted: connections and caches warm up
TIMEOUT_S = 10.0


def baseline_lookup(db_path: Path, cards: list[str]) -> list[float]:
    """(a) The bare point lookup the gate does, on the seeded file opened read-only."""
    keys = [parse_card(c).key for c in cards]
    out = []
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        for key in keys:
            t0 = time.perf_counter()
            rows = conn.execute("SELECT * FROM passes WHERE card_key = ?", (key,)).fetchall()
            out.append(time.perf_counter() - t0)
            time.sleep(max(0.0, SPACING_S - (time.perf_counter() - t0)))
            if len(rows) != 1:
                raise RuntimeError(f"lookup of key {key} found {len(rows)} rows")
    return out


def baseline_commit(directory: Path) -> list[float]:
    """(b) A bare durable commit: one small row, WAL, synchronous=FULL."""
    path = directory / "scratch-commit.db"
    out = []
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, ts REAL, v TEXT)")
        for i in range(WARMUP + BASELINE_N):
            t0 = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (ts, v) VALUES (?, ?)", (time.time(), f"event {i}"))
            conn.execute("COMMIT")
            out.append(time.perf_counter() - t0)
            time.sleep(max(0.0, SPACING_S - (time.perf_counter() - t0)))
    path.unlink()
    return out[WARMUP:]


def baseline_mqtt(port: int) -> list[float]:
    """(c) A bare QoS 1 delivery of a ~300-byte JSON message, publish call to on_message."""
    topic = "bench/baseline/latency"
    sub = Subscriber(port, topic, "lat-sub")
    pub = mqtt_client(port, "lat-pub")
    out = []
    try:
        for i in range(WARMUP + BASELINE_N):
            body = {
                "event_id": f"{i:032x}", "ts": "2024-01-01T08:00:00.000+08:00",
                "gate": "main", "reader": "main-in", "direction": "in", "decision": "grant",
                "reason": "valid_pass", "pass_id": f"{i:016x}", "pass_kind": "resident",
                "holder": "R******* 1****", "card": "****ABCD", "stale": False, "seq": i,
            }  # fmt: skip
            payload = json.dumps(body, separators=(",", ":")).encode()
            t0 = time.perf_counter()
            pub.publish(topic, payload, qos=1)
            got, _topic, data = sub.next(TIMEOUT_S)
            if data != payload:
                raise RuntimeError("baseline MQTT: a message arrived out of order")
            out.append(got - t0)
            time.sleep(max(0.0, SPACING_S - (time.perf_counter() - t0)))
    finally:
        close_client(pub)
        sub.close()
    return out[WARMUP:]


def swipes(
    ws: Workspace, cards: list[str], camera: str | None = None
) -> tuple[list[float], dict[str, int]]:
    """Start the node on a pty reader (and ``camera`` as the gate's camera, if given) and
    time each swipe to its decision (the first WARMUP are not counted)."""
    master, slave = os.openpty()
    ws.callback(lambda: os.close(slave))
    ws.callback(lambda: os.close(master))
    _config, api = ws.configure(
        [{"id": "main-in", "gate": "main", "port": os.ttyname(slave), "protocol": "rdm6300"}]
    )
    if camera is not None:
        with ws.config.open("a") as f:
            f.write(f'[[cameras]]\nid = "cam"\ngate = "main"\nsource = "{camera}"\n')
    sub = Subscriber(ws.broker.port, f"gatehouse/{NODE_ID}/gate/main/decision", "decisions")
    ws.callback(sub.close)
    node = ws.node(api)
    node.start(wait_ready=camera is None)  # a dead camera keeps the node "not ready"
    wait_for(lambda: node.reader("main-in").get("state") == "open", 20, "the pty reader")
    out: list[float] = []
    verdicts: dict[str, int] = {}
    for card in cards:
        frame = Rdm6300.encode(parse_card(card))
        os.write(master, frame[:-1])
        t0 = time.perf_counter()
        os.write(master, frame[-1:])  # the last byte: the reader has the whole frame now
        try:
            got, _topic, data = sub.next(TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(f"no decision for card {card} within {TIMEOUT_S} s") from None
        decision = json.loads(data)
        if decision["card"] != mask_key(parse_card(card).key):
            raise RuntimeError(f"decision for {decision['card']}, expected card {card}")
        out.append(got - t0)
        key = f"{decision['decision']}:{decision['reason']}"
        verdicts[key] = verdicts.get(key, 0) + 1
        time.sleep(max(0.0, SPACING_S - (time.perf_counter() - t0)))
    return out[WARMUP:], verdicts


def swipe_p99_with_camera(camera: str | None, passes: int = 2000) -> Stats:
    """Swipe-to-decision with the gate's camera at ``camera`` (None: no camera)."""
    with workspace("gatehouse-bench-camera-") as ws:
        cards = make_cards(passes)
        ws.configure([])
        import_passes(ws.config, write_passes_csv(ws.dir / "passes.csv", cards))
        return Stats.of_seconds(swipes(ws, cards[: WARMUP + SWIPES], camera)[0])


def ran_or_not(removed: int) -> str:
    return "ran" if removed else "did not run"


def main() -> None:
    rng = random.Random(6300)
    with workspace("gatehouse-bench-latency-") as ws:
        print(f"swipe_latency: realistic database, {SWIPES} swipes {SPACING_S * 1000:.0f} ms apart")
        cards = realistic_cards()
        print(seed_realistic(ws.db_path).line())

        sample = rng.sample(cards, WARMUP + SWIPES + BASELINE_N)
        lookup = Stats.of_seconds(baseline_lookup(ws.db_path, sample[WARMUP + SWIPES :]))
        commit = Stats.of_seconds(baseline_commit(ws.db_path.parent))
        deliver = Stats.of_seconds(baseline_mqtt(ws.broker.port))
        now = time.time()  # one horizon for both counts
        before = backlog(ws.db_path, now)
        started = time.perf_counter()
        swipe_s, verdicts = swipes(ws, sample[: WARMUP + SWIPES])
        after = backlog(ws.db_path, now)  # the node still runs (WAL: reading does not stop it)
        ran = time.perf_counter() - started
        swipe = Stats.of_seconds(swipe_s)

        base = lookup.p99 + commit.p99 + deliver.p99
        print("baseline (same run, same machine and broker):")
        print(lookup.row(f"(a) sqlite point lookup, {PASSES // 1_000_000}M rows"))
        print(commit.row("(b) durable commit (WAL, FULL)"))
        print(deliver.row("(c) paho->mosquitto->paho QoS 1"))
        print(f"  baseline p99 sum (a+b+c): {base:.3f} ms")
        print("gatehouse:")
        print(swipe.row("swipe -> decision (pty, rdm6300)"))
        print(f"  verdicts (warm-up included): {verdicts}")
        print(f"  backlog over the {ran:.1f} s from node start to last swipe: "
              + backlog_line(before, after))  # fmt: skip
        pruned = before["outbox_prunable"] - after["outbox_prunable"]
        swept = before["snapshots_past_retention"] - after["snapshots_past_retention"]
        escalated = after["escalations"] - before["escalations"]
        print(f"  housekeeping during the swipes: outbox pruning {ran_or_not(pruned)} "
              f"({pruned:,} rows), snapshot retention {ran_or_not(swept)} ({swept:,} pictures), "
              f"{escalated:,} escalations")  # fmt: skip
        print(f"RATIO swipe p99 / baseline p99 sum = {swipe.p99:.3f} / {base:.3f} = "
              f"{swipe.p99 / base:.2f} (target <= 1.5)")  # fmt: skip


if __name__ == "__main__":
    main_guard(main)
