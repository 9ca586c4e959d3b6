"""Nothing lost: kill -9 in the middle of a burst of swipes, restart, count."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from drivers.rdm6300 import Rdm6300
from edge.cards import parse_card
from tests.helpers import Broker, Listener, Pty, cli, node_for, wait_for

N = 3000


def test_every_published_decision_survives_kill_9_and_no_swipe_is_lost(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty
):
    n = node_for(
        tmp_path,
        [
            {"id": "net-in", "gate": "main", "transport": "mqtt"},
            {"id": "main-in", "gate": "main", "port": pty.path},
        ],
        broker_port=broker.port,
    )
    config = n.config
    cards = [f"{i:010d}" for i in range(1, N + 1)]
    with (tmp_path / "p.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["kind", "card", "name", "unit", "valid_from", "valid_until"])
        w.writerows(["resident", c, "业主", "1-101", "", ""] for c in cards)
    cli(config, "pass", "import", str(tmp_path / "p.csv"))
    node = n.start(wait_ready=True)

    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="crash-pub")
    pub.max_inflight_messages_set(100)
    pub.connect("127.0.0.1", broker.port)
    pub.loop_start()
    infos = [
        pub.publish("gatehouse/gate-test/reader/net-in/swipe", json.dumps({"card": c}), qos=1)
        for c in cards
    ]
    for c in cards[:50]:  # serial swipes in the same burst
        pty.write(Rdm6300.encode(parse_card(c)))
    published: list[dict] = []
    while len(published) < 400:
        published.append(listener.next("/decision"))
    node.kill()  # SIGKILL: no clean shutdown, mid-burst
    for info in infos:
        info.wait_for_publish(10)  # every swipe is now the broker's to deliver
    pub.loop_stop()
    published += [b for t, b in listener.drain(0.5) if t.endswith("/decision")]

    db = sqlite3.connect(config.parent / "var" / "edge.db")
    recorded = {r[0] for r in db.execute("SELECT event_id FROM access_events")}
    missing = [p["event_id"] for p in published if p["event_id"] not in recorded]
    assert missing == [], f"{len(missing)} published decisions were not on disk"
    before = len(recorded)
    assert before < N, "the kill came too late to test anything"

    # After a restart the broker delivers every swipe that was never acknowledged.
    node = n.start(wait_ready=True)
    try:

        def decided() -> bool:
            got = db.execute(
                "SELECT count(DISTINCT card_key) FROM access_events WHERE source='mqtt'"
            )
            return got.fetchone()[0] == N

        wait_for(decided, 60, "every MQTT swipe to be decided after the restart")
        outbox = db.execute("SELECT count(*), count(DISTINCT ref) FROM outbox").fetchone()
        events = db.execute("SELECT count(*) FROM access_events").fetchone()[0]
        assert outbox == (events, events)  # one outbox row per event, in the same transaction
        seqs = [r[0] for r in db.execute("SELECT seq FROM outbox ORDER BY seq")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous per node
    finally:
        node.stop()
