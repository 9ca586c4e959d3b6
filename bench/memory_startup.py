"""Start-up time and memory of a node with a realistic database.

The node's database is the realistic one of ``common.seed_realistic`` (issue 9): 1,000,000
resident passes, 1,000,000 access events, 1,000,000 outbox rows (two thirds acknowledged
and past the 30-day keep horizon: a pruning backlog), 500,000 snapshot rows (~167,000 past
retention: a retention backlog) and 100,000 alarms (3,000 open and unacknowledged), about
1 GB; it is copied afresh before each start, so every start meets the same backlog. It
starts ``gatehouse run`` (one MQTT reader, the broker configured) and measures:
  (a) from Popen to ``/health/ready`` answering 200 (target <= 2 s); three starts, the
      median counts;
  (b) the node's RSS (/proc/PID/status VmRSS) once ready, and after 200 MQTT swipes of
      distinct seeded cards have all been decided (target <= 200 MB); VmHWM, the peak,
      is printed beside it.
Baseline, same run: a bare ``python -c "import fastapi, sqlmodel, paho.mqtt.client,
serial, uvicorn"`` process, from Popen until it exits (median of three) and its VmRSS as
it ends (it prints its own /proc/self/status last).
RATIOs: ready time / baseline time, node RSS / baseline RSS.

Run: .venv/bin/python bench/memory_startup.py   (a minute or two; needs mosquitto; the
first run builds the database, about a minute more, and caches it: common.SEED_CACHE)
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
import time

from common import (
    GATEHOUSE,
    NODE_ID,
    Node,
    Subscriber,
    backlog,
    backlog_line,
    close_client,
    main_guard,
    mqtt_client,
    realistic_cards,
    rss_kib,
    seed_realistic,
    workspace,
)

STARTS = 3
SWIPES = 200
READY_TIMEOUT_S = 30.0
BARE_IMPORTS = "import fastapi, sqlmodel, paho.mqtt.client, serial, uvicorn"
# the child reports its own memory as it ends: wait4's ru_maxrss would count the pages it
# shared with this (large) process between fork and exec
REPORT = "; print(open('/proc/self/status').read())"


def bare_python() -> tuple[float, int]:
    """(seconds from Popen to exit, RSS in KiB as it ended) of the bare-imports process."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", BARE_IMPORTS + REPORT], capture_output=True, text=True, timeout=60
    )
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"bare python exited {proc.returncode}: {proc.stderr}")
    for line in proc.stdout.splitlines():
        if line.startswith("VmRSS:"):
            return took, int(line.split()[1])
    raise RuntimeError("bare python did not report VmRSS")


def start_until_ready(node: Node) -> tuple[float, float]:
    """Popen ``gatehouse run``; (seconds to the first HTTP answer, seconds to ready 200)."""
    started = time.perf_counter()
    with node.log.open("a") as log:  # the child keeps its own copy of the descriptor
        node.proc = subprocess.Popen(
            [GATEHOUSE, "--config", str(node.config), "run"], stdout=log, stderr=subprocess.STDOUT
        )
    answered = None
    while time.perf_counter() - started < READY_TIMEOUT_S:
        if node.proc.poll() is not None:
            raise RuntimeError(f"gatehouse run exited {node.proc.returncode}; see {node.log}")
        got = node.get("/health/ready")
        if got is not None:
            answered = answered or time.perf_counter() - started
            if got[0] == 200:
                return answered, time.perf_counter() - started
        time.sleep(0.005)
    raise RuntimeError(f"gatehouse not ready within {READY_TIMEOUT_S} s; see {node.log}")


def swipe(port: int, cards: list[str]) -> int:
    """Publish one QoS 1 swipe per card; the number of decisions that came back."""
    base = f"gatehouse/{NODE_ID}/"
    sub = Subscriber(port, base + "gate/+/decision", "mem-decisions")
    pub = mqtt_client(port, "mem-swipes")
    try:
        for card in cards:
            pub.publish(base + "reader/net-in/swipe", json.dumps({"card": card}), qos=1)
        deadline = time.monotonic() + 30
        while sub.count < len(cards) and time.monotonic() < deadline:
            time.sleep(0.02)
        return sub.count
    finally:
        close_client(pub)
        sub.close()


def mb(kib: float) -> str:
    return f"{kib / 1024:.1f} MB"


def main() -> None:
    rng = random.Random(1000)
    with workspace("gatehouse-bench-memory-") as ws:
        print(f"memory_startup: realistic database, {STARTS} starts, {SWIPES} MQTT swipes")
        cards = realistic_cards()
        _config, api = ws.configure([{"id": "net-in", "gate": "main", "transport": "mqtt"}])
        print(seed_realistic(ws.db_path).line())

        bare = [bare_python() for _ in range(STARTS)]
        bare_s = statistics.median(t for t, _ in bare)
        bare_rss = statistics.median(r for _, r in bare)

        answers, readies = [], []
        ready_rss = after_rss = peak_rss = 0
        decided = 0
        before = after = {}
        for i in range(STARTS):
            if i:  # the same database, backlog and all, for every start
                seed_realistic(ws.db_path)
            now = time.time()  # one horizon for both counts
            before = backlog(ws.db_path, now)
            node = ws.node(api)
            answered, ready = start_until_ready(node)
            answers.append(answered)
            readies.append(ready)
            assert node.proc is not None
            pid = node.proc.pid
            ready_rss = rss_kib(pid)
            if i == STARTS - 1:
                decided = swipe(ws.broker.port, rng.sample(cards, SWIPES))
                after_rss, peak_rss = rss_kib(pid), rss_kib(pid, "VmHWM")
            node.stop()
            after = backlog(ws.db_path, now)

        ready_s = statistics.median(readies)
        print("baseline (same run): python -c '" + BARE_IMPORTS + "'")
        print("  start to exit: " + ", ".join(f"{t:.3f}" for t, _ in bare) + " s; "
              f"median {bare_s:.3f} s; RSS {mb(bare_rss)}")  # fmt: skip
        print("gatehouse run:")
        print("  start to first HTTP answer: " + ", ".join(f"{t:.3f}" for t in answers) + " s")
        print("  start to /health/ready 200: " + ", ".join(f"{t:.3f}" for t in readies) + " s; "
              f"median {ready_s:.3f} s (target <= 2 s)")  # fmt: skip
        print(f"  RSS when ready: {mb(ready_rss)}")
        print(f"  RSS after {decided}/{SWIPES} swipes decided: {mb(after_rss)} "
              f"(peak VmHWM {mb(peak_rss)}; target <= 200 MB)")  # fmt: skip
        print("  backlog, last start to stop: " + backlog_line(before, after))
        print(f"RATIO ready time / bare start = {ready_s:.3f} / {bare_s:.3f} = "
              f"{ready_s / bare_s:.2f}")  # fmt: skip
        print(f"RATIO RSS after swipes / bare RSS = {mb(after_rss)} / {mb(bare_rss)} = "
              f"{after_rss / bare_rss:.2f}")  # fmt: skip


if __name__ == "__main__":
    main_guard(main)
