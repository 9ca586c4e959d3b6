"""Cameras with real video: ffmpeg serves a stream on localhost, the node reads it with OpenCV."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from drivers.rdm6300 import Rdm6300
from edge.cards import parse_card
from tests.helpers import Broker, Listener, Node, Pty, Stream, cli, node_for, wait_for
from tests.test_desk_e2e import call


def with_camera(node: Node, source: str, **extra: object) -> None:
    lines = ["[[cameras]]", 'id = "cam-main"', 'gate = "main"', f"source = {json.dumps(source)}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    node.config.write_text(node.config.read_text() + "\n".join(lines) + "\n")


def camera(node: Node) -> dict:
    return node.ready()[1].get("cameras", {}).get("cam-main", {})


@pytest.fixture
def stream() -> Iterator[Stream]:
    s = Stream().start()
    yield s
    s.stop()


def get_bytes(node: Node, path: str, token: str) -> bytes:
    req = urllib.request.Request(
        f"http://127.0.0.1:{node.api_port}{path}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.read()


def test_a_swipe_s_event_links_a_fresh_jpeg_whose_hash_matches(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty, stream: Stream
):
    node = node_for(tmp_path, [{"id": "main-in", "gate": "main", "port": pty.path}], broker.port)
    with_camera(node, stream.url)
    guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    node.start()
    try:
        wait_for(lambda: camera(node).get("frames", 0) > 10, 15, "frames from the camera")
        pty.write(Rdm6300.encode(parse_card("0040856634")))
        decision = listener.next("/gate/main/decision")

        def snapshot() -> dict | None:
            items = call(node, "GET", "/api/v1/events?limit=1", guard)[1]["items"]
            return items[0]["snapshot"] if items else None

        snap = wait_for(snapshot, 10, "the event's snapshot")
        assert snap["stale"] is False and abs(snap["age_ms"]) < 2000
        jpeg = get_bytes(node, snap["url"], guard)
        assert jpeg[:2] == b"\xff\xd8" and hashlib.sha256(jpeg).hexdigest() == snap["sha256"]
        assert decision["event_id"]  # the decision went out without waiting for the picture
        status, on_demand = call(node, "POST", "/api/v1/snapshots", guard, {"gate": "main"})
        assert status == 201 and on_demand["url"] and not on_demand["stale"]
        assert call(node, "POST", "/api/v1/snapshots", guard, {"gate": "side"})[0] == 422
    finally:
        node.stop()


def test_a_dead_stream_raises_camera_offline_and_its_return_clears_it(
    tmp_path: Path, broker: Broker, listener: Listener, stream: Stream
):
    node = node_for(tmp_path, [], broker.port)
    with_camera(node, stream.url, offline_after_s=2)
    node.start()
    try:
        wait_for(lambda: camera(node).get("frames", 0) > 10, 15, "frames from the camera")
        stream.stop()
        alarm = listener.next("/alarm/1", timeout=15)
        assert alarm["type"] == "camera_offline" and alarm["active"] is True
        assert camera(node)["offline"] is True and node.ready()[0] is False
        stream.start()  # back on the same address, the service untouched
        cleared = listener.next("/alarm/1", timeout=30)
        assert cleared["active"] is False
        wait_for(lambda: camera(node).get("ok"), 15, "the camera to be ok again")
        assert camera(node)["reconnects"] >= 1
    finally:
        node.stop()


@pytest.mark.parametrize(
    ("pattern", "kind"), [("color=c=black", "covered"), ("smptebars", "frozen")]
)
def test_a_black_stream_is_covered_and_a_still_one_frozen(
    tmp_path: Path, broker: Broker, listener: Listener, pattern: str, kind: str
):
    still = Stream(pattern).start()
    node = node_for(tmp_path, [], broker.port)
    with_camera(node, still.url, frozen_after_s=2, covered_after_s=1)
    node.start()
    try:
        alarm = listener.next("/alarm/1", timeout=20)
        assert alarm["type"] == f"camera_{kind}" and alarm["gate"] == "main"
        assert camera(node)[kind] is True
    finally:
        node.stop()
        still.stop()


def test_a_hung_camera_delays_no_decision_and_its_events_say_no_picture(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty
):
    # a "camera" that accepts the connection and never sends a byte
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(5)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(hung.accept()[0]), daemon=True).start()
    url = f"http://127.0.0.1:{hung.getsockname()[1]}/cam"
    node = node_for(tmp_path, [{"id": "main-in", "gate": "main", "port": pty.path}], broker.port)
    with_camera(node, url, open_timeout_ms=60_000, read_timeout_ms=60_000, stale_after_ms=500)
    guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    node.start()
    try:
        wait_for(lambda: accepted, 10, "the camera connection")
        for card in ("0040856634", "0A0B0C0D0E", "1122334455"):
            pty.write(Rdm6300.encode(parse_card(card)))
            decision = listener.next("/gate/main/decision")
            assert decision["stale"] is False  # decided while the camera hangs in its open

        def missing() -> bool:
            items = call(node, "GET", "/api/v1/events", guard)[1]["items"]
            return all(e["snapshot"] and e["snapshot"]["url"] is None for e in items)

        wait_for(missing, 10, "the events to record that no picture came")
    finally:
        node.stop()
        hung.close()


def test_retention_removes_old_pictures_first_but_keeps_those_of_open_alarms(tmp_path: Path):
    from edge import alarms, db
    from edge.cameras import Cameras
    from edge.config import parse
    from edge.writer import Writer

    cfg = parse({
        "node": {"id": "n", "data_dir": str(tmp_path)},
        "database": {"url": f"sqlite:///{tmp_path}/e.db"},
        "gates": [{"id": "main"}],
        "snapshots": {"quota_mb": 0.0012},  # about 1.2 kB: room for two pictures of 600 bytes
    })  # fmt: skip
    db.migrate(cfg.db_path)
    conn = db.connect(cfg.db_path)
    files = []
    for i in range(4):
        f = tmp_path / f"{i}.jpg"
        f.write_bytes(b"x" * 600)
        files.append(f)
        conn.execute(
            "INSERT INTO snapshots (camera, gate, ref_kind, ref_id, path, sha256, bytes, "
            "event_ts, stale) VALUES ('c', 'main', 'event', ?, ?, 'h', 600, ?, 0)",
            (str(i), str(f), time.time() + i),  # recent: only the quota removes them
        )
    alarm = alarms.raise_alarm(conn, cfg.alarms, "door_forced", "alarm-input:d", 999.0, gate="main")
    conn.execute("UPDATE alarms SET snapshot_id = 1 WHERE id = ?", (alarm,))
    cams = Cameras(cfg, Writer(conn), 1)
    assert cams.retention(conn) == 2
    assert [f.exists() for f in files] == [True, False, False, True]  # 0: an open alarm's
    deleted = conn.execute("SELECT count(*) FROM snapshots WHERE deleted_at IS NOT NULL")
    assert deleted.fetchone()[0] == 2


def test_each_camera_s_decode_mode_reaches_its_grabber(tmp_path: Path):
    from edge.cameras import Cameras
    from edge.config import parse

    cfg = parse({
        "node": {"id": "n", "data_dir": str(tmp_path)},
        "gates": [{"id": "main"}, {"id": "side"}],
        "cameras": [
            {"id": "a", "gate": "main", "source": "http://127.0.0.1:9/a"},
            {"id": "b", "gate": "side", "source": "http://127.0.0.1:9/b", "decode": "on_demand"},
        ],
    })  # fmt: skip
    cams = Cameras(cfg, None, 1)  # type: ignore[arg-type]  # not started: nothing is written
    assert cams.grabbers["a"].every_frame is True and cams.grabbers["b"].every_frame is False
