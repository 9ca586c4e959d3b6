"""MQTT ingest: how many swipes per second a node turns into decisions, and whether any is lost.

A node with one MQTT reader (``net-in``) and 20,000 imported resident passes gets 20,000
swipes, one per card (so the 1.5 s debounce never applies), published at full speed at
QoS 1 by ``mosquitto_pub -l -q 1`` (faster here than a paho publisher) on
``gatehouse/<node>/reader/net-in/swipe``. A QoS 1 subscriber on
``gatehouse/<node>/gate/+/decision`` counts the decisions; after the run the node's
``access_events`` rows are counted too. Both should be 20,000; ``lost`` is the shortfall.
It prints decisions/s sustained, first to last decision (target >= 5,000/s).

Baseline, same run, same broker: the same 20,000 messages published the same way to a bare
paho subscriber on another topic (no gatehouse), its msgs/s; RATIO = gatehouse / bare.

Run: .venv/bin/python bench/mqtt_ingest.py   (under a minute when nothing stalls; needs
mosquitto and mosquitto_pub)
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

from common import (
    NODE_ID,
    Subscriber,
    count_rows,
    import_passes,
    main_guard,
    make_cards,
    workspace,
    write_passes_csv,
)

SWIPES = 20_000
STALL_S = 15.0  # no new message for this long: the rest is not coming
CAP_S = 120.0  # and never wait longer than this for one run


def publish_lines(port: int, topic: str, payloads: Path) -> float:
    """Publish every line of ``payloads`` as one QoS 1 message; seconds mosquitto_pub took."""
    exe = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    cmd = [exe, "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-q", "1", "-l", "-M", "1000"]
    started = time.perf_counter()
    with payloads.open("rb") as f:
        subprocess.run(cmd, stdin=f, check=True, timeout=CAP_S)
    return time.perf_counter() - started


def settle(sub: Subscriber, expected: int) -> None:
    """Wait until ``expected`` messages arrived, or none for STALL_S, or CAP_S in all."""
    started = time.monotonic()
    seen, moved = sub.count, time.monotonic()
    while sub.count < expected and time.monotonic() - started < CAP_S:
        time.sleep(0.05)
        if sub.count != seen:
            seen, moved = sub.count, time.monotonic()
        elif time.monotonic() - moved > STALL_S:
            break


def rate(sub: Subscriber) -> tuple[float, float]:
    """(messages per second from first to last arrival, that span in seconds)."""
    if sub.first is None or sub.last is None or sub.count < 2:
        return 0.0, 0.0
    span = sub.last - sub.first
    return sub.count / span, span


def main() -> None:
    with workspace("gatehouse-bench-ingest-") as ws:
        print(f"mqtt_ingest: {SWIPES:,} QoS 1 swipes, distinct cards, mosquitto_pub -l -q 1")
        cards = make_cards(SWIPES, salt=7)
        csv_path = write_passes_csv(ws.dir / "passes.csv", cards)
        config, api = ws.configure([{"id": "net-in", "gate": "main", "transport": "mqtt"}])
        imported, took = import_passes(config, csv_path)
        print(f"  import: {imported:,} passes in {took:.1f} s")
        payloads = ws.dir / "swipes.txt"
        payloads.write_text("".join(json.dumps({"card": c}) + "\n" for c in cards))

        bare = Subscriber(ws.broker.port, "bench/bare/swipe", "bare-sub")
        ws.callback(bare.close)
        bare_pub_s = publish_lines(ws.broker.port, "bench/bare/swipe", payloads)
        settle(bare, SWIPES)
        bare.close()
        bare_rate, bare_span = rate(bare)

        node = ws.node(api)
        node.start(wait_ready=True)
        base = f"gatehouse/{NODE_ID}/"
        sub = Subscriber(ws.broker.port, base + "gate/+/decision", "decisions")
        ws.callback(sub.close)
        pub_s = publish_lines(ws.broker.port, base + "reader/net-in/swipe", payloads)
        settle(sub, SWIPES)
        sub.close()
        counts = node.ready()[1].get("counts", {})
        node.stop()
        events = count_rows(ws.db_path, "access_events")
        gh_rate, gh_span = rate(sub)

        print("baseline (same run, same broker, bare paho subscriber, no gatehouse):")
        print(
            f"  published in {bare_pub_s:.2f} s; received {bare.count:,} "
            f"(lost {SWIPES - bare.count:,}) in {bare_span:.2f} s: {bare_rate:,.0f} msgs/s"
        )
        print("gatehouse:")
        print(
            f"  published in {pub_s:.2f} s; decisions received {sub.count:,} "
            f"(lost {SWIPES - sub.count:,}) in {gh_span:.2f} s first to last"
        )
        print(f"  access_events rows {events:,} (lost {SWIPES - events:,})")
        print(f"  node counts: {counts}")
        print(f"  decisions/s sustained: {gh_rate:,.0f} (target >= 5,000)")
        ratio = gh_rate / bare_rate if bare_rate else float("nan")
        print(f"RATIO gatehouse / bare = {gh_rate:,.0f} / {bare_rate:,.0f} = {ratio:.2f}")


if __name__ == "__main__":
    main_guard(main)
