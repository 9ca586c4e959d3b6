"""Cameras with real video: ffmpeg serves a stream on localhost, the node reads it with OpenCV."""

from __future__ import annotations

import errno
import hashlib
import itertools
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def scratch(tmp_path: Path, **extra: Any) -> tuple[Any, Any, Any]:
    """A config, a migrated SQLite and a started real Writer on it (no service around)."""
    from edge import db
    from edge.config import parse
    from edge.writer import Writer

    cfg = parse({
        "node": {"id": "n", "data_dir": str(tmp_path)},
        "database": {"url": f"sqlite:///{tmp_path}/e.db"},
        "gates": [{"id": "main"}],
    } | extra)  # fmt: skip
    db.migrate(cfg.db_path)
    conn = db.connect(cfg.db_path)
    writer = Writer(conn)
    writer.start()
    return cfg, conn, writer


def add_picture(conn: Any, path: Path, event_ts: float, size: int = 600) -> int:
    path.write_bytes(b"x" * size)
    cur = conn.execute(
        "INSERT INTO snapshots (camera, gate, ref_kind, ref_id, path, sha256, bytes, "
        "event_ts, stale) VALUES ('c', 'main', 'event', ?, ?, 'h', ?, ?, 0)",
        (path.stem, str(path), size, event_ts),
    )
    return int(cur.lastrowid)


def test_retention_removes_old_pictures_first_but_keeps_those_of_open_alarms(tmp_path: Path):
    from edge import alarms
    from edge.cameras import Cameras

    # about 1.2 kB: room for two pictures of 600 bytes
    cfg, conn, writer = scratch(tmp_path, snapshots={"quota_mb": 0.0012})
    try:
        files = [tmp_path / f"{i}.jpg" for i in range(4)]
        for i, f in enumerate(files):
            add_picture(conn, f, time.time() + i)  # recent: only the quota removes them
        alarm = alarms.raise_alarm(
            conn, cfg.alarms, "door_forced", "alarm-input:d", 999.0, gate="main"
        )
        conn.execute("UPDATE alarms SET snapshot_id = 1 WHERE id = ?", (alarm,))
        cams = Cameras(cfg, writer, 1)
        assert cams.run_retention() == 2
        assert [f.exists() for f in files] == [True, False, False, True]  # 0: an open alarm's
        deleted = conn.execute("SELECT count(*) FROM snapshots WHERE deleted_at IS NOT NULL")
        assert deleted.fetchone()[0] == 2
    finally:
        writer.stop()


def test_retention_goes_a_chunk_per_writer_job_and_removes_files_only_once_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from edge import alarms, cameras
    from edge.cameras import RETENTION_CHUNK, Cameras

    cfg, conn, writer = scratch(tmp_path, snapshots={"retention_days": 30})
    try:
        old = time.time() - 40 * 86400
        pictures = tmp_path / "pictures"
        pictures.mkdir()
        due = 2 * RETENTION_CHUNK + 500
        conn.execute("BEGIN")
        files = [pictures / f"{i}.jpg" for i in range(due)]
        ids = [add_picture(conn, f, old + i, 10) for i, f in enumerate(files)]
        recent = add_picture(conn, pictures / "recent.jpg", time.time(), 10)
        conn.execute("COMMIT")
        alarm = alarms.raise_alarm(
            conn, cfg.alarms, "door_forced", "alarm-input:d", 999.0, gate="main"
        )
        kept = ids[RETENTION_CHUNK + 7]  # in the middle of the second chunk
        conn.execute("UPDATE alarms SET snapshot_id = ? WHERE id = ?", (kept, alarm))
        cams = Cameras(cfg, writer, 1)

        # the job alone, in a transaction that is then rolled back: nothing is removed
        sweep = cams.begin_retention()
        assert sweep is not None
        conn.execute("BEGIN IMMEDIATE")
        chunk = cams.retention_chunk(conn, sweep)
        assert len(chunk.paths) == RETENTION_CHUNK and not chunk.finished
        assert all(Path(p).exists() for p in chunk.paths)  # the job never touches a file
        conn.execute("ROLLBACK")
        on_disk = "SELECT count(*) FROM snapshots WHERE deleted_at IS NULL"
        assert conn.execute(on_disk).fetchone()[0] == due + 1

        # through the writer: each job marks at most a chunk, and its files are still there
        # when it returns (they go only after its commit)
        jobs: list[int] = []
        real = Cameras.retention_chunk

        def watched(self: Cameras, c: Any, s: Any) -> Any:
            done = real(self, c, s)
            assert all(Path(p).exists() for p in done.paths)
            jobs.append(len(done.paths))
            return done

        monkeypatch.setattr(cameras.Cameras, "retention_chunk", watched)
        assert cams.run_retention() == due - 1
        assert len(jobs) >= 3 and max(jobs) <= RETENTION_CHUNK
        assert [f.exists() for f in files].count(True) == 1 and files[kept - 1].exists()
        assert (pictures / "recent.jpg").exists()
        left = [r[0] for r in conn.execute("SELECT id FROM snapshots WHERE deleted_at IS NULL")]
        assert sorted(left) == sorted([kept, recent])
        assert cams.begin_retention() is None  # nothing is due any more: no writer job
    finally:
        writer.stop()


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


def events_by_id(node: Node, token: str) -> dict[str, dict]:
    items = call(node, "GET", "/api/v1/events?limit=100", token)[1]["items"]
    return {e["event_id"]: e for e in items}


def fill(folder: Path) -> Path:
    """Write into ``folder`` until its file system refuses: a full disk."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
    return filler


@pytest.mark.parametrize("how", ["a file in its place", "a full disk"])
def test_an_unwritable_snapshot_directory_costs_pictures_not_the_thread_and_heals_by_itself(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty, stream: Stream, how: str
):
    node = node_for(tmp_path, [{"id": "main-in", "gate": "main", "port": pty.path}], broker.port)
    with_camera(node, stream.url)
    guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    snapshots = tmp_path / "var" / "snapshots"
    mounted = False
    if how == "a full disk":
        snapshots.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(snapshots)],
                              capture_output=True)  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
        mounted = True
    cards = (parse_card(f"0A{n:08X}") for n in itertools.count(1))

    def swipe() -> str:
        pty.write(Rdm6300.encode(next(cards)))
        return listener.next("/gate/main/decision")["event_id"]

    def snapshot_of(event_id: str) -> dict | None:
        return events_by_id(node, guard).get(event_id, {}).get("snapshot")

    try:
        node.start()
        wait_for(lambda: camera(node).get("frames", 0) > 10, 15, "frames from the camera")
        before = swipe()
        first = wait_for(lambda: snapshot_of(before), 10, "a picture before the fault")
        assert first["url"]

        if how == "a full disk":
            filler = fill(snapshots)
        else:
            shutil.rmtree(snapshots)
            snapshots.write_text("not a directory")  # mkdir and open fail: an OSError
        broken = [swipe() for _ in range(4)]  # decisions keep coming
        for event_id in broken:
            snap = wait_for(lambda e=event_id: snapshot_of(e), 10, "a row saying no picture")
            assert snap["url"] is None and snap["sha256"] is None
        cam = camera(node)
        assert cam["snapshots_failing"] is True and cam["ok"] is False
        assert cam["snapshot_error"] and cam["snapshot_errors"] >= 4
        ready = node.ready()[1]
        assert ready["threads"]["snapshots"] is True
        assert ready["counts"]["snapshot_errors"] >= 4
        log = node.log.read_text()
        assert log.count("picture not stored") == 1  # once per distinct error, not per picture

        if how == "a full disk":
            filler.unlink()
        else:
            snapshots.unlink()
        after = swipe()
        healed = wait_for(lambda: snapshot_of(after), 10, "a picture after the repair")
        assert healed["url"], "no restart: the next picture is stored again"
        jpeg = get_bytes(node, healed["url"], guard)
        assert hashlib.sha256(jpeg).hexdigest() == healed["sha256"]
        assert camera(node)["snapshots_failing"] is False and camera(node)["snapshot_error"]
    finally:
        node.stop()
        if mounted:
            subprocess.run(["umount", "-l", str(snapshots)], check=False)


def test_a_flood_while_the_snapshot_thread_is_held_up_stays_bounded_and_every_request_gets_a_row(
    tmp_path: Path, stream: Stream, monkeypatch: pytest.MonkeyPatch
):
    from edge import cameras
    from edge.cameras import QUEUE_MAX, Cameras
    from edge.writer import CallJob

    # the thread will wait on the writer in a retention chunk for as long as the writer is held
    monkeypatch.setattr(cameras, "RETENTION_CALL_TIMEOUT_S", 60.0)
    cfg, conn, writer = scratch(
        tmp_path, cameras=[{"id": "cam-main", "gate": "main", "source": stream.url}]
    )
    old = add_picture(conn, tmp_path / "old.jpg", time.time() - 40 * 86400)  # retention is due
    cams = Cameras(cfg, writer, 1)
    cams.next_retention = time.monotonic() + 3600  # no sweep until the writer is held
    held, release = threading.Event(), threading.Event()
    try:
        cams.start()
        wait_for(lambda: cams.grabbers["cam-main"].latest, 15, "a frame from the camera")
        # the writer stalls in a job (as on a disk that hangs); the snapshot thread's next
        # retention chunk waits for it
        writer.submit(CallJob(lambda c: held.set() or release.wait(60)))
        assert held.wait(5)
        cams.next_retention = 0.0
        wait_for(lambda: time.monotonic() - cams.last_beat > 1.0, 10, "the thread to be held")
        assert not cams.alive(within_s=1.0) and cams.alive()  # the heartbeat says so

        asked, longest, deepest = [], 0.0, 0
        for i in range(200):  # ~2 s of swipes and alarms: ~50 frames of their own
            t0 = time.monotonic()
            req = cams.snap("main", "event", f"flood-{i}", time.time())
            longest = max(longest, time.monotonic() - t0)
            deepest = max(deepest, cams._work.qsize())
            asked.append(req)
            time.sleep(0.01)
        assert deepest <= QUEUE_MAX  # at most this many frames held, however long it lasts
        # the asking side never waited for the held thread: that would be its 60 s each; a
        # bound this loose tells the two apart on a busy shared machine (not a speed test)
        assert longest < 10.0, longest
        assert cams.counts["snapshots_dropped"] == 200 - QUEUE_MAX
        assert cams.health()["cam-main"]["snapshots_dropped"] == 200 - QUEUE_MAX

        release.set()
        shown = [req.result.result(15) for req in asked]  # every request gets its row
        assert sum(s["url"] is not None for s in shown) == QUEUE_MAX
        assert sum(s["url"] is None for s in shown) == 200 - QUEUE_MAX
        rows = conn.execute("SELECT count(*), count(path) FROM snapshots WHERE ref_id LIKE "
                            "'flood-%'").fetchone()  # fmt: skip
        assert rows == (200, QUEUE_MAX)
        # the held-up retention went on: the old picture is gone, and the thread beats again
        wait_for(lambda: not (tmp_path / "old.jpg").exists(), 10, "retention to finish")
        deleted = conn.execute("SELECT deleted_at FROM snapshots WHERE id = ?", (old,))
        assert deleted.fetchone()[0] is not None
        wait_for(lambda: cams.alive(within_s=1.0), 10, "the thread to beat again")
    finally:
        release.set()
        cams.stop()
        writer.stop()


def test_the_snapshot_thread_beats_and_alive_says_whether_it_runs(tmp_path: Path):
    from edge.cameras import Cameras
    from edge.config import parse

    cfg, _conn, writer = scratch(
        tmp_path, cameras=[{"id": "c", "gate": "main", "source": "http://127.0.0.1:9/none"}]
    )
    none_cfg = parse({"node": {"id": "n", "data_dir": str(tmp_path)}, "gates": [{"id": "main"}]})
    try:
        assert Cameras(none_cfg, writer, 1).alive()  # no camera: nothing to be alive for
        cams = Cameras(cfg, writer, 1)
        assert not cams.alive()  # not started
        cams.start()
        beat = cams.last_beat
        wait_for(lambda: cams.last_beat > beat + 0.3, 10, "the thread to beat")
        wait_for(lambda: cams.alive(within_s=0.5), 10, "a recent heartbeat")
        cams.stop()
        assert not cams.alive()
    finally:
        writer.stop()
