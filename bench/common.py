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
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
import psycopg2  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from tests.helpers import (  # noqa: E402
    GATEHOUSE,
    Broker,
    Node,
    Office,
    free_port,
    http_call,
    wait_for,
    write_config,
)

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
    "clerk_calls",
    "close_client",
    "count_rows",
    "drop",
    "free_port",
    "import_passes",
    "main_guard",
    "make_cards",
    "mqtt_client",
    "realistic_cards",
    "rss_kib",
    "scratch_db",
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
# numbers of issue 9 ("the gate never goes silent"). Built once per schema and version of
# this file (under a minute), kept in SEED_CACHE (rebuilt when a day old: the history is
# relative to the build) and copied into each workspace; the times that must be fresh
# (escalations falling due, the pictures' folder) are set after the copy.

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
    """The cached database's name: the migrations and this file (what builds it)."""
    h = hashlib.sha256(Path(__file__).read_bytes())
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
            for old in SEED_CACHE.glob("realistic-*.db"):  # of other schemas: 1 GB each
                if old != cached:
                    old.unlink(missing_ok=True)
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

    One transaction; the rows made by SQLite itself (INSERT ... SELECT over a counter) but
    the alarms' (executemany: their checklists come from edge.alarms); the tables' own
    indexes dropped first and created again from their own SQL at the end, so the schema
    is exactly the migrations'. The columns are those of edge/migrations/versions
    0001-0007; the values are shaped as edge writes them (gate.py, cameras.py, outbox.py,
    alarms.py, pass_ops.py), which ``_check_seeded`` compares on a few rows."""
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
        for table, fill in _fills(now, epoch):
            t0 = time.perf_counter()
            fill(conn)
            got = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if got != REALISTIC[table]:
                raise RuntimeError(f"seeding {table}: {got} rows, expected {REALISTIC[table]}")
            took[table] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _name, sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        took["indexes"] = time.perf_counter() - t0
        conn.execute("PRAGMA journal_mode=WAL")
        _check_seeded(conn)
    print("  seeded: " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()), flush=True)
    return time.perf_counter() - started


_COUNTER = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < :count) "
# make_cards without salt: the 32-bit key of pass j, and its printed card
_KEY = "((j * 2654435761) % 4294967296)"
# a pass's id: 16 hex digits, distinct (the first 8 are a bijection of j mod 2**32)
_PASS_ID = "printf('%08x%08x', (j * 2654435761 + 1540483477) % 4294967296, (j * 40503) % 65536)"
# mask_name("Resident 1234", "surname") == "R******* 1***"; a word of one character is masked
# with the rest as one word: mask_name("Resident 7") == "R********"
_HOLDER = (
    "CASE WHEN length(j) = 1 THEN 'R********' "
    "ELSE 'R******* ' || substr(j, 1, 1) || substr('*******', 1, length(j) - 1) END"
)


def _xor(*terms: str) -> str:
    """SQLite has no XOR: a ^ b == (a | b) - (a & b)."""
    out = terms[0]
    for t in terms[1:]:
        out = f"(({out}) | ({t})) - (({out}) & ({t}))"
    return out


# an RDM6300 frame, hex: STX, the 10 card digits and the 2 of their bytes' XOR in ASCII, ETX
_RAW = (
    "lower('02' || hex(card_hex) || hex(printf('%02X', "
    + _xor("prefix", *(f"((card_key >> {s}) & 255)" for s in (24, 16, 8, 0)))
    + ")) || '03')"
)


def _fills(now: float, epoch: int) -> list[tuple[str, Callable[[sqlite3.Connection], Any]]]:
    """(table, what fills it) for each seeded table, in an order that lets the later ones
    be made from the earlier (pictures and outbox rows from the events)."""
    n_pass, n_event = REALISTIC["passes"], REALISTIC["access_events"]
    n_out, n_snap = REALISTIC["outbox"], REALISTIC["snapshots"]
    start = now - HISTORY_S
    if n_snap * 2 > n_event:
        raise ValueError("a picture for every second event at most")

    def passes(conn: sqlite3.Connection) -> None:
        conn.execute(
            _COUNTER + "INSERT INTO passes (id, kind, card_key, card_hex, name, unit, valid_from, "
            "status, issued_at, updated_at, version, issued_by) "
            f"SELECT {_PASS_ID}, 'resident', {_KEY}, printf('C0%08X', {_KEY}), "
            "'Resident ' || j, (j % 40 + 1) || '-' || (j % 3000 + 101), :issued + j * 0.5, "
            "'active', :issued + j * 0.5, :issued + j * 0.5, 1, 'cli:root' "
            "FROM (SELECT i AS j FROM n)",
            {"count": n_pass, "issued": start - 365 * DAY_S},
        )

    def events(conn: sqlite3.Connection) -> None:
        # one read in 25 is of a card nobody registered (printed C1..., not C0...)
        conn.execute(
            _COUNTER + "INSERT INTO access_events (id, event_id, ts, gate, reader, direction, "
            "decision, reason, pass_id, pass_kind, card_key, card_hex, holder, source, raw, "
            "read_age_ms, stale, snapshot_id) "
            "SELECT i + 1, lower(hex(randomblob(16))), :start + (i + 0.5) * :step, gate, "
            "gate || '-' || direction, direction, "
            "CASE WHEN j IS NULL THEN 'deny' ELSE 'grant' END, "
            "CASE WHEN j IS NULL THEN 'unknown_credential' ELSE 'ok' END, "
            f"CASE WHEN j IS NOT NULL THEN {_PASS_ID} END, "
            "CASE WHEN j IS NOT NULL THEN 'resident' END, card_key, card_hex, "
            f"CASE WHEN j IS NOT NULL THEN {_HOLDER} END, "
            "CASE WHEN i % 10 = 3 THEN 'mqtt' ELSE 'serial' END, "
            f"CASE WHEN i % 10 != 3 THEN {_RAW} END, 3 + i % 20, 0, "
            "CASE WHEN i % 2 = 0 AND i / 2 < :snapshots THEN i / 2 + 1 END "
            "FROM (SELECT *, printf('C%X%08X', prefix - 192, card_key) AS card_hex FROM ("
            "  SELECT i, j, CASE WHEN i % 5 = 4 THEN 'side' ELSE 'main' END AS gate, "
            "  CASE WHEN i % 2 = 0 THEN 'in' ELSE 'out' END AS direction, "
            "  CASE WHEN j IS NULL THEN 193 ELSE 192 END AS prefix, "
            f"  CASE WHEN j IS NULL THEN (i * 2654435761 + 1) % 4294967296 ELSE {_KEY} END "
            "  AS card_key "
            "  FROM (SELECT i, CASE WHEN i % 25 = 7 THEN NULL ELSE (i * 7919) % :passes END AS j "
            "  FROM n)))",
            {"count": n_event, "start": start, "step": HISTORY_S / n_event, "passes": n_pass,
             "snapshots": n_snap},
        )  # fmt: skip

    def snapshots(conn: sqlite3.Connection) -> None:
        # one per second event: 60+ days old swept already, 30-60 days old still "on disk"
        # (the backlog), the newest RECENT_ON_DISK on disk, the other recent ones swept
        conn.execute(
            "INSERT INTO snapshots (id, camera, gate, ref_kind, ref_id, path, sha256, bytes, "
            "event_ts, captured_at, age_ms, stale, deleted_at) "
            "SELECT k, 'cam-' || gate, gate, 'event', event_id, :pictures || '/' || "
            "strftime('%Y-%m-%d', ts, 'unixepoch', 'localtime') || '/cam-' || gate || "
            "'-event-' || event_id || '-' || k || '.jpg', lower(hex(randomblob(32))), "
            "40000 + (k * 7919) % 80000, ts, ts - 0.04, 40, 0, "
            "CASE WHEN :now - ts > :swept OR (:now - ts < :keep AND k <= :count - :recent) "
            "THEN ts + :keep END "
            "FROM (SELECT (id + 1) / 2 AS k, gate, event_id, ts FROM access_events "
            "WHERE id % 2 = 1 AND id < 2 * :count ORDER BY id)",
            {"pictures": PICTURES, "now": now, "swept": SWEPT_BEFORE_S, "keep": KEEP_S,
             "count": n_snap, "recent": RECENT_ON_DISK},
        )  # fmt: skip

    def outbox(conn: sqlite3.Connection) -> None:
        # everything of the last 90 days, as the gate, the cameras and the duty log put it
        # there; acknowledged but the newest; never pruned
        event = (
            "json_object('event_id', event_id, 'ts', ts, 'node', :node, 'gate', gate, "
            "'reader', reader, 'direction', direction, 'decision', decision, 'reason', reason, "
            "'pass_id', pass_id, 'pass_kind', pass_kind, 'card_key', card_key, "
            "'card_hex', card_hex, 'holder', holder, 'source', source, 'stale', json('false'), "
            "'by', NULL, 'notes', NULL)"
        )
        picture = (
            "json_object('id', e.id / 2 + 1, 'age_ms', 40, 'stale', json('false'), "
            "'stored', json('true'), 'ref_kind', 'event', 'ref_id', event_id, "
            "'camera', 'cam-' || gate)"
        )
        duty = (
            "json_object('id', s, 'at', ts, 'by', 'system', 'category', 'alarm', "
            "'text', 'alarm ' || (s % :alarms + 1) || ' closed', 'alarm_id', s % :alarms + 1)"
        )
        conn.execute(
            "WITH RECURSIVE n(s) AS (SELECT 0 UNION ALL SELECT s + 1 FROM n WHERE s + 1 < :count) "
            "INSERT INTO outbox (epoch, kind, ref, payload, created_at, acked_at) "
            "SELECT :epoch, CASE WHEN s % 10 < 7 THEN 'access_event' "
            "WHEN s % 10 < 9 THEN 'snapshot' ELSE 'duty_log' END, "
            "CASE WHEN s % 10 < 7 THEN event_id WHEN s % 10 < 9 THEN CAST(e.id / 2 + 1 AS TEXT) "
            "ELSE CAST(s AS TEXT) END, "
            f"CASE WHEN s % 10 < 7 THEN {event} WHEN s % 10 < 9 THEN {picture} ELSE {duty} END, "
            "ts, CASE WHEN s < :count - :unacked THEN ts + 0.2 + (s % 30) / 10.0 END "
            "FROM n JOIN access_events e ON e.id = s * :events / :count + 1 ORDER BY s",
            {"count": n_out, "events": n_event, "epoch": epoch, "node": NODE_ID,
             "alarms": REALISTIC["alarms"], "unacked": UNACKED_OUTBOX},
        )  # fmt: skip

    return [
        ("passes", passes),
        ("access_events", events),
        ("snapshots", snapshots),
        ("outbox", outbox),
        ("alarms", lambda conn: _alarms(conn, now)),
    ]


def _alarms(conn: sqlite3.Connection, now: float) -> None:
    """Closed but the newest few thousand; those mostly nobody acknowledged (their
    escalation times are set per run: ``_freshen``). A third of the open ones keep a
    picture of the retention backlog."""
    from edge.alarms import DEVICE_TYPES, HELP_TYPES, RESOLUTIONS, checklist_of, priority_of
    from edge.config import AlarmsCfg

    n_alarm = REALISTIC["alarms"]
    start = now - HISTORY_S
    cfg = AlarmsCfg()
    kinds = list(dict.fromkeys([*DEVICE_TYPES, *HELP_TYPES]))
    checklists = {k: json.dumps(checklist_of(k, cfg), ensure_ascii=False) for k in kinds}
    n_open = OPEN_UNACKED_ALARMS + OPEN_ACKED_ALARMS
    backlog_picture = REALISTIC["snapshots"] // 4  # 30-60 days old: still on disk

    def rows() -> Iterator[tuple[Any, ...]]:
        for a in range(n_alarm):
            kind = kinds[a % len(kinds)]
            raised = start + (a + 0.5) * HISTORY_S / n_alarm
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
            is_open = state != "closed"
            picture = backlog_picture + a % 1_000 if is_open and a % 3 == 0 else None
            yield (a + 1, uuid.uuid4().hex, kind,
                   priority_of(kind, cfg), f"input-{a % 50}", f"block {a % 12 + 1}",
                   "side" if a % 5 == 4 else "main", is_open and a % 2 == 0, 1 + a % 4, raised,
                   raised + 3, None if is_open else raised + 60, acked_at, acked_by, state,
                   resolution, resolved_by, resolved_at, closed_at, 0, checklists[kind],
                   picture)  # fmt: skip

    sql = (
        "INSERT INTO alarms (id, uid, type, priority, source, location, gate, active, count, "
        "raised_at, last_active_at, cleared_at, acked_at, acked_by, state, resolution, "
        "resolved_by, resolved_at, closed_at, escalation_level, checklist, snapshot_id) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    for chunk in _chunks(rows()):
        conn.executemany(sql, chunk)


def _check_seeded(conn: sqlite3.Connection) -> None:
    """The SQL-made rows against edge's own functions, on a few rows: the cards are
    make_cards', the holders mask_name's, the raw frames the RDM6300 encoder's."""
    from drivers.rdm6300 import Rdm6300
    from edge.cards import parse_card
    from edge.privacy import mask_name

    cards = make_cards(REALISTIC["passes"])
    for j in (0, 1, 9, 10, 12_345, len(cards) - 1):
        card = parse_card(cards[j])
        row = conn.execute(
            "SELECT card_hex, name FROM passes WHERE card_key = ?", (card.key,)
        ).fetchone()
        if row != (cards[j], f"Resident {j}"):
            raise RuntimeError(f"seeded pass {j}: {row}, expected card {cards[j]}")
    for event_id, card_hex, holder, name, raw in conn.execute(
        "SELECT e.id, e.card_hex, e.holder, p.name, e.raw FROM access_events e "
        "LEFT JOIN passes p ON p.id = e.pass_id WHERE e.id IN (1, 2, 5, 8, 1000, 54321)"
    ):
        want = Rdm6300.encode(parse_card(card_hex)).hex()  # as gate.py stores it
        if raw is not None and raw != want:
            raise RuntimeError(f"seeded event {event_id}: raw {raw}, expected {want}")
        if name is not None and holder != mask_name(name):
            raise RuntimeError(f"seeded event {event_id}: holder {holder} for {name}")


def _chunks(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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


def scratch_db() -> tuple[str, str]:
    """A PostgreSQL database of the bench's own: (its name, its URL)."""
    name = f"gh_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return name, f"postgresql:///{name}"


def drop(name: str) -> None:
    admin = psycopg2.connect(dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def clerk_calls(office: Office, clerk: str, n: int) -> list[float]:
    """The seconds each of ``n`` clerk calls took (``GET /api/v1/nodes``, a read of every
    gate's state): what a clerk waits for while the gates poll."""
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        status, _ = http_call(office.url, "GET", "/api/v1/nodes", clerk)
        took.append(time.perf_counter() - t0)
        assert status == 200
    return took
