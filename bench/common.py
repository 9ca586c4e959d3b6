"""Shared parts of the benchmarks: pass generation and import, a realistic node database
(``seed_realistic``), a node on a temp dir, stats.

Not a benchmark itself. The scripts beside it import it as ``common`` (Python puts bench/
on sys.path when a script there is run); it puts the repository root on sys.path so the
test helpers (tests/helpers.py: Broker, Node, write_config, ...) are reused as they are.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import queue
import shutil
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
    "REALISTIC",
    "ROOT",
    "Broker",
    "Node",
    "Seeded",
    "Stats",
    "Subscriber",
    "Workspace",
    "backlog",
    "backlog_line",
    "close_client",
    "count_rows",
    "free_port",
    "import_passes",
    "main_guard",
    "make_cards",
    "mqtt_client",
    "realistic_cards",
    "rss_kib",
    "seed_realistic",
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


# -- a realistic node database ------------------------------------------------------------
#
# What a gate's database holds after months in service, with the clean-ups behind: the
# numbers of issue 9 ("the gate never goes silent"). Built once per schema (a minute at
# most), kept in SEED_CACHE and copied into each workspace; the times that must be fresh
# (escalations falling due) are set after the copy.

REALISTIC = {
    "passes": 1_000_000,
    "access_events": 1_000_000,
    "outbox": 1_000_000,
    "snapshots": 500_000,
    "alarms": 100_000,
}
DAY_S = 86400.0
HISTORY_S = 90 * DAY_S  # the events, outbox rows, snapshots and alarms span this
KEEP_S = 30 * DAY_S  # the outbox keep horizon and the snapshots' default retention
SWEPT_BEFORE_S = 60 * DAY_S  # pictures older than this were swept already; 30-60 days: not
RECENT_ON_DISK = 20_000  # the newest pictures on disk (~1.6 GB: under the 2 GB quota)
REAL_FILES = 20  # real files among the backlog's pictures, and among the newest
UNACKED_OUTBOX = 500  # the newest outbox rows, not yet acknowledged by the office
OPEN_UNACKED_ALARMS = 3_000  # open, nobody acknowledged: they escalate, again and again
OPEN_ACKED_ALARMS = 500
SEED_VERSION = 1  # bump when what seed_rows writes changes: the cache is rebuilt
SEED_CACHE = Path(
    os.environ.get("GATEHOUSE_BENCH_CACHE", Path(tempfile.gettempdir()) / "gatehouse-bench-cache")
)
CACHE_MAX_AGE_S = DAY_S  # the history is relative to when it was built
PICTURES = "/gatehouse-bench-pictures"  # the seeded paths' prefix, replaced after the copy
_CHUNK = 50_000  # rows per executemany
_SEEDED = ("passes", "access_events", "outbox", "snapshots", "alarms")


@dataclass(frozen=True)
class Seeded:
    """A workspace's copy of the realistic database."""

    built_s: float | None  # seconds it took to build it, None when copied from the cache
    copied_s: float  # seconds to copy it and set the fresh times
    cache: Path
    mb: float

    def line(self) -> str:
        sizes = ", ".join(f"{n:,} {t}" for t, n in REALISTIC.items())
        how = (
            f"built in {self.built_s:.1f} s (then cached)"
            if self.built_s is not None
            else "from the cache"
        )
        return f"  database: {sizes}; {self.mb:,.0f} MB, {how}, ready in {self.copied_s:.1f} s"


def realistic_cards() -> list[str]:
    """The cards of the realistic database's passes, in pass order."""
    return make_cards(REALISTIC["passes"])


def _schema_key() -> str:
    h = hashlib.sha256(f"{SEED_VERSION} {sorted(REALISTIC.items())}".encode())
    for p in sorted((ROOT / "edge" / "migrations" / "versions").glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def seed_realistic(db_path: Path) -> Seeded:
    """Put the realistic database at ``db_path`` (a node's, before it starts): built with
    :func:`seed_rows` on first use and cached per schema, else copied from the cache. Then
    the open alarms' escalations are set to fall due over the next minutes, the pictures'
    paths moved under the node's data dir, and a few real picture files written."""
    SEED_CACHE.mkdir(parents=True, exist_ok=True)
    cached = SEED_CACHE / f"realistic-{_schema_key()}.db"
    built_s = None
    if not cached.exists() or time.time() - cached.stat().st_mtime > CACHE_MAX_AGE_S:
        building = cached.with_suffix(f".{os.getpid()}.tmp")
        try:
            built_s = seed_rows(building, time.time())
            building.replace(cached)  # atomic: a bench running beside never sees half of it
        finally:
            building.unlink(missing_ok=True)
    started = time.perf_counter()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(cached, db_path)
    _freshen(db_path, time.time())
    return Seeded(built_s, time.perf_counter() - started, cached, db_path.stat().st_size / 2**20)


def seed_rows(db_path: Path, now: float) -> float:
    """Migrate a new database at ``db_path`` and fill it to REALISTIC; the seconds taken.

    One transaction, executemany in chunks, the tables' own indexes dropped first and
    created again from their own SQL at the end (so the schema is exactly the migrations').
    The columns are those of edge/migrations/versions 0001-0007."""
    from edge import db as edge_db  # the bench process needs edge only when it builds

    started = time.perf_counter()
    db_path.unlink(missing_ok=True)
    edge_db.migrate(db_path)
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        epoch = edge_db.ensure_epoch(conn)
        conn.execute("PRAGMA journal_mode=OFF")  # a failed build is thrown away whole
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-524288")  # 512 MB while the indexes are built
        names = ",".join("?" * len(_SEEDED))
        indexes = conn.execute(
            f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
            f"AND tbl_name IN ({names})",
            _SEEDED,
        ).fetchall()
        conn.execute("BEGIN")
        for name, _sql in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        took = {}
        for table, sql, rows in _rows(now, epoch):
            t0 = time.perf_counter()
            for chunk in _chunks(rows):
                conn.executemany(sql, chunk)
            got = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if got != REALISTIC[table]:
                raise RuntimeError(f"seeding {table}: {got} rows, expected {REALISTIC[table]}")
            took[table] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _name, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        took["indexes"] = time.perf_counter() - t0
        print("  seeded: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()), flush=True)
        conn.execute("PRAGMA journal_mode=WAL")
    return time.perf_counter() - started


def _chunks(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _rows(now: float, epoch: int) -> Iterator[tuple[str, str, Iterator[tuple[Any, ...]]]]:
    """(table, INSERT, its rows) for each seeded table, in an order that lets the later
    ones refer to the earlier (events to their pictures, alarms to theirs)."""
    from drivers.rdm6300 import Rdm6300
    from edge.alarms import DEVICE_TYPES, HELP_TYPES, RESOLUTIONS, checklist_of, priority_of
    from edge.cards import CardId
    from edge.config import AlarmsCfg
    from edge.privacy import mask_name

    cards = realistic_cards()
    n_pass, n_event = REALISTIC["passes"], REALISTIC["access_events"]
    n_out, n_snap, n_alarm = REALISTIC["outbox"], REALISTIC["snapshots"], REALISTIC["alarms"]
    start = now - HISTORY_S

    def key(card: str) -> int:  # make_cards: the low 8 hex digits are the 32-bit key
        return int(card[2:], 16)

    def pass_id(i: int) -> str:  # distinct: a bijection of i mod 2**64
        return f"{(i * 0x9E3779B97F4A7C15 + 0x5BD1E995) & 0xFFFFFFFFFFFFFFFF:016x}"

    def name(j: int) -> str:
        return f"Resident {j}"

    def event_ts(i: int) -> float:
        return start + (i + 0.5) * HISTORY_S / n_event

    def event_id(i: int) -> str:
        return f"{(i * 0xD6E8FEB86659FD93 + 0x9E37) & (2**128 - 1):032x}"

    def event_pass(i: int) -> int | None:  # one read in 25 is a card nobody registered
        return None if i % 25 == 7 else (i * 7_919) % n_pass

    def event_card(i: int) -> str:
        j = event_pass(i)
        return cards[j] if j is not None else f"C1{(i * 2_654_435_761 + 1) & 0xFFFFFFFF:08X}"

    def gate(i: int) -> str:
        return "side" if i % 5 == 4 else "main"

    # passes ---------------------------------------------------------------------------
    def passes() -> Iterator[tuple[Any, ...]]:
        for j, card in enumerate(cards):
            issued = start - 365 * DAY_S + j * 0.5
            yield (pass_id(j), "resident", key(card), card, name(j),
                   f"{j % 40 + 1}-{j % 3000 + 101}", issued, "active", issued, issued, 1,
                   "cli:root")  # fmt: skip

    yield (
        "passes",
        "INSERT INTO passes (id, kind, card_key, card_hex, name, unit, valid_from, status, "
        "issued_at, updated_at, version, issued_by) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        passes(),
    )

    # snapshots: one per second event; 0-60 days old on disk as far as the rows say ------
    sizes = [40_000 + (k * 7_919) % 80_000 for k in range(1_000)]  # 40-120 kB, ~80 kB

    def snapshot_path(i: int, captured: float) -> str:
        day = time.strftime("%Y-%m-%d", time.localtime(captured))  # the folder, as cameras
        return f"{PICTURES}/{day}/cam-{gate(i)}-event-{event_id(i)}-{i}.jpg"

    def snapshots() -> Iterator[tuple[Any, ...]]:
        for k in range(n_snap):
            i = 2 * k
            ts = event_ts(i)
            swept = now - ts > SWEPT_BEFORE_S or (now - ts < KEEP_S and k < n_snap - RECENT_ON_DISK)
            yield (k + 1, f"cam-{gate(i)}", gate(i), "event", event_id(i),
                   snapshot_path(i, ts), f"{(k * 0x2545F4914F6CDD1D) & (2**256 - 1):064x}",
                   sizes[k % len(sizes)], ts, ts - 0.04, 40, False,
                   ts + KEEP_S if swept else None)  # fmt: skip

    yield (
        "snapshots",
        "INSERT INTO snapshots (id, camera, gate, ref_kind, ref_id, path, sha256, bytes, "
        "event_ts, captured_at, age_ms, stale, deleted_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        snapshots(),
    )

    # access events ----------------------------------------------------------------------
    def events() -> Iterator[tuple[Any, ...]]:
        for i in range(n_event):
            j = event_pass(i)
            card = event_card(i)
            serial = i % 10 != 3
            g = gate(i)
            direction = "in" if i % 2 == 0 else "out"
            raw = Rdm6300.encode(CardId(key(card), card)).hex() if serial else None
            yield (event_id(i), event_ts(i), g, f"{g}-{direction}", direction,
                   "grant" if j is not None else "deny",
                   "ok" if j is not None else "unknown_credential",
                   pass_id(j) if j is not None else None, "resident" if j is not None else None,
                   key(card), card, mask_name(name(j)) if j is not None else None,
                   "serial" if serial else "mqtt", raw, 3 + i % 20, False,
                   i // 2 + 1 if i % 2 == 0 else None)  # fmt: skip

    yield (
        "access_events",
        "INSERT INTO access_events (event_id, ts, gate, reader, direction, decision, reason, "
        "pass_id, pass_kind, card_key, card_hex, holder, source, raw, read_age_ms, stale, "
        "snapshot_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        events(),
    )

    # outbox: everything of the last 90 days, acknowledged but the newest; never pruned ----
    def outbox() -> Iterator[tuple[Any, ...]]:
        for s in range(n_out):
            i = s * n_event // n_out
            ts = event_ts(i)
            kind = ("access_event", "snapshot", "duty_log")[(0, 0, 0, 0, 0, 0, 0, 1, 1, 2)[s % 10]]
            if kind == "access_event":
                j = event_pass(i)
                card = event_card(i)
                g = gate(i)
                ref = event_id(i)
                payload = {
                    "event_id": ref, "ts": ts, "node": NODE_ID, "gate": g,
                    "reader": f"{g}-in", "direction": "in",
                    "decision": "grant" if j is not None else "deny",
                    "reason": "ok" if j is not None else "unknown_credential",
                    "pass_id": pass_id(j) if j is not None else None,
                    "pass_kind": "resident" if j is not None else None,
                    "card_key": key(card), "card_hex": card,
                    "holder": mask_name(name(j)) if j is not None else None,
                    "source": "serial", "stale": False, "by": None, "notes": None,
                }  # fmt: skip
            elif kind == "snapshot":
                ref = str(i // 2 + 1)
                payload = {
                    "id": i // 2 + 1, "age_ms": 40, "stale": False, "stored": True,
                    "ref_kind": "event", "ref_id": event_id(i - i % 2), "camera": "cam-main",
                }  # fmt: skip
            else:
                ref = str(s)
                alarm = s % n_alarm + 1
                payload = {"id": s, "at": ts, "by": "system", "category": "alarm",
                           "text": f"alarm {alarm} closed", "alarm_id": alarm}  # fmt: skip
            acked = ts + 0.2 + (s % 30) / 10 if s < n_out - UNACKED_OUTBOX else None
            yield (epoch, kind, ref, json.dumps(payload, ensure_ascii=False), ts, acked)

    yield (
        "outbox",
        "INSERT INTO outbox (epoch, kind, ref, payload, created_at, acked_at) VALUES (?,?,?,?,?,?)",
        outbox(),
    )

    # alarms: closed but the newest few thousand; those mostly nobody acknowledged ------
    cfg = AlarmsCfg()
    kinds = [*DEVICE_TYPES, *HELP_TYPES]
    checklists = {k: json.dumps(checklist_of(k, cfg), ensure_ascii=False) for k in kinds}
    n_open = OPEN_UNACKED_ALARMS + OPEN_ACKED_ALARMS
    backlog_snapshot = n_snap // 4  # a picture 30-60 days old: open alarms keep theirs

    def alarms() -> Iterator[tuple[Any, ...]]:
        for a in range(n_alarm):
            kind = kinds[a % len(kinds)]
            raised = start + (a + 0.5) * HISTORY_S / n_alarm
            g = "side" if a % 5 == 4 else "main"
            state = "closed"
            acked_at = acked_by = resolution = resolved_by = resolved_at = closed_at = None
            left = n_alarm - a  # 1 for the newest
            if left > n_open:
                acked_at, acked_by = raised + 25, "guard1"
                resolution, resolved_by = RESOLUTIONS[a % len(RESOLUTIONS)], "guard1"
                resolved_at = closed_at = raised + 600
            elif left > OPEN_UNACKED_ALARMS:
                state, acked_at, acked_by = "acknowledged", raised + 25, "guard1"
            else:
                state = "new"
            snapshot = backlog_snapshot + a % 1_000 if state != "closed" and a % 3 == 0 else None
            yield (a + 1, f"{(a * 0xA24BAED4963EE407 + 17) & (2**128 - 1):032x}", kind,
                   priority_of(kind, cfg), f"input-{a % 50}", f"block {a % 12 + 1}", g,
                   a % 2 == 0 and state != "closed", 1 + a % 4, raised, raised + 3,
                   raised + 60 if state == "closed" else None, acked_at, acked_by, state,
                   resolution, resolved_by, resolved_at, closed_at, 0, checklists[kind],
                   snapshot)  # fmt: skip

    yield (
        "alarms",
        "INSERT INTO alarms (id, uid, type, priority, source, location, gate, active, count, "
        "raised_at, last_active_at, cleared_at, acked_at, acked_by, state, resolution, "
        "resolved_by, resolved_at, closed_at, escalation_level, checklist, snapshot_id) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        alarms(),
    )


def _freshen(db_path: Path, now: float) -> None:
    """What must be relative to this run, set after the copy: the pictures still on disk
    under this node's data dir (a few as real files, the rest missing), and the open
    unacknowledged alarms last escalated so that each falls due again within its
    priority's limit from now (a steady stream of escalations, as on a node that has
    been running, rather than all of them in the first second)."""
    from edge.config import AlarmsCfg

    pictures = db_path.parent / "snapshots"
    limits = AlarmsCfg().escalate_after_s
    with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as conn:
        conn.execute("BEGIN")
        on_disk = "FROM snapshots WHERE deleted_at IS NULL AND path IS NOT NULL"
        conn.execute(
            f"UPDATE snapshots SET path = ? || substr(path, ?) WHERE id IN (SELECT id {on_disk})",
            (str(pictures), len(PICTURES) + 1),
        )
        real = conn.execute(
            f"SELECT path, bytes FROM (SELECT id, path, bytes {on_disk} ORDER BY id LIMIT ?) "
            f"UNION ALL SELECT path, bytes FROM (SELECT id, path, bytes {on_disk} "
            "ORDER BY id DESC LIMIT ?)",
            (REAL_FILES, REAL_FILES),
        ).fetchall()
        due = conn.execute(
            "SELECT id, priority, raised_at FROM alarms "
            "WHERE acked_at IS NULL AND state != 'closed'"
        ).fetchall()
        updates = []
        for alarm_id, priority, raised in due:
            limit = limits.get(priority, max(limits.values()))
            last = now - limit * ((alarm_id * 0.6180339887) % 1.0)
            updates.append((last, max(1, int((last - raised) / limit)), alarm_id))
        conn.executemany(
            "UPDATE alarms SET escalated_at = ?, escalation_level = ? WHERE id = ?", updates
        )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for path, size in real:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(b"\xff\xd8" + bytes(max(0, size - 4)) + b"\xff\xd9")


def backlog(db_path: Path, now: float | None = None) -> dict[str, int]:
    """What the clean-ups have to do (read-only): acknowledged outbox rows past the keep
    horizon, pictures on disk past retention (rows, and real files under the data dir),
    and the escalations done so far. Compare two with the same ``now``: then only a
    clean-up makes a figure smaller (with the clock's, rows cross the horizon meanwhile)."""
    now = time.time() if now is None else now
    horizon = now - KEEP_S
    on_disk = "FROM snapshots WHERE deleted_at IS NULL AND path IS NOT NULL"
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:

        def one(sql: str, *args: Any) -> int:
            return int(conn.execute(sql, args).fetchone()[0])

        out = {
            "outbox": one("SELECT count(*) FROM outbox"),
            "outbox_prunable": one(
                "SELECT count(*) FROM outbox WHERE acked_at IS NOT NULL AND acked_at < ?",
                horizon,
            ),
            "snapshots_on_disk": one(f"SELECT count(*) {on_disk}"),
            "snapshots_past_retention": one(f"SELECT count(*) {on_disk} AND event_ts < ?", horizon),
            "escalations": one("SELECT count(*) FROM alarm_log WHERE action = 'escalated'"),
        }
    pictures = db_path.parent / "snapshots"
    out["picture_files"] = sum(1 for _ in pictures.rglob("*.jpg")) if pictures.exists() else 0
    return out


def backlog_line(before: dict[str, int], after: dict[str, int]) -> str:
    """Before → after of each :func:`backlog` figure, on one line."""
    return "; ".join(f"{k} {before[k]:,} -> {after[k]:,}" for k in before)


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
