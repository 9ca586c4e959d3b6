"""Camera pictures at the office (issue 14): a site that asks gets its gates' pictures, once
each, no larger than the office takes; a site that does not gets the records only. Real
processes: an office on PostgreSQL, a gate with an ffmpeg camera, the office stopped while
the gate takes a picture, the office's bound lowered, pictures past their days purged."""

from __future__ import annotations

import hashlib
import io
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.helpers import (
    Broker,
    Node,
    Office,
    Stream,
    add_sync,
    cli,
    http_call,
    node_for,
    pg_rows,
    wait_for,
)
from tests.test_cameras import camera, with_camera


@pytest.fixture
def stream() -> Iterator[Stream]:
    s = Stream(size="640x480").start()
    yield s
    s.stop()


def picture(office: Office, clerk: str, sha: str) -> tuple[int, bytes, dict[str, str]]:
    """``GET /api/v1/snapshots/{sha}`` at the office: status, body, headers."""
    req = urllib.request.Request(f"{office.url}/api/v1/snapshots/{sha}",
                                 headers={"Authorization": f"Bearer {clerk}"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), {k.lower(): v for k, v in r.headers.items()}
    except urllib.error.HTTPError as e:
        return e.code, e.read(), {}


def alarm_picture(gate: Node, admin: str) -> str:
    """An alarm at gate ``main`` (it has the camera): the SHA-256 of its picture."""
    url = f"http://127.0.0.1:{gate.api_port}"
    status, alarm = http_call(url, "POST", "/api/v1/alarms", admin,
                              {"type": "repair", "gate": "main", "notes": "道闸故障"})  # fmt: skip
    assert status == 201, alarm

    def taken() -> str | None:
        _, shown = http_call(url, "GET", f"/api/v1/alarms/{alarm['id']}", admin)
        snap = shown.get("snapshot") or {}
        return snap.get("sha256") if snap.get("url") else None

    return str(wait_for(taken, 20, "the alarm's picture"))


def sent(gate: Node) -> dict[str, Any]:
    return dict(gate.ready()[1]["sync"]["snapshots"])


def office_records(office: Office, clerk: str) -> dict[str, dict[str, Any]]:
    """The snapshot records the office has, by SHA-256."""
    status, page = office.call("GET", "/api/v1/events?kind=snapshot&limit=1000", clerk)
    assert status == 200, page
    return {r["sha256"]: r for r in page["items"] if r.get("sha256")}


def test_a_site_that_asks_gets_its_gates_pictures_once_and_bounded(
    tmp_path: Path, broker: Broker, pg_url: str, stream: Stream
):
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    admin_o = office.token("user", "add", "主管", "--role", "admin")
    (tmp_path / "gate").mkdir()
    gate = node_for(tmp_path / "gate", [{"id": "net", "gate": "main", "transport": "mqtt"}],
                    broker.port)  # fmt: skip
    with_camera(gate, stream.url)
    add_sync(gate, office, office.token("office", "node", "add", "gate-test"))
    admin = cli(gate.config, "user", "add", "值班长", "--role", "admin").stdout.strip()
    office.start()
    gate.start()
    try:
        wait_for(lambda: camera(gate).get("ok"), 30, "the camera's first frames")

        # off (the default): the record reaches the office, the picture stays at the gate
        first = alarm_picture(gate, admin)
        wait_for(lambda: first in office_records(office, clerk), 30, "the picture's record")
        assert picture(office, clerk, first)[0] == 404
        assert "office_url" not in office_records(office, clerk)[first]
        assert sent(gate)["send"] == "off"

        # the site asks for its alarms' pictures: the one taken before is sent too, as taken
        said = office.token("office", "site", "set", "default", "--snapshots", "alarms")
        assert "alarms" in said
        wait_for(lambda: sent(gate)["send"] == "alarms", 40, "the gate to hear the setting")
        wait_for(lambda: picture(office, clerk, first)[0] == 200, 30, "the first picture")
        status, body, headers = picture(office, clerk, first)
        assert hashlib.sha256(body).hexdigest() == first == headers["x-sha256"]
        assert headers["x-reduced"] == "false"
        assert office_records(office, clerk)[first]["office_url"] == f"/api/v1/snapshots/{first}"

        # a picture asked for by hand is not an alarm's: it stays at the gate
        status, asked = http_call(f"http://127.0.0.1:{gate.api_port}", "POST",
                                  "/api/v1/snapshots", admin, {"gate": "main"})  # fmt: skip
        assert status == 201, asked
        time.sleep(0.5)  # another frame: the same one would be the same picture, stored once
        second = alarm_picture(gate, admin)
        assert second != asked["sha256"]
        wait_for(lambda: picture(office, clerk, second)[0] == 200, 30, "the second picture")
        assert picture(office, clerk, asked["sha256"])[0] == 404

        # the office away: the picture waits at the gate, and is sent once it is back
        office.stop()
        third = alarm_picture(gate, admin)
        wait_for(lambda: sent(gate)["waiting"] == 1, 20, "the third picture to wait")
        office.start()
        wait_for(lambda: picture(office, clerk, third)[0] == 200, 40, "the third picture")
        wait_for(lambda: sent(gate)["waiting"] == 0, 20, "nothing left to send")
        assert sent(gate)["sent"] == 3  # (counted since the gate started)

        # the office takes no more than its bound: the gate sends a smaller picture
        office.stop()
        office.config.write_text(office.config.read_text() + "snapshot_max_bytes = 16384\n")
        office.start()
        fourth = alarm_picture(gate, admin)
        wait_for(lambda: picture(office, clerk, fourth)[0] == 200, 40, "the reduced picture")
        status, body, headers = picture(office, clerk, fourth)
        assert headers["x-reduced"] == "true" and len(body) <= 16384
        assert headers["x-sha256"] == hashlib.sha256(body).hexdigest() != fourth
        small = Image.open(io.BytesIO(body))
        assert small.format == "JPEG" and max(small.size) < 640

        # off again: pictures taken now stay at the gate
        status, site = office.call("PATCH", "/api/v1/sites/default", admin_o,
                                   {"snapshots": "off"})  # fmt: skip
        assert status == 200 and site["snapshots"] == "off", site
        wait_for(lambda: sent(gate)["send"] == "off", 40, "the gate to hear it")
        fifth = alarm_picture(gate, admin)
        wait_for(lambda: fifth in office_records(office, clerk), 30, "the fifth record")
        assert picture(office, clerk, fifth)[0] == 404
        status, bad = office.call("PATCH", "/api/v1/sites/default", admin_o,
                                  {"snapshot_days": 0})  # fmt: skip
        assert status == 422 and "snapshot_days" in str(bad["detail"]), bad
        assert office.call("PATCH", "/api/v1/sites/default", clerk, {"snapshots": "all"})[0] == 403

        # each picture once at the office; then the ones past their days are purged at start
        rows = pg_rows(pg_url, "SELECT sha256 FROM snapshots ORDER BY received_at")
        assert [r[0] for r in rows] == [first, second, third, fourth]
        pg_rows(pg_url, "UPDATE snapshots SET received_at = received_at - 31 * 86400 "
                        "WHERE sha256 IN (%s, %s)", first, second)  # fmt: skip
        office.stop()
        office.start()
        wait_for(lambda: picture(office, clerk, first)[0] == 404, 20, "the purge")
        assert picture(office, clerk, third)[0] == 200
        audit = pg_rows(pg_url, "SELECT detail FROM audit WHERE action = 'purge:snapshots'")
        assert audit == [({"removed": 2},)]
        settings = pg_rows(pg_url, "SELECT action, detail FROM audit WHERE action = 'site_set'")
        assert [d for _, d in settings] == [{"snapshots": "alarms"}, {"snapshots": "off"}]
    finally:
        gate.stop()
        office.stop()
