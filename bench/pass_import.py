"""Bulk import: how fast ``gatehouse pass import`` is, and how long it makes a writer wait.

For 200,000 and 1,000,000 resident passes (``--sizes`` to change) it runs the real command
on a fresh node database, while a probe thread stands in for a running node's writer:
every 50 ms it takes the write lock for a one-row write (BEGIN IMMEDIATE, INSERT, COMMIT,
WAL, synchronous=FULL) and times how long that took. The longest of those waits is the
longest a swipe would have waited for the database because of the import.

Baseline, in the same run on the same machine: the same rows (checked by
``edge.pass_ops.read_csv`` beforehand, not timed) put into the same schema by one bare
``executemany`` in one transaction — the least any import can cost, and what the import
did before it learnt to let the gate in (it then held the lock for all of it).

It prints, per size: the import's wall time, the baseline's, RATIO = import / baseline,
the import's rate, and the probe's p50/p99/max lock wait beside an idle probe's. Then the
two ways to make the staged rows visible in one last short transaction, each timed alone
in process on the same rows: the UPDATE of their status that the import uses, and the
INSERT … SELECT from a staging table it does not (the longest wait a swipe can see).

Run: .venv/bin/python bench/pass_import.py   (about two minutes)
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from common import (
    Stats,
    count_rows,
    free_port,
    import_passes,
    main_guard,
    make_cards,
    write_config,
    write_passes_csv,
)

from edge import db, pass_ops
from edge.privacy import IdHasher

PROBE_EVERY_S = 0.05


class LockProbe:
    """A one-row write every ``PROBE_EVERY_S`` on a connection of its own; the seconds
    each waited for and held the write lock."""

    def __init__(self, db_path: Path) -> None:
        self.conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=60000")
        self.conn.execute("CREATE TABLE IF NOT EXISTS probe (t REAL)")
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(PROBE_EVERY_S):
            started = time.perf_counter()
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute("INSERT INTO probe VALUES (?)", (started,))
            self.conn.execute("COMMIT")
            self.samples.append(time.perf_counter() - started)

    def __enter__(self) -> LockProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(120)
        self.conn.close()


def baseline(rows: list[tuple], db_path: Path) -> float:
    """The bare executemany of the same rows into the same (migrated, empty) schema."""
    db.migrate(db_path)
    conn = db.connect(db_path)
    try:
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(pass_ops._INSERT, rows)
        conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()


def final_steps(csv_path: Path, tmp: Path) -> tuple[float, float]:
    """(UPDATE staged → active, INSERT … SELECT from the staging table), seconds each."""
    hasher, tz = IdHasher(b"k" * 32), ZoneInfo("Asia/Shanghai")
    took = []
    for way in ("update", "insert-select"):
        path = tmp / f"final-{way}-{csv_path.stem}.db"
        db.migrate(path)
        conn = db.connect(path)
        total = pass_ops.stage_csv(conn, csv_path, hasher, tz, "bench", time.time())
        if way == "update":
            first, last = pass_ops._copy_staged(
                conn, total, pass_ops.IMPORT_CHUNK, 0.0, pass_ops.IMPORT_HOLD_S
            )
            started = time.perf_counter()
            assert pass_ops._activate(conn, first, last) == total
        else:
            conn.create_function("import_id", 1, pass_ops._RisingIds(total))
            cols = pass_ops._STAGED_COLUMNS
            started = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                f"INSERT INTO main.passes (id, {cols}, status, version) "
                f"SELECT import_id(rowid), {cols}, 'active', 1 FROM temp.import_rows"
            )
            conn.execute("COMMIT")
        took.append(time.perf_counter() - started)
        conn.close()
    return took[0], took[1]


def run(n: int, tmp: Path) -> None:
    csv_path = write_passes_csv(tmp / f"passes-{n}.csv", make_cards(n, salt=n & 0xF))
    node_dir = tmp / f"node-{n}"
    node_dir.mkdir()
    config = write_config(
        node_dir / "gatehouse.toml", broker_port=None, readers=[], api_port=free_port()
    )
    db_path = node_dir / "var" / "edge.db"
    db.migrate(db_path)
    with LockProbe(db_path) as idle:
        time.sleep(3)
    with LockProbe(db_path) as probe:
        imported, took = import_passes(config, csv_path)
    assert imported == n == count_rows(db_path, "passes"), (imported, n)
    active = (
        sqlite3.connect(db_path)
        .execute("SELECT count(*) FROM passes WHERE status = 'active'")
        .fetchone()[0]
    )
    assert active == n, active

    rows = pass_ops.read_csv(
        csv_path, IdHasher(b"k" * 32), ZoneInfo("Asia/Shanghai"), "bench", time.time()
    )
    bare = baseline(rows, tmp / f"baseline-{n}.db")
    del rows

    print(f"\n{n:,} passes")
    print(f"  gatehouse pass import (process)    {took:7.2f} s  ({n / took:,.0f} passes/s)")
    print(f"  baseline: bare executemany         {bare:7.2f} s  (rows checked beforehand)")
    print(f"  RATIO import / baseline            {took / bare:7.2f}")
    print(Stats.of_seconds(idle.samples).row("writer's lock wait, idle"))
    print(Stats.of_seconds(probe.samples).row("writer's lock wait, during import"))
    update, insert_select = final_steps(csv_path, tmp)
    print(f"  last step: UPDATE status (used)      {update:7.2f} s")
    print(f"  last step: INSERT … SELECT (not)     {insert_select:7.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200000,1000000")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            run(n, Path(tmp))


if __name__ == "__main__":
    main_guard(main)
