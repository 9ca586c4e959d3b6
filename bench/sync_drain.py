"""Office sync: drain a 100,000-event backlog from a gate, and a revocation's way to a gate.

1. A gate's outbox holds 100,000 access events (written straight into its SQLite, as a week
   offline would leave them); the office starts and the gate drains. Rate = events left
   after the first acknowledged batch / time from then to an empty backlog. Baseline in
   the same run: ``COPY`` of the same rows into a table shaped like ``edge_events`` in the
   same PostgreSQL. RATIO = drain / COPY (target >= 0.5).
2. With the gate connected, 30 passes are revoked at the office one by one; each time the
   gate's ``gatehouse check``-equivalent read of its own database is polled until it says
   revoked. Time from the office's answer (commit) to that; p95 (target <= 2 s).

Run: .venv/bin/python bench/sync_drain.py   (a few minutes; needs PostgreSQL and mosquitto)
"""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import time
import uuid
from pathlib import Path

import psycopg2
from common import Stats, drop, main_guard, scratch_db, workspace

from edge import db
from tests.helpers import Office, add_sync, node_for, wait_for

EVENTS = 100_000


def payloads(n: int) -> list[tuple[int, str]]:
    out = []
    for i in range(1, n + 1):
        body = {"event_id": uuid.uuid4().hex, "ts": time.time(), "node": "gate-a",
                "gate": "main", "reader": "net", "direction": "in", "decision": "deny",
                "reason": "unknown_credential", "pass_id": None, "pass_kind": None,
                "card_key": i, "card_hex": None, "holder": None, "source": "mqtt",
                "stale": False, "by": None, "notes": None}  # fmt: skip
        out.append((i, json.dumps(body)))
    return out


def fill_outbox(db_path: Path, rows: list[tuple[int, str]]) -> int:
    db.migrate(db_path)
    conn = db.connect(db_path)
    epoch = db.ensure_epoch(conn)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO outbox (seq, epoch, kind, ref, payload, created_at) VALUES (?,?,?,?,?,?)",
        [(seq, epoch, "access_event", f"e{seq}", p, time.time()) for seq, p in rows],
    )
    conn.execute("COMMIT")
    conn.close()
    return epoch


def copy_baseline(dbname: str, rows: list[tuple[int, str]]) -> float:
    conn = psycopg2.connect(dbname=dbname)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE copy_events (LIKE edge_events INCLUDING ALL)")
    buf = io.StringIO()
    now = time.time()
    for seq, p in rows:
        sha = hashlib.sha256(p.encode()).hexdigest()
        escaped = p.replace("\\", "\\\\")
        buf.write(f"gate-a\t1\t{seq}\taccess_event\te{seq}\t{escaped}\t{sha}\t{now}\n")
    buf.seek(0)
    t0 = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.copy_expert("COPY copy_events FROM STDIN", buf)
    took = time.perf_counter() - t0
    conn.close()
    return len(rows) / took


def main() -> None:
    dbname, url = scratch_db()
    try:
        with workspace("gh-bench-sync-") as ws:
            office = Office(ws.dir, url)
            clerk = office.token("user", "add", "clerk", "--role", "clerk")
            node = node_for(ws.dir, [], ws.broker.port)
            node.config.write_text(node.config.read_text().replace('"gate-test"', '"gate-a"'))
            add_sync(node, office, office.token("office", "node", "add", "gate-a"), 5000)
            ws.callback(office.stop)
            ws.callback(node.stop)
            rows = payloads(EVENTS)
            fill_outbox(node.config.parent / "var" / "edge.db", rows)
            copy_rate = copy_baseline(dbname, rows)

            office.start()
            gate_db = sqlite3.connect(node.config.parent / "var" / "edge.db")

            def one(sql: str, *args: object) -> object:
                row = gate_db.execute(sql, args).fetchone()
                return row[0] if row else None

            def backlog() -> int:
                return int(one("SELECT count(*) FROM outbox WHERE acked_at IS NULL"))  # type: ignore[arg-type]

            node.start()
            # the drain proper: from the first acknowledged batch to an empty backlog
            first = wait_for(lambda: (b := backlog()) < EVENTS and b, 60, "the first batch")
            t0 = time.perf_counter()
            wait_for(lambda: backlog() == 0, 600, "the backlog to drain")
            drain = first / (time.perf_counter() - t0)
            print(f"sync_drain: {EVENTS:,} events from one gate to the office")
            print(f"  drain: {drain:,.0f} events/s (first batch acknowledged to empty backlog)")
            print(f"  COPY baseline: {copy_rate:,.0f} rows/s into the same PostgreSQL")
            print(f"RATIO drain / COPY = {drain / copy_rate:.2f} (target >= 0.5)")

            lat = []
            status = "SELECT status FROM passes WHERE id = ?"
            for i in range(30):
                body = {"kind": "resident", "card": f"{7_000_000 + i:010d}", "name": "x"}
                _, p = office.call("POST", "/api/v1/passes", clerk, body)
                wait_for(lambda p=p: one(status, p["id"]), 10, "the pass at the gate")
                office.call("POST", f"/api/v1/passes/{p['id']}/revoke", clerk, {})
                t1 = time.perf_counter()
                wait_for(lambda p=p: one(status, p["id"]) == "revoked", 10, "the revocation")
                lat.append(time.perf_counter() - t1)
            st = Stats.of_seconds(lat)
            print(st.row("revocation: office commit -> gate"))
            print(f"RATIO revocation p95 / 2 s target = {st.p95 / 2000:.3f}")
    finally:
        drop(dbname)


if __name__ == "__main__":
    main_guard(main)
