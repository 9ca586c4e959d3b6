"""Alarm flood: 10,000 alarm-input messages from 50 sources within 10 s.

A node with no readers gets 10,000 QoS 1 messages on ``alarm-input/<source>`` from 50
sources, each alternating ``active`` / ``normal`` (every source chatters), paced evenly
over 10 s by a paho publisher. Meanwhile a control-room client polls ``GET /api/v1/alarms``
as fast as it can. Afterwards it counts what was recorded: every message must leave one
row in ``alarm_log`` (raised / activated / normal) and the 50 sources must have folded
into 50 alarms.

Baseline, same run, same node: the alarm-list route's latency when idle (after the flood,
with the same 50 alarms in the queue); RATIO = p99 during the flood / p99 idle.

Run: .venv/bin/python bench/alarm_flood.py   (about 30 s; needs mosquitto)
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.request

from common import Stats, close_client, main_guard, mqtt_client, wait_for, workspace

from tests.helpers import cli

SOURCES = 50
MESSAGES = 10_000
SPREAD_S = 10.0
IDLE_N = 300


def get_alarms(port: int, token: str) -> float:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/alarms", headers={"Authorization": f"Bearer {token}"}
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()
    return time.perf_counter() - t0


def recorded(db: sqlite3.Connection) -> int:
    return int(
        db.execute(
            "SELECT count(*) FROM alarm_log WHERE action IN ('raised', 'activated', 'normal')"
        ).fetchone()[0]
    )


def main() -> None:
    with workspace("gh-bench-flood-") as ws:
        config, api = ws.configure([])
        token = cli(config, "user", "add", "bench", "--role", "control").stdout.strip()
        node = ws.node(api).start(wait_ready=True)
        pub = mqtt_client(ws.broker.port, "flood-pub")
        ws.callback(lambda: close_client(pub))

        during: list[float] = []
        flooding = threading.Event()
        flooding.set()

        def poll() -> None:
            while flooding.is_set():
                during.append(get_alarms(api, token))

        poller = threading.Thread(target=poll)
        t0 = time.perf_counter()
        poller.start()
        infos = []
        for i in range(MESSAGES):
            source, round_ = i % SOURCES, i // SOURCES
            body = {"type": "door_held", "state": "active" if round_ % 2 == 0 else "normal"}
            topic = f"gatehouse/gate-test/alarm-input/door-{source:02d}"
            infos.append(pub.publish(topic, json.dumps(body), qos=1))
            ahead = t0 + (i + 1) * SPREAD_S / MESSAGES - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)
        published = time.perf_counter() - t0
        for info in infos:
            info.wait_for_publish(30)

        db = sqlite3.connect(ws.db_path)
        wait_for(lambda: recorded(db) >= MESSAGES, 60, "every input to be recorded")
        all_in = time.perf_counter() - t0
        flooding.clear()
        poller.join()

        idle = [get_alarms(api, token) for _ in range(IDLE_N)]
        rows = recorded(db)
        alarms = db.execute("SELECT count(*), sum(count) FROM alarms").fetchone()
        counts = node.ready()[1]["counts"]
        idle_s, flood_s = Stats.of_seconds(idle), Stats.of_seconds(during)

        print(f"alarm_flood: {MESSAGES:,} alarm inputs from {SOURCES} sources over {SPREAD_S:g} s")
        print(f"  published in {published:.1f} s; all recorded {all_in:.1f} s after the first")
        print(f"  alarm_log rows {rows:,} (lost {MESSAGES - rows:,}); inputs taken "
              f"{counts.get('alarm_input', 0):,}")  # fmt: skip
        print(f"  alarms {alarms[0]} (one per source: chatter folded), activations {alarms[1]:,}")
        print(flood_s.row("GET /api/v1/alarms during the flood"))
        print(idle_s.row("GET /api/v1/alarms idle (baseline)"))
        print(f"RATIO list p99 flood / idle = {flood_s.p99:.2f} / {idle_s.p99:.2f} ms "
              f"= {flood_s.p99 / idle_s.p99:.2f}")  # fmt: skip


if __name__ == "__main__":
    main_guard(main)
