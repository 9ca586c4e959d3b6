"""Alarm workload, as EEMUA 191 and ISA-18.2 measure it (research §1.3): alarms per
10 minutes (per operator), floods (> 10 in 10 minutes), stale alarms (open > 24 h),
chattering sources (>= 3 activations within 60 s), the priority mix."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter, defaultdict
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

WINDOW_S = 600.0
FLOOD_ABOVE = 10
CHATTER_COUNT, CHATTER_WINDOW_S = 3, 60.0
STALE_S = 24 * 3600.0


def max_in_window(times: list[float], window: float) -> int:
    """The most timestamps inside any ``window``-long interval (times sorted)."""
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


ACK_BANDS = (("<1m", 0, 60), ("1-5m", 60, 300), ("5-15m", 300, 900),
             ("15-60m", 900, 3600), (">1h", 3600, math.inf))  # fmt: skip


def workload(
    conn: sqlite3.Connection, start: float, end: float, now: float, tz: ZoneInfo
) -> dict[str, Any]:
    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")

    windows = max(1, math.ceil((end - start) / WINDOW_S))
    raised = [
        r[0]
        for r in conn.execute(
            "SELECT at FROM alarm_log WHERE action = 'raised' AND at >= ? AND at < ? ORDER BY at",
            (start, end),
        )
    ]
    per_window = Counter(int((t - start) // WINDOW_S) for t in raised)
    floods = sum(1 for n in per_window.values() if n > FLOOD_ABOVE)
    acked = Counter(
        r[0]
        for r in conn.execute(
            "SELECT by FROM alarm_log WHERE action = 'acked' AND at >= ? AND at < ?", (start, end)
        )
    )
    activations: dict[int, list[float]] = defaultdict(list)
    for alarm_id, at in conn.execute(
        "SELECT alarm_id, at FROM alarm_log WHERE action IN ('raised', 'activated') "
        "AND at >= ? AND at < ? ORDER BY at",
        (start, end),
    ):
        activations[alarm_id].append(at)
    chattering = []
    for alarm_id, times in activations.items():
        peak = max_in_window(times, CHATTER_WINDOW_S)
        if peak >= CHATTER_COUNT:
            source, kind = conn.execute(
                "SELECT source, type FROM alarms WHERE id = ?", (alarm_id,)
            ).fetchone()
            chattering.append({"alarm_id": alarm_id, "source": source, "type": kind,
                               "activations": len(times), "max_in_60s": peak})  # fmt: skip
    chattering.sort(key=lambda c: -c["activations"])
    stale = [
        {"id": i, "type": k, "raised_at": iso(t), "hours_open": round((now - t) / 3600, 1)}
        for i, k, t in conn.execute(
            "SELECT id, type, raised_at FROM alarms WHERE state != 'closed' AND raised_at < ? "
            "ORDER BY raised_at",
            (now - STALE_S,),
        )
    ]
    priorities = Counter(
        str(r[0])
        for r in conn.execute(
            "SELECT priority FROM alarms WHERE raised_at >= ? AND raised_at < ?", (start, end)
        )
    )
    slowest = conn.execute(
        "SELECT max(coalesce(acked_at, ?) - raised_at) FROM alarms "
        "WHERE raised_at >= ? AND raised_at < ?",
        (now, start, end),
    ).fetchone()[0]
    unacked = conn.execute(
        "SELECT count(*) FROM alarms WHERE acked_at IS NULL AND state != 'closed'"
    ).fetchone()[0]
    ack_times = [
        r[0]
        for r in conn.execute(
            "SELECT acked_at - raised_at FROM alarms WHERE acked_at IS NOT NULL "
            "AND raised_at >= ? AND raised_at < ?",
            (start, end),
        )
    ]
    return {
        "from": iso(start),
        "until": iso(end),
        "raised": len(raised),
        "per_10min": round(len(raised) / windows, 2),
        "per_operator": [
            {"operator": who, "acked": n, "per_10min": round(n / windows, 2)}
            for who, n in acked.most_common()
        ],
        "flood": {
            "windows": windows,
            "flood_windows": floods,
            "time_in_flood_pct": round(100 * floods / windows, 2),
            "max_in_10min": max(per_window.values(), default=0),
        },
        "stale": stale,
        "chattering": chattering,
        "priorities": {p: priorities.get(p, 0) for p in ("1", "2", "3")},
        "max_unacked_s": round(slowest or 0.0, 1),
        "unacked_now": unacked,
        # for the board's charts: alarms raised in each 10-minute window, and how long the
        # acknowledged ones waited, in bands
        "series_10min": [
            {"at": iso(start + i * WINDOW_S), "raised": per_window.get(i, 0)}
            for i in range(windows)
        ],
        "time_to_ack": {
            band: sum(1 for d in ack_times if lo <= d < hi) for band, lo, hi in ACK_BANDS
        },
    }
