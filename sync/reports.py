"""The office's monthly report, counted by PostgreSQL.

Every count is a GROUP BY in the database: one pass over the month's gate records and
one over the office's slips, and only the groups (a few thousand rows at most: a node's
decisions, a gate's confiscations, an alarm type per local minute of the day) come back to
Python. Loading each payload into Python instead cost 7 s and 840 MB more RSS for 300k
records; this costs 2.9 s and nothing measurable for 4.5M (bench/office_report.py,
docs/sync.md "Reports").

Rows stored before the office checked pushes may hold anything jsonb takes (a time that is
text, 1e400, an array, a type that is an object), so nothing here casts a value PostgreSQL
could refuse: a time counts only where it is a JSON number, compared as ``numeric`` (no
float8 cast, which fails on 1e400), and a counted value is turned into text whatever it is.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection

from edge.config import DEFAULT_SHIFTS
from edge.shifts import outgoing
from edge.slips import month_bounds

# The field each counted kind keeps its time in: a gate writes an access event's ``ts``,
# an alarm's or confiscation's ``at`` and, for a slip released or rejected at the gate, the
# slip's row as it stands after closing (edge.slips._close), whose ``closed_at`` is then.
TIME_FIELDS = {
    "access_event": "ts",
    "alarm": "at",
    "confiscation": "at",
    "slip_released": "closed_at",
    "slip_rejected": "closed_at",
}
_FIELD = "CASE kind " + " ".join(f"WHEN '{k}' THEN '{f}'" for k, f in TIME_FIELDS.items()) + " END"
# When a record happened: its time field where that is a JSON number, else NULL (and NULL
# for every kind the report does not count). Migrations 0006 and 0008 index exactly this text,
# which PostgreSQL matches by expression: change both together (a test checks the plan).
# The index is partial (IS NOT NULL), and so has no statistics the planner reads: it
# takes the month for a small share of the table and reads it along the index into a hash
# aggregate, the fastest plan measured even when the month is the whole table (3.1 s over
# 4.5M records). With statistics it estimates one group per row (the keys are expressions
# of the payload) and sorts or gathers every row instead (7.3 s).
EVENT_AT = (
    f"(CASE WHEN jsonb_typeof(payload -> ({_FIELD})) = 'number' "
    f"THEN (payload -> ({_FIELD}))::numeric END)"
)


def _word(field: str) -> str:
    """A counted field as text, as the report once written in Python counted it: ``->>``
    gives a string as it is and anything else as its JSON text (true, 1.5, {"odd": 1}); a
    missing field or JSON null is "None". One lookup per row: this runs on every record of
    the month."""
    return f"coalesce(payload ->> '{field}', 'None')"


# the local minute of the day an alarm was raised at: its whole seconds (flooring keeps a
# time a hair before a shift's end in that shift, as edge.shifts compares raw times), in
# the office's zone; the roster's boundaries are whole minutes (edge.config.parse_hours)
_LOCAL = "(to_timestamp(floor(at)::float8) AT TIME ZONE %(tz)s)"
_MINUTE = f"(extract(hour FROM {_LOCAL}) * 60 + extract(minute FROM {_LOCAL}))::int"

# One pass over the month's records: each row lands in one group, keyed by what its kind
# counts (a node's decision, a node's gate, an alarm's type and local minute, a node's slip
# facts). Alarms count once, when raised; their node is not part of the key.
EVENTS_SQL = f"""
SELECT kind, node, word, minute, count(*) AS n
FROM (
    SELECT kind,
           CASE WHEN kind = 'alarm' THEN NULL ELSE node_id END AS node,
           CASE kind
               WHEN 'access_event' THEN {_word("decision")}
               WHEN 'confiscation' THEN {_word("gate")}
               WHEN 'alarm' THEN {_word("type")}
           END AS word,
           CASE WHEN kind = 'alarm' THEN {_MINUTE} END AS minute
    FROM (
        SELECT kind, node_id, payload, {EVENT_AT} AS at
        FROM edge_events
        WHERE {EVENT_AT} >= %(start)s AND {EVENT_AT} < %(end)s
          AND (kind <> 'alarm' OR payload -> 'action' = '"raised"'::jsonb)
    ) AS month
) AS counted
GROUP BY kind, node, word, minute
"""

OFFICE_SLIPS_SQL = """
SELECT status, count(*) AS n FROM slips
WHERE issued_at >= %(start)s AND issued_at < %(end)s
GROUP BY status
"""


# Key loans lent in the month, each as the gate last sent it (a loan is sent at each change:
# lent, returned, inspected, lost): per node, how many were lent, came back after their due
# time or are still out past it, and were lost. A register holds a few thousand loans a
# year: they are read on the kind's index, not the month's.
def _num(field: str) -> str:
    """A payload's field as numeric where it is a JSON number, else NULL (never a cast that
    PostgreSQL could refuse: CASE is the one order of evaluation it promises)."""
    return (f"(CASE WHEN jsonb_typeof(payload -> '{field}') = 'number' "
            f"THEN (payload -> '{field}')::numeric END)")  # fmt: skip


KEY_LOANS_SQL = f"""
SELECT node_id,
       count(*) AS lent,
       count(*) FILTER (WHERE coalesce(returned > due, due < %(now)s)) AS late,
       count(*) FILTER (WHERE lost) AS lost
FROM (
    SELECT node_id, {_num("lent_at")} AS lent, {_num("due_at")} AS due,
           {_num("returned_at")} AS returned, {_num("lost_at")} IS NOT NULL AS lost
    FROM (
        SELECT DISTINCT ON (node_id, ref) node_id, payload FROM edge_events
        WHERE kind = 'key_loan'
        ORDER BY node_id, ref, received_at DESC, epoch DESC, seq DESC
    ) AS latest
) AS loans
WHERE lent >= %(start)s AND lent < %(end)s AND due IS NOT NULL
GROUP BY node_id
"""

# Help requests' stages that ran late in the month (edge.alarms: an ``overdue`` change when
# a stage's due time passed first, a ``late`` one with ``late_s`` when it was met after it),
# by type and stage, on the alarms' time index like the rest of the month
LATE_SQL = f"""
SELECT word, action, count(*) AS n, avg(late) AS late
FROM (
    SELECT {_word("type")} || ':' || {_word("stage")} AS word, payload ->> 'action' AS action,
           {_num("late_s")} AS late
    FROM edge_events
    WHERE {EVENT_AT} >= %(start)s AND {EVENT_AT} < %(end)s AND kind = 'alarm'
      AND payload -> 'action' IN ('"overdue"'::jsonb, '"late"'::jsonb)
) AS stages
GROUP BY word, action
"""

# Patrol rounds planned in the month, as each gate judged them last (a round not done is
# judged again when a wand's reads come later: same ref, the newer record wins), by route
# and status, and by guard and status; on the kind's index, a few thousand a year
PATROL_SQL = f"""
SELECT node_id, route, status, guards, count(*) AS n
FROM (
    SELECT DISTINCT ON (node_id, ref) node_id, {_word("route")} AS route,
           {_word("status")} AS status, coalesce(payload ->> 'guards', '') AS guards,
           {_num("planned_at")} AS planned_at
    FROM edge_events WHERE kind = 'patrol_round'
    ORDER BY node_id, ref, received_at DESC, epoch DESC, seq DESC
) AS rounds
WHERE planned_at >= %(start)s AND planned_at < %(end)s
GROUP BY node_id, route, status, guards
"""

# Renovation in the month: the office's permit changes (its audit log: issued, suspended
# by a stop-work order, resumed, closed), and the gates' rectification notices issued in
# the month, each as last sent: closed in time, closed late, or open past its deadline
PERMITS_SQL = """
SELECT action, count(*) AS n FROM audit
WHERE at >= %(start)s AND at < %(end)s AND action LIKE 'permit\\_%%'
GROUP BY action
"""
RECTIFICATIONS_SQL = f"""
SELECT node_id,
       count(*) AS issued,
       count(*) FILTER (WHERE closed > deadline OR (closed IS NULL AND deadline < %(now)s))
           AS late
FROM (
    SELECT DISTINCT ON (node_id, ref) node_id, {_num("issued_at")} AS issued_at,
           {_num("deadline")} AS deadline, {_num("closed_at")} AS closed
    FROM edge_events WHERE kind = 'rectification'
    ORDER BY node_id, ref, received_at DESC, epoch DESC, seq DESC
) AS notices
WHERE issued_at >= %(start)s AND issued_at < %(end)s AND deadline IS NOT NULL
GROUP BY node_id
"""
# Visitors announced in the month at the office, and the admissions on a code at the gates
ANNOUNCED_SQL = """
SELECT count(*) FROM expected_visitors WHERE created_at >= %(start)s AND created_at < %(end)s
"""
CAME_SQL = f"""
SELECT node_id, count(*) FROM edge_events
WHERE kind = 'visitor_in' AND payload ->> 'confirmed_how' = 'announced'
  AND {_num("entered_at")} >= %(start)s AND {_num("entered_at")} < %(end)s
GROUP BY node_id
"""

OFFICE_SLIP_STATUSES = ("issued", "released", "rejected", "cancelled")
_DAY = datetime(2001, 1, 1, tzinfo=UTC).timestamp()  # any day: UTC has no DST change


@cache
def shift_at_minute(minute: int) -> str:
    """The default roster's outgoing shift at this local minute of the day: edge.shifts'
    own rule, on a day whose clock runs straight (the roster is wall-clock windows)."""
    return outgoing(DEFAULT_SHIFTS, _DAY + minute * 60, ZoneInfo("UTC")).name


def params(month: str, tz: ZoneInfo) -> dict[str, Any]:
    """The statements' parameters for ``month`` in ``tz`` (DomainError for a bad month)."""
    start, end = month_bounds(month, tz)  # refuses a month outside the years
    # the bounds as exact decimals: the gates' times are compared as numeric, never cast
    # to float8 (the office's slips, a float8 column, read them back as the same floats)
    return {"start": Decimal(repr(start)), "end": Decimal(repr(end)), "tz": tz.key}


def monthly_report(conn: Connection, month: str, tz: ZoneInfo,
                   now: float | None = None) -> dict[str, Any]:  # fmt: skip
    """The month at every gate: slips by how they ended, confiscations, alarms by type and
    by shift, decisions, key loans — from the office's own slips and what the gates sent.
    ``now``: when a loan still out counts as late (default: the month's end)."""
    p = params(month, tz)
    office_slips = dict.fromkeys(OFFICE_SLIP_STATUSES, 0)
    for status, n in conn.exec_driver_sql(OFFICE_SLIPS_SQL, p):
        if status in office_slips:
            office_slips[status] = n
    gate_slips: Counter[str] = Counter()
    confiscations: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    by_shift: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    for kind, node, word, minute, n in conn.exec_driver_sql(EVENTS_SQL, p):
        if kind == "access_event":
            decisions[f"{node}:{word}"] += n
        elif kind == "confiscation":
            confiscations[f"{node}:{word}"] += n
        elif kind == "alarm":
            by_type[word] += n
            by_shift[shift_at_minute(minute)] += n
        else:  # slip_released, slip_rejected
            gate_slips[f"{node}:{kind}"] += n
    key_loans: dict[str, int] = {}
    until = p["end"] if now is None else min(p["end"], Decimal(repr(now)))
    for node, lent, late, lost in conn.exec_driver_sql(KEY_LOANS_SQL, p | {"now": until}):
        key_loans |= {f"{node}:lent": lent, f"{node}:late": late, f"{node}:lost": lost}
    late: dict[str, int] = {}
    late_minutes: dict[str, float] = {}
    for word, action, n, avg in conn.exec_driver_sql(LATE_SQL, p):
        if action == "overdue":
            late[word] = n
        elif avg is not None:
            late_minutes[word] = round(float(avg) / 60, 1)
    by_route: Counter[str] = Counter()
    by_guard: Counter[str] = Counter()
    for node, route, status, guards, n in conn.exec_driver_sql(PATROL_SQL, p):
        by_route[f"{node}:{route}:{status}"] += n
        for guard in guards.split(",") if guards else ["—"]:
            by_guard[f"{guard}:{status}"] += n
    until_now = p["end"] if now is None else min(p["end"], Decimal(repr(now)))
    renovation: dict[str, int] = {}
    for action, n in conn.exec_driver_sql(PERMITS_SQL, p):
        renovation[action] = n  # permit_issue, permit_suspend, permit_resume, permit_close
    for node, issued, behind in conn.exec_driver_sql(RECTIFICATIONS_SQL, p | {"now": until_now}):
        renovation |= {f"{node}:rectifications": issued, f"{node}:rectifications_late": behind}
    visits = {"announced": int(conn.exec_driver_sql(ANNOUNCED_SQL, p).scalar_one())}
    for node, n in conn.exec_driver_sql(CAME_SQL, p):
        visits[f"{node}:came"] = n
    return {
        "month": month,
        "office_slips": office_slips,
        "gate_slips": dict(sorted(gate_slips.items())),
        "confiscations": dict(sorted(confiscations.items())),
        "alarms_by_type": dict(sorted(by_type.items())),
        "alarms_by_shift": dict(sorted(by_shift.items())),
        "decisions": dict(sorted(decisions.items())),
        "key_loans": dict(sorted(key_loans.items())),
        # each help request's stage that went past its due time; how late, on average, the
        # ones met after it were (minutes)
        "late_requests": dict(sorted(late.items())),
        "late_minutes": dict(sorted(late_minutes.items())),
        # patrol rounds: per gate and route, and per guard, how many were done, incomplete
        # (checkpoints missed) or missed (not walked)
        "patrol_by_route": dict(sorted(by_route.items())),
        "patrol_by_guard": dict(sorted(by_guard.items())),
        # renovation permits' changes at the office; rectification notices at each gate,
        # and how many were put right late or are still open past their deadline
        "renovation": dict(sorted(renovation.items())),
        # visitors announced at the office, and how many came on their code at each gate
        "announced_visitors": dict(sorted(visits.items())),
    }
