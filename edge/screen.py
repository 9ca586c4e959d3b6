"""What the guard's screen shows of a decision: the event, the holder whole (the guard
compares name and photo with the person in front of them, as ``/check`` answers), the pass
and the camera's picture of the moment."""

from __future__ import annotations

import sqlite3
from typing import Any

from edge import db, pass_reads
from edge.config import Config
from edge.errors import NotFound
from edge.snapshots import JOIN_COLUMNS
from edge.views import event_view, pass_view


def decision_detail(conn: sqlite3.Connection, cfg: Config, event_id: str) -> dict[str, Any]:
    found = db.rows(
        conn,
        f"SELECT e.*, {JOIN_COLUMNS} FROM access_events e "
        "LEFT JOIN snapshots s ON s.id = e.snapshot_id WHERE e.event_id = ?",
        (event_id,),
    )
    if not found:
        raise NotFound(f"no access event {event_id!r}")
    row = found[0]
    event = event_view(row, cfg.tz, False, cfg.rules.name_mask)
    event["holder"] = row["holder"]
    shown = None
    if row["pass_id"]:
        try:
            p = dict(pass_reads.get_pass(conn, row["pass_id"]))
        except NotFound:  # a QR pass the office signed but this gate has not synced
            p = None
        if p is not None:
            shown = pass_view(p, cfg.tz, False, cfg.rules.name_mask) | {"name": p["name"]}
    return {"event": event, "pass": shown}


def recent(conn: sqlite3.Connection, cfg: Config, gates: list[str], n: int = 12) -> list[dict]:
    """The last ``n`` decisions at these gates, newest first, as ``decision_detail``."""
    marks = ",".join("?" * len(gates))
    ids = [
        r[0]
        for r in conn.execute(
            # +gate: walk the newest rows back and stop at n, rather than read all of the
            # gates' events by the (gate, ts) index and sort them
            f"SELECT event_id FROM access_events WHERE +gate IN ({marks}) ORDER BY id DESC LIMIT ?",
            (*gates, n),
        )
    ]
    return [decision_detail(conn, cfg, i) for i in ids]
