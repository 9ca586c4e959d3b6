"""Shared parts of the benchmarks: pass generation and import, a node on a temp dir, stats.

Not a benchmark itself. The scripts beside it import it as ``common`` (Python puts bench/
on sys.path when a script there is run); it puts the repository root on sys.path so the
test helpers (tests/helpers.py: Broker, Node, write_config, ...) are reused as they are.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from tests.helpers import GATEHOUSE, Broker, Node, free_port, wait_for, write_config  # noqa: E402

__all__ = [
    "GATEHOUSE",
    "NODE_ID",
    "ROOT",
    "Broker",
    "Node",
    "Stats",
    "Subscriber",
    "Workspace",
    "close_client",
    "count_rows",
    "free_port",
    "import_passes",
    "main_guard",
    "make_cards",
    "mqtt_client",
    "rss_kib",
    "wait_for",
    "workspace",
    "write_config",
    "write_passes_csv",
]

NODE_ID = "gate-test"  # what tests.helpers.write_config names the node
CSV_HEADER = ("kind", "card", "name", "unit", "valid_from", "valid_until")


# -- passes -------------------------------------------------------------------------------


def make_cards(n: int, salt: int = 0) -> list[str]:
    """``n`` cards as 10 hex digits, all with distinct 32-bit keys (the identity the gate
    matches on). The low 8 digits are ``i * odd + salt`` mod 2**32, a bijection of ``i``;
    the leading ``C`` keeps them hex (10 plain digits would be read as a decimal number)."""
    odd = 2_654_435_761  # Knuth's multiplicative constant: odd, so invertible mod 2**32
    return [f"C{salt & 0xF:X}{(i * odd + salt) & 0xFFFFFFFF:08X}" for i in range(n)]


def write_passes_csv(path: Path, cards: Sequence[str]) -> Path:
    """A ``gatehouse pass import`` file: one resident pass per card, no validity limits."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_HEADER)
        w.writerows(
            ("resident", card, f"Resident {i}", f"{i % 40 + 1}-{i % 3000 + 101}", "", "")
            for i, card in enumerate(cards)
        )
    return path


def import_passes(config: Path, csv_path: Path) -> tuple[int, float]:
    """(passes imported, wall seconds) of ``gatehouse pass import`` as a real process."""
    started = time.perf_counter()
    proc = subprocess.run(
        [GATEHOUSE, "--config", str(config), "--json", "pass", "import", str(csv_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"gatehouse pass import failed ({proc.returncode}): {proc.stderr}")
    return int(json.loads(proc.stdout.strip().splitlines()[-1])["imported"]), took


def count_rows(db_path: Path, table: str) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


# -- processes ----------------------------------------------------------------------------


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    """A process's resident set size (or ``VmHWM``, its peak) from /proc, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no {field}")


@dataclass
class Workspace:
    """A temp dir holding one broker, one node config and its data (see ``workspace``).

    The node's database is ``var/edge.db`` under ``dir`` (tests.helpers.write_config).
    """

    dir: Path
    broker: Broker
    stack: contextlib.ExitStack

    @property
    def db_path(self) -> Path:
        return self.dir / "var" / "edge.db"

    @property
    def config(self) -> Path:
        return self.dir / "gatehouse.toml"

    def configure(self, readers: list[dict[str, Any]]) -> tuple[Path, int]:
        api_port = free_port()
        write_config(self.config, broker_port=self.broker.port, readers=readers, api_port=api_port)
        return self.config, api_port

    def node(self, api_port: int) -> Node:
        """A node process, not yet started, that is stopped when the workspace closes."""
        node = Node(self.config, api_port)
        self.stack.callback(node.stop)
        return node

    def callback(self, fn: Callable[[], Any]) -> None:
        self.stack.callback(fn)


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[Workspace]:
    """A started broker in a fresh temp dir; on leaving, everything registered on the
    workspace (nodes, clients, ptys) is stopped, then the broker, then the dir removed."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        broker = Broker(tmp)
        stack.callback(broker.stop)
        broker.start()
        yield Workspace(tmp, broker, stack)


def main_guard(main: Callable[[], None]) -> None:
    """Run ``main`` so that SIGTERM/SIGINT unwind it: every ``finally`` (and so every
    process it started) is cleaned up, whichever way the run ends."""

    def _stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    main()


# -- MQTT ---------------------------------------------------------------------------------


def mqtt_client(port: int, name: str) -> mqtt.Client:
    """A connected paho client with its network loop running (QoS 1 friendly)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{name}-{os.getpid()}")
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    connected = queue.SimpleQueue[bool]()
    c.on_connect = lambda _c, _u, _f, reason, _p: connected.put(not reason.is_failure)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        if not connected.get(timeout=10):
            raise RuntimeError(f"MQTT client {name}: connection refused")
    except BaseException:
        c.loop_stop()
        raise
    return c


def close_client(c: mqtt.Client) -> None:
    with contextlib.suppress(Exception):
        c.disconnect()
    c.loop_stop()


class Subscriber:
    """A QoS 1 subscriber that stamps each message with ``perf_counter`` on arrival."""

    def __init__(self, port: int, topic: str, name: str) -> None:
        self.messages: queue.SimpleQueue[tuple[float, str, bytes]] = queue.SimpleQueue()
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        subscribed = queue.SimpleQueue[bool]()
        self.client = mqtt_client(port, name)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: subscribed.put(True)
        self.client.subscribe(topic, qos=1)
        subscribed.get(timeout=10)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        self.last = now
        self.count += 1
        self.messages.put((now, msg.topic, bytes(msg.payload)))

    def next(self, timeout: float) -> tuple[float, str, bytes]:
        return self.messages.get(timeout=timeout)

    def close(self) -> None:
        close_client(self.client)


# -- figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    """Percentiles of a sample, in milliseconds (nearest-rank)."""

    n: int
    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of_seconds(cls, samples: Sequence[float]) -> Stats:
        if not samples:
            raise ValueError("no samples")
        ms = sorted(s * 1000 for s in samples)

        def rank(p: float) -> float:
            return ms[min(len(ms) - 1, max(0, int(p * len(ms) + 0.999999) - 1))]

        return cls(len(ms), rank(0.50), rank(0.95), rank(0.99), ms[-1])

    def row(self, label: str) -> str:
        return (
            f"  {label:<34} n={self.n:<5} p50={self.p50:8.3f}  p95={self.p95:8.3f}  "
            f"p99={self.p99:8.3f}  max={self.max:8.3f} ms"
        )
