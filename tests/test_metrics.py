"""``/metrics`` as Prometheus scrapes it, from a real node and a real office: each figure
moves with what happens (a swipe, a corrupt frame, the broker going away)."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from drivers.rdm6300 import Rdm6300
from edge.cards import parse_card
from tests.helpers import Broker, Listener, Node, Office, Pty, cli, node_for, wait_for


def scrape(url: str, token: str | None = None) -> dict[tuple[str, tuple], float]:
    """Every sample: (name, sorted labels) → value."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
        assert r.headers["content-type"].startswith("text/plain")
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture
def node(tmp_path: Path, broker: Broker, pty: Pty) -> Iterator[Node]:
    readers = [{"id": "main-in", "gate": "main", "port": pty.path, "protocol": "rdm6300"}]
    n = node_for(tmp_path, readers, broker.port).start(wait_ready=True)
    yield n
    n.stop()


def test_the_gate_s_metrics_follow_swipes_refusals_and_the_broker(
    node: Node, pty: Pty, broker: Broker, listener: Listener
):
    url = f"http://127.0.0.1:{node.api_port}/metrics"
    before = scrape(url)
    assert before[("gatehouse_ready", ())] == 1
    assert before[("gatehouse_mqtt_connected", ())] == 1
    assert before[("gatehouse_reader_up", (("reader", "main-in"), ("transport", "serial")))] == 1
    assert before[("gatehouse_swipe_to_decision_seconds_count", ())] == 0

    cli(node.config, "pass", "add", "--kind", "resident", "--card", "01026F6C3A", "--name", "王五")
    pty.write(Rdm6300.encode(parse_card("01026F6C3A")))
    assert listener.next("/decision")["decision"] == "grant"
    pty.write(Rdm6300.encode(parse_card("0A0B0C0D0E")))
    assert listener.next("/decision")["reason"] == "unknown_credential"
    good = Rdm6300.encode(parse_card("01026F6C3A"))
    wrong = b"1" if good[-2] != ord("1") else b"2"  # a wrong checksum, still hex digits
    pty.write(good[:-2] + wrong + good[-1:])  # refused and counted, never decided

    refused = ("gatehouse_reader_rejected_frames_total",
               (("reader", "main-in"), ("why", "bad_checksum")))  # fmt: skip

    def after_all() -> dict[tuple[str, tuple], float] | None:
        got = scrape(url)
        decided = got[("gatehouse_swipe_to_decision_seconds_count", ())] == 2
        return got if decided and got.get(refused) == 1 else None

    got = wait_for(after_all, 10, "both decisions in the histogram, the bad frame counted")
    assert got[("gatehouse_decisions_total", (("decision", "grant"), ("reason", "ok")))] == 1
    assert got[("gatehouse_decisions_total",
                (("decision", "deny"), ("reason", "unknown_credential")))] == 1  # fmt: skip
    assert got[("gatehouse_swipe_to_decision_seconds_sum", ())] > 0
    assert got[("gatehouse_writer_commit_seconds_count", ())] >= 2
    assert got[("gatehouse_writer_queue_depth", ())] >= 0
    assert got[("gatehouse_reader_frames_total", (("reader", "main-in"),))] == 2

    broker.stop()
    wait_for(lambda: scrape(url)[("gatehouse_mqtt_connected", ())] == 0, 20, "the broker away")
    assert scrape(url)[("gatehouse_ready", ())] == 0  # the same truth as readiness


def test_metrics_are_for_this_machine_or_a_valid_token(tmp_path: Path):
    """A scraper on another machine sends a user's token; without one it gets 401. (From
    this machine the metrics answer without a token, as readiness's whole report does.)"""
    node = node_for(tmp_path, [])
    token = cli(node.config, "user", "add", "prometheus", "--role", "guard").stdout.strip()
    node.start(wait_ready=True)
    try:
        url = f"http://127.0.0.1:{node.api_port}/metrics"
        assert scrape(url, token)[("gatehouse_ready", ())] == 1
        assert scrape(url, "not-a-token")[("gatehouse_ready", ())] == 1  # loopback: trusted
    finally:
        node.stop()


def test_the_office_s_metrics_and_readiness(tmp_path: Path, pg_url: str):
    office = Office(tmp_path, pg_url)
    gate = office.token("office", "node", "add", "gate-a")
    office.start()
    try:
        base = f"http://127.0.0.1:{office.port}"
        # the change listener connects a moment after the office answers: readiness says
        # so until it has, which is the truth this test must wait for, not race
        wait_for(lambda: office.call("GET", "/health/ready", "")[0] == 200, 20, "ready")
        status, ready = office.call("GET", "/health/ready", "")
        assert status == 200 and ready["ready"] is True, ready
        assert ready["database"]["ok"] and ready["listener"]["listening"], ready
        office.call("GET", "/sync/v1/pull?since=0", gate)
        office.call("GET", "/sync/v1/pull?since=0", "wrong-token")
        got = scrape(f"{base}/metrics")
        assert got[("gatehouse_office_ready", ())] == 1
        assert got[("gatehouse_office_requests_total",
                    (("route", "/sync/v1/pull"), ("status", "200")))] >= 1  # fmt: skip
        assert got[("gatehouse_office_requests_total",
                    (("route", "/sync/v1/pull"), ("status", "401")))] >= 1  # fmt: skip
        assert got[("gatehouse_office_polls_waiting", ())] == 0
        assert ("gatehouse_office_request_seconds_count", (("route", "/sync/v1/pull"),)) in got
    finally:
        office.stop()
    assert "GET /sync/v1/pull 401" in office.log.read_text()  # the office logs its requests


def test_the_office_is_not_ready_while_its_database_is_away(tmp_path: Path, pg_url: str):
    office = Office(tmp_path, pg_url)
    office.start()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{office.port}/health/ready") as r:
            assert r.status == 200
        _terminate_connections(pg_url)  # the listener's connection too
        _block_database(pg_url)
        try:

            def not_ready() -> bool:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{office.port}/health/ready")
                except urllib.error.HTTPError as e:
                    return e.code == 503
                return False

            wait_for(not_ready, 20, "the office to say it is not ready")
        finally:
            _unblock_database(pg_url)
        wait_for(lambda: office.call("GET", "/health/ready", "")[0] == 200, 30,
                 "ready again once the database is back")  # fmt: skip
    finally:
        office.stop()


def _admin_sql(pg_url: str, sql: str) -> None:
    import psycopg2

    admin = pg_url.rsplit("/", 1)[0] + "/postgres"
    conn = psycopg2.connect(admin)
    conn.autocommit = True
    try:
        conn.cursor().execute(sql, (pg_url.rsplit("/", 1)[1],))
    finally:
        conn.close()


def _block_database(pg_url: str) -> None:
    """The office's database refuses connections (as when it is down), and the office's
    connections are cut."""
    _admin_sql(pg_url, "UPDATE pg_database SET datallowconn = false WHERE datname = %s")
    _terminate_connections(pg_url)


def _unblock_database(pg_url: str) -> None:
    _admin_sql(pg_url, "UPDATE pg_database SET datallowconn = true WHERE datname = %s")


def _terminate_connections(pg_url: str) -> None:
    _admin_sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                       "WHERE datname = %s AND pid <> pg_backend_pid()")  # fmt: skip
