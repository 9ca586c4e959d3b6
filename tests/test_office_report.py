"""The office's monthly report, counted by PostgreSQL (sync.reports), and the keyset pages
of the office's event list.

The report's records are stored straight into a scratch office database: a month of
every kind it counts, in the payloads the gates write (the slips' made by edge.slips
itself), alarms at each shift's edges, rows the push's checks would refuse now (stored
before them), and records of the months either side. Every count is checked exactly."""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine

from edge import db, slips
from edge.config import DEFAULT_SHIFTS
from edge.shifts import outgoing
from edge.slips import Item, SlipRequest, month_bounds
from sync import office, officedb, partitions, reports
from sync import schema as t
from tests.helpers import Office

TZ = ZoneInfo("Asia/Shanghai")
MONTH = "2026-03"
START, END = month_bounds(MONTH, TZ)


def local(day: int, hh: int, mm: int, ss: float = 0.0) -> float:
    """A moment of March 2026 in the office's zone, as a gate writes a time."""
    return datetime(2026, 3, day, hh, mm, tzinfo=TZ).timestamp() + ss


@pytest.fixture
def eng(pg_url: str) -> Iterator[Engine]:
    e = officedb.engine(pg_url)
    officedb.migrate(e)
    yield e
    e.dispose()


class Store:
    """Rows put into edge_events as a push would leave them (or as an older office did)."""

    def __init__(self, eng: Engine) -> None:
        self.eng = eng
        self.seq: Counter[str] = Counter()
        self.kinds: dict[tuple[str, int, int], str] = {}

    def add(self, node: str, kind: str, payload: Any, received_at: float | None = None,
            ref: str = "r") -> None:  # fmt: skip
        """``payload``: an object, or the stored text itself (as jsonb takes it: 1e400,
        3,000 levels, which Python would not read back)."""
        text_ = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
        self.seq[node] += 1
        self.kinds[(node, 1, self.seq[node])] = kind
        with self.eng.begin() as c:
            c.exec_driver_sql(
                "INSERT INTO edge_events (node_id, epoch, seq, kind, ref, payload, sha256, "
                "received_at) VALUES (%(n)s, 1, %(s)s, %(k)s, %(ref)s, %(p)s::jsonb, %(h)s, "
                "%(r)s)",
                {"n": node, "s": self.seq[node], "k": kind, "p": text_, "ref": ref,
                 "h": hashlib.sha256(text_.encode()).hexdigest(),
                 "r": START if received_at is None else received_at},
            )  # fmt: skip


def feb_late(eng: Any) -> dict[str, int]:
    with eng.connect() as c:
        return dict(reports.monthly_report(c, "2026-02", TZ)["late_requests"])


def gate_slip_payloads(tmp_path: Path, closes: list[tuple[str, float]]) -> list[tuple[str, str]]:
    """What a gate sends for slips it released or rejected at these times: (kind, payload),
    made by edge.slips on a node database of its own, as read from its outbox."""
    path = tmp_path / "gate.db"
    db.migrate(path)
    conn = db.connect(path)
    req = SlipRequest(unit="3-1-502", owner="张三丰", bearer="张三丰", authorisation="in_person",
                      items=[Item("冰箱", 1)])  # fmt: skip
    for how, when in closes:
        with conn:
            number = slips.issue(conn, req, "admin", when - 60, TZ)
            if how == "released":
                slips.release(conn, 1, number, "门岗", when, "main", None)
            elif how == "rejected":
                slips.reject(conn, 1, number, "门岗", when, "main", "物品不符")
            else:
                slips.cancel(conn, 1, number, "admin", when, "业主改期")
    rows = conn.execute("SELECT kind, payload FROM outbox ORDER BY seq").fetchall()
    conn.close()
    assert [k for k, _ in rows] == [f"slip_{how}" for how, _ in closes]
    return [(str(k), str(p)) for k, p in rows]


def test_the_monthly_report_counts_every_record_of_the_month_exactly(
    eng: Engine, tmp_path: Path
) -> None:
    s = Store(eng)
    before, after = START - 0.001, END  # the last moment of February, the first of April

    # decisions per node; a time at the month's first instant counts, its end does not
    for node, ts, decision in [
        ("gate-a", local(1, 9, 0), "grant"), ("gate-a", local(15, 12, 0), "grant"),
        ("gate-a", local(31, 23, 59, 59.5), "grant"), ("gate-a", local(2, 7, 0), "deny"),
        ("gate-a", local(3, 7, 0), "deny"), ("gate-b", local(4, 8, 0), "grant"),
        ("gate-b", START, "deny"), ("gate-b", before, "grant"), ("gate-b", after, "grant"),
    ]:  # fmt: skip
        s.add(node, "access_event", {"ts": ts, "decision": decision, "gate": "main"})
    # a decision that is no word, as the office once stored: counted by its JSON text
    s.add("gate-a", "access_event", {"ts": local(5, 1, 0)})  # none at all: "None"
    s.add("gate-a", "access_event", {"ts": local(5, 2, 0), "decision": None})
    s.add("gate-a", "access_event", {"ts": local(5, 3, 0), "decision": {"odd": 1}})
    s.add("gate-a", "access_event", {"ts": local(5, 4, 0), "decision": True})
    s.add("gate-a", "access_event", {"ts": local(5, 5, 0), "decision": 7})
    s.add("gate-a", "access_event", {"ts": local(5, 6, 0), "decision": "准许"})
    # times that are no time: never counted, and never the report's failure
    month_ts = local(6, 10, 0)
    for odd in [
        '{"ts": "soon", "decision": "grant"}', '{"ts": 1e400, "decision": "grant"}',
        '{"ts": -1e300, "decision": "grant"}', '{"ts": true, "decision": "grant"}',
        '{"ts": null, "decision": "grant"}', f'{{"ts": [{month_ts}], "decision": "grant"}}',
        '{"decision": "grant"}', "[1, 2]", '"grant"', "null", "1e400",
        '{"ts": ' + "9" * 5000 + ', "decision": "grant"}',
    ]:  # fmt: skip
        s.add("gate-c", "access_event", odd)
    # payloads Python would not read (1e400 elsewhere, 3,000 levels): counted all the same
    s.add("gate-c", "access_event",
          f'{{"ts": {month_ts}, "decision": "deny", "n": 1e400, "deep": '
          + "[" * 3000 + "]" * 3000 + "}")  # fmt: skip
    s.add("gate-c", "access_event",
          f'{{"ts": {month_ts}, "decision": "deny", "big": {"9" * 5000}}}')  # fmt: skip

    # alarms: counted once, when raised, by type and by the shift that was on duty
    raised = [
        (local(1, 7, 59, 59.999), "fire", "night"),
        (local(1, 8, 0), "fire", "day"),  # the day shift's first moment
        (local(2, 15, 45), "repair", "day"),  # day and evening overlap: the day ends first
        (local(2, 16, 29, 59.9999997), "repair", "day"),  # a hair before the day's end
        (local(2, 16, 30), "first_aid", "evening"),
        (local(3, 23, 45), "first_aid", "evening"),  # evening and night: evening ends first
        (local(4, 0, 0), "first_aid", "night"),  # the evening ends at midnight
        (local(4, 23, 29), "intrusion", "evening"),
        (START, "intrusion", "night"),
        (local(9, 12, 0), {"odd": 1}, "day"),
        (local(9, 3, 0), None, "night"),
    ]
    for at, type_, shift in raised:
        assert outgoing(DEFAULT_SHIFTS, at, TZ).name == shift  # the gates' own rule agrees
        payload = {"action": "raised", "at": at, "gate": "main"}
        s.add("gate-a", "alarm", payload if type_ is None else payload | {"type": type_})
    for node, payload in [
        ("gate-a", {"action": "acknowledged", "at": local(1, 8, 1), "type": "fire"}),
        ("gate-a", {"action": "closed", "at": local(1, 9, 0), "type": "fire"}),
        ("gate-a", {"action": "Raised", "at": local(1, 9, 0), "type": "fire"}),
        ("gate-a", {"at": local(1, 9, 0), "type": "fire"}),
        ("gate-b", {"action": "raised", "at": "08:00", "type": "fire"}),
        ("gate-b", {"action": "raised", "at": before, "type": "fire"}),
        ("gate-b", {"action": "raised", "at": after, "type": "fire"}),
        ("gate-b", {"action": "raised", "ts": local(1, 9, 0), "type": "fire"}),  # wrong field
    ]:
        s.add(node, "alarm", payload)
    s.add("gate-b", "alarm", '{"action": "raised", "at": 1e400, "type": "fire"}')

    # confiscations per node and gate
    for node, at, gate in [
        ("gate-a", local(7, 10, 0), "main"), ("gate-a", local(8, 10, 0), "main"),
        ("gate-a", local(9, 10, 0), "side"), ("gate-b", local(9, 11, 0), None),
        ("gate-b", before, "main"), ("gate-b", after, "main"),
    ]:  # fmt: skip
        s.add(node, "confiscation", {"pass_id": "p1", "at": at} | ({"gate": gate} if gate else {}))
    s.add("gate-b", "confiscation", {"pass_id": "p2", "at": local(9, 12, 0), "gate": None})
    s.add("gate-b", "confiscation", {"pass_id": "p3", "at": "noon", "gate": "main"})

    # slips released and rejected at the gates, as edge.slips writes them (closed_at)
    closes = [("released", local(10, 9, 0)), ("released", local(10, 10, 0)),
              ("rejected", local(10, 11, 0)), ("released", local(11, 9, 0)),
              ("released", before), ("rejected", after),
              ("cancelled", local(12, 9, 0))]  # fmt: skip
    made = gate_slip_payloads(tmp_path, closes)
    for node, (kind, payload) in zip(["gate-a"] * 3 + ["gate-b"] * 4, made, strict=True):
        s.add(node, kind, payload)
    assert all("closed_at" in json.loads(p) for _, p in made)

    # help requests' stages that ran late: counted when overdue, averaged when met late
    for node, payload in [
        ("gate-a", {"action": "overdue", "stage": "dispatched", "at": local(5, 9, 0)}),
        ("gate-b", {"action": "overdue", "stage": "dispatched", "at": local(6, 9, 0)}),
        ("gate-a", {"action": "overdue", "stage": "resolved", "at": local(5, 10, 0)}),
        ("gate-a", {"action": "late", "stage": "dispatched", "late_s": 600, "at": local(5, 9, 5)}),
        ("gate-b", {"action": "late", "stage": "dispatched", "late_s": 1200,
                    "at": local(6, 9, 20)}),
        ("gate-a", {"action": "late", "stage": "dispatched", "late_s": 300, "at": local(7, 9, 0),
                    "type": "repair"}),
        ("gate-a", {"action": "overdue", "stage": "resolved", "at": before}),  # last month
        ("gate-a", {"action": "late", "stage": "resolved", "late_s": "long",
                    "at": local(5, 11, 0)}),
    ]:  # fmt: skip
        s.add(node, "alarm", {"type": "complaint"} | payload)

    # rectification notices, each as last sent: put right in time, late, last month's
    for ref, notice in [
        ("ZG-1", {"issued_at": local(4, 9, 0), "deadline": local(6, 9, 0)}),
        ("ZG-1", {"issued_at": local(4, 9, 0), "deadline": local(6, 9, 0),
                  "closed_at": local(5, 9, 0)}),
        ("ZG-2", {"issued_at": local(4, 10, 0), "deadline": local(5, 10, 0),
                  "closed_at": local(7, 10, 0)}),
        ("ZG-3", {"issued_at": before, "deadline": local(2, 10, 0)}),
    ]:  # fmt: skip
        s.add("gate-a", "rectification", notice | {"number": ref}, ref=ref)
    # an admission on an announced visitor's code, and a visitor registered at the gate
    s.add("gate-b", "visitor_in", {"confirmed_how": "announced", "entered_at": local(8, 18, 0)})
    s.add("gate-b", "visitor_in", {"confirmed_how": "phone", "entered_at": local(8, 19, 0)})

    # patrol rounds, by when they were planned, each as its gate judged it last: a round
    # judged again when a wand's reads came later is sent again with the same ref
    for node, ref, payload in [
        ("gate-a", "1", {"planned_at": local(2, 9, 0), "status": "done", "guards": "老王"}),
        ("gate-a", "2", {"planned_at": local(2, 15, 0), "status": "done", "guards": "小周,老王"}),
        ("gate-a", "3", {"planned_at": local(3, 9, 0), "status": "missed"}),
        ("gate-b", "1", {"planned_at": local(3, 9, 0), "status": "incomplete", "guards": "小周"}),
        ("gate-b", "2", {"planned_at": local(4, 9, 0), "status": "missed"}),
        ("gate-b", "2", {"planned_at": local(4, 9, 0), "status": "done", "guards": "小周"}),
        ("gate-b", "3", {"planned_at": before, "status": "done", "guards": "老王"}),  # last month
        ("gate-b", "4", {"planned_at": "09:00", "status": "done", "guards": "老王"}),
    ]:  # fmt: skip
        s.add(node, "patrol_round", {"route": "garden"} | payload, ref=ref)

    # key loans, each as its latest record says: lent in the month, late, lost
    loans = [
        ("gate-a", "1", {"lent_at": local(2, 9, 0), "due_at": local(5, 9, 0)}),
        ("gate-a", "1", {"lent_at": local(2, 9, 0), "due_at": local(5, 9, 0),
                         "returned_at": local(6, 9, 0)}),  # back a day late
        ("gate-a", "2", {"lent_at": local(3, 9, 0), "due_at": local(6, 9, 0),
                         "returned_at": local(4, 9, 0)}),
        ("gate-a", "3", {"lent_at": local(3, 10, 0), "due_at": local(6, 10, 0),
                         "returned_at": local(5, 0, 0), "lost_at": local(5, 0, 0)}),
        ("gate-b", "1", {"lent_at": local(20, 9, 0), "due_at": local(23, 9, 0)}),  # still out
        ("gate-b", "8", {"lent_at": before, "due_at": local(2, 9, 0)}),  # lent last month
        ("gate-b", "9", {"lent_at": "soon", "due_at": local(23, 9, 0)}),
    ]  # fmt: skip
    for node, ref, loan in loans:
        s.add(node, "key_loan", loan | {"key_id": "B5-1203"}, ref=ref)

    # kinds the report does not count, with times in the month
    s.add("gate-a", "duty_log", {"id": 1, "at": local(3, 3, 0), "text": "交接"})
    s.add("gate-a", "visitor_in", {"id": 1, "ts": local(3, 3, 0), "decision": "grant"})

    # the office's own slips, by when they were issued
    with eng.begin() as c:
        for number, status, issued_at in [
            ("FO-1", "issued", local(2, 9, 0)), ("FO-2", "issued", local(3, 9, 0)),
            ("FO-3", "released", local(4, 9, 0)), ("FO-4", "cancelled", START),
            ("FO-5", "issued", before), ("FO-6", "rejected", after),
        ]:  # fmt: skip
            c.execute(t.slips.insert().values(
                number=number, unit="3-1-502", owner="张三丰", bearer="张三丰",
                authorisation="in_person", authorisation_detail={}, items=[], hazard_allowed=0,
                valid_from=issued_at, valid_until=issued_at + 86400, status=status, version=1,
                issued_by="客服小王", issued_at=issued_at,
            ))  # fmt: skip

    with eng.connect() as c:
        report = reports.monthly_report(c, MONTH, TZ)
        assert office.monthly_report(c, MONTH, TZ) == report  # the office's name for it
    assert report == {
        "month": MONTH,
        "office_slips": {"issued": 2, "released": 1, "rejected": 0, "cancelled": 1},
        "gate_slips": {
            "gate-a:slip_rejected": 1,
            "gate-a:slip_released": 2,
            "gate-b:slip_released": 1,
        },
        "confiscations": {"gate-a:main": 2, "gate-a:side": 1, "gate-b:None": 2},
        "alarms_by_type": {
            "fire": 2,
            "repair": 2,
            "first_aid": 3,
            "intrusion": 2,
            '{"odd": 1}': 1,
            "None": 1,
        },
        "alarms_by_shift": {"day": 4, "evening": 3, "night": 4},
        "decisions": {
            "gate-a:grant": 3,
            "gate-a:deny": 2,
            "gate-a:None": 2,
            'gate-a:{"odd": 1}': 1,
            "gate-a:true": 1,
            "gate-a:7": 1,
            "gate-a:准许": 1,
            "gate-b:grant": 1,
            "gate-b:deny": 1,
            "gate-c:deny": 2,
        },
        "key_loans": {
            "gate-a:lent": 3,
            "gate-a:late": 1,
            "gate-a:lost": 1,
            "gate-b:lent": 1,
            "gate-b:late": 1,
            "gate-b:lost": 0,
        },
        "late_requests": {"complaint:dispatched": 2, "complaint:resolved": 1},
        "late_minutes": {"complaint:dispatched": 15.0, "repair:dispatched": 5.0},
        "patrol_by_route": {
            "gate-a:garden:done": 2,
            "gate-a:garden:missed": 1,
            "gate-b:garden:incomplete": 1,
            "gate-b:garden:done": 1,  # judged again: missed, then done
        },
        "patrol_by_guard": {"—:missed": 1, "小周:done": 2, "小周:incomplete": 1, "老王:done": 2},
        "renovation": {"gate-a:rectifications": 2, "gate-a:rectifications_late": 1},
        "announced_visitors": {"announced": 0, "gate-b:came": 1},
    }
    assert feb_late(eng) == {"complaint:resolved": 1}
    # the months either side hold what was left out, and nothing of March
    with eng.connect() as c:
        feb = reports.monthly_report(c, "2026-02", TZ)
        apr = reports.monthly_report(c, "2026-04", TZ)
    assert feb["decisions"] == {"gate-b:grant": 1} and apr["decisions"] == {"gate-b:grant": 1}
    assert feb["gate_slips"] == {"gate-b:slip_released": 1}
    assert apr["gate_slips"] == {"gate-b:slip_rejected": 1}
    assert feb["alarms_by_type"] == apr["alarms_by_type"] == {"fire": 1}
    assert feb["office_slips"]["issued"] == 1 and apr["office_slips"]["rejected"] == 1


@pytest.mark.parametrize(
    ("zone", "month"),
    [("Asia/Shanghai", "2026-07"), ("Europe/Berlin", "2026-03"), ("America/New_York", "2026-11")],
)
def test_alarms_fall_in_the_shift_the_gates_own_rule_names(
    eng: Engine, zone: str, month: str
) -> None:
    """Alarms at random moments (and at every minute around each shift's edges, and on the
    days the clocks change) land in the shift edge.shifts.outgoing names for them."""
    tz = ZoneInfo(zone)
    start, end = month_bounds(month, tz)
    rnd = random.Random(month)
    times = [rnd.uniform(start, end) for _ in range(300)]
    first = datetime.fromtimestamp(start, tz)
    for day in range(0, 28, 3):
        for hh, mm in ((0, 0), (7, 59), (8, 0), (15, 29), (15, 30), (16, 29), (16, 30),
                       (23, 29), (23, 30), (23, 59)):  # fmt: skip
            moment = datetime.combine(first.date() + timedelta(days=day), datetime.min.time(), tz)
            times.append(moment.replace(hour=hh, minute=mm).timestamp() + rnd.random())
    # the days the clocks change (the last Sunday of March in Berlin, November 1 in New York)
    for change in (datetime(2026, 3, 29, tzinfo=tz), datetime(2026, 11, 1, tzinfo=tz)):
        times += [change.timestamp() + k * 600 for k in range(144)]
    times = [x for x in times if start <= x < end]
    s = Store(eng)
    for at in times:
        s.add("gate-a", "alarm", {"action": "raised", "at": at, "type": "fire"})
    with eng.connect() as c:
        report = reports.monthly_report(c, month, tz)
    assert report["alarms_by_shift"] == dict(
        Counter(outgoing(DEFAULT_SHIFTS, at, tz).name for at in times)
    )
    assert report["alarms_by_type"] == {"fire": len(times)}


def test_the_report_reads_the_month_by_its_index(eng: Engine) -> None:
    """Migration 0008 indexes sync.reports.EVENT_AT as text of its own: the planner takes
    the index only while the two are the same expression. Each month's partition has its
    own copy of the index (PostgreSQL names it after the partition)."""
    with eng.connect() as c:
        plan = "\n".join(r[0] for r in c.exec_driver_sql(
            "EXPLAIN " + reports.EVENTS_SQL, reports.params(MONTH, TZ)))  # fmt: skip
        months = [p["partition"] for p in partitions.months(c)]
    # (each month as PostgreSQL plans a table never analysed: the index is the cheaper path)
    assert len(months) >= 3 and all(f"Index Scan on {m}_case_idx" in plan for m in months), plan


def test_a_month_outside_the_years_is_refused_by_name(eng: Engine) -> None:
    with eng.connect() as c:
        for bad in ("9999-12", "2026-13", "march"):
            with pytest.raises(ValueError, match=r"^month: "):
                reports.monthly_report(c, bad, TZ)


# -- GET /api/v1/events: keyset pages ------------------------------------------------------


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_event_pages_show_every_row_once_while_rows_arrive(pg_url: str, tmp_path: Path) -> None:
    o = Office(tmp_path, pg_url)
    clerk = o.token("user", "add", "客服小王", "--role", "clerk")
    o.start()
    try:
        eng = officedb.engine(pg_url)
        s = Store(eng)
        # many rows share a received_at (one push's batch; several gates in one second):
        # the node, epoch and seq order them
        for i in range(230):
            node = ("gate-a", "gate-b", "gate-c")[i % 3]
            kind = "alarm" if i % 4 == 0 else "access_event"
            s.add(node, kind, {"ts": 1e9 + i, "n": i}, received_at=1.7e9 + i // 9)
        s.add("gate-a", "access_event", "[1, 2]", received_at=1.7e9)  # an odd payload, kept
        first = {(n, 1, q) for n, q in s.seq.items() for q in range(1, q + 1)}

        def walk(query: str, limit: int, arrive: bool) -> list[tuple[str, int, int]]:
            seen: list[tuple[str, int, int]] = []
            cursor = None
            while True:
                path = f"/api/v1/events?limit={limit}{query}"
                status, page = o.call("GET", path + (f"&cursor={cursor}" if cursor else ""),
                                      clerk)  # fmt: skip
                assert status == 200, page
                seen += [(x["node"], x["epoch"], x["seq"]) for x in page["items"]]
                if arrive:  # newer records arrive between two pages
                    s.add("gate-b", "access_event", {"ts": 2e9, "late": True},
                          received_at=1.8e9 + len(seen))  # fmt: skip
                cursor = page["next"]
                if cursor is None:
                    return seen

        seen = walk("", 17, arrive=True)
        assert len(seen) == len(set(seen)) and set(seen) == first
        with eng.connect() as c:  # newest first, ties by node, epoch and seq, descending
            rows = c.exec_driver_sql(
                "SELECT node_id, epoch, seq FROM edge_events WHERE received_at < 1.8e9 "
                "ORDER BY received_at DESC, node_id DESC, epoch DESC, seq DESC"
            ).fetchall()
        assert seen == [tuple(r) for r in rows]
        # filtered walks, and one page of everything
        alarms_b = {key for key in first if key[0] == "gate-b" and s.kinds[key] == "alarm"}
        got = walk("&node=gate-b&kind=alarm", 5, arrive=False)
        assert len(got) == len(set(got)) and set(got) == alarms_b
        status, page = o.call("GET", "/api/v1/events?limit=1000", clerk)
        assert status == 200 and page["next"] is None
        odd = {"payload": [1, 2], "node": "gate-a", "kind": "access_event", "epoch": 1}
        assert odd | {"seq": max(q for n, _, q in first if n == "gate-a")} in page["items"]

        # a cursor is the office's to give: anything else is a 422 naming it, never a 500
        status, page = o.call("GET", "/api/v1/events?limit=2", clerk)
        good = page["next"]
        assert o.call("GET", f"/api/v1/events?limit=2&cursor={good}", clerk)[0] == 200
        for bad in [
            "abc", "!!!!", good[:-3], good + "x" * 8, "x" * 1001, "0",
            _cursor([1.7e9, "gate-a", 1]), _cursor({"received_at": 1.7e9}),
            _cursor(["1.7e9", "gate-a", 1, 1]), _cursor([1.7e9, 5, 1, 1]),
            _cursor([1.7e9, "gate-a", 1.5, 1]), _cursor([1.7e9, "gate-a", 1, 2**63]),
            _cursor([1.7e9, "gate-a", True, 1]), _cursor([10**400, "gate-a", 1, 1]),
            _cursor([1.7e9, "a\x00", 1, 1]),
            _cursor([1.7e9, "\ud800", 1, 1]), _cursor([[[[]]]]),
            base64.urlsafe_b64encode(b"\xff\xfe[").decode(),
        ]:  # fmt: skip
            status, answer = o.call("GET", f"/api/v1/events?cursor={bad}", clerk)
            assert status == 422, (bad, status, answer)
            assert "cursor" in answer["detail"], answer
        eng.dispose()
    finally:
        o.stop()


def test_the_cursor_is_opaque_and_exact() -> None:
    from sync.office_api import event_cursor, read_event_cursor

    key = (1772294400.1234567, "门岗-1", 3, 2**62)
    text_ = event_cursor(*key)
    assert all(c.isalnum() or c in "-_" for c in text_)
    assert read_event_cursor(text_) == key


def test_a_cursor_carries_any_node_id_the_office_registers() -> None:
    """The office's ``node add`` takes any id (a gate's own config: 64 characters of
    letters, digits, _ . -): the cursor of a long one still fits the query's limit."""
    from sync.office_api import CURSOR_MAX, event_cursor, read_event_cursor

    key = (1.7e9 + 0.123456, "门岗" * 100, -(2**63), 2**63 - 1)
    assert len(event_cursor(*key)) <= CURSOR_MAX
    assert read_event_cursor(event_cursor(*key)) == key


def test_a_row_with_any_float8_time_still_pages() -> None:
    """received_at is the office's clock, but float8 holds NaN and infinity too: such a
    row's cursor reads back (PostgreSQL orders them), rather than ending the walk."""
    from sync.office_api import event_cursor, read_event_cursor

    for odd in (float("inf"), float("-inf")):
        assert read_event_cursor(event_cursor(odd, "gate-a", 1, 1)) == (odd, "gate-a", 1, 1)
    got = read_event_cursor(event_cursor(float("nan"), "gate-a", 1, 1))
    assert got[0] != got[0] and got[1:] == ("gate-a", 1, 1)
