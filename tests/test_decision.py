"""The gate decision: a table of cases and properties that must hold whatever the input."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.decision import KINDS, STATUSES, PassView, Reason, SiteRules, decide

TZ = ZoneInfo("Asia/Shanghai")
RULES = SiteRules(tz=TZ)
NOON = datetime(2026, 11, 22, 12, 0, tzinfo=TZ).timestamp()
DAY = 86400.0


def view(**kw) -> PassView:
    base = dict(id="p1", kind="resident", status="active", valid_from=NOON - DAY, valid_until=None)
    return PassView(**(base | kw))


def at(hh: int, mm: int = 0) -> float:
    return datetime(2026, 11, 22, hh, mm, tzinfo=TZ).timestamp()


CASES = [
    ("no pass", [], NOON, "main", False, Reason.UNKNOWN_CREDENTIAL),
    ("resident", [view()], NOON, "main", True, Reason.OK),
    ("revoked", [view(status="revoked")], NOON, "main", False, Reason.REVOKED),
    ("confiscated", [view(status="confiscated")], NOON, "main", False, Reason.CONFISCATED),
    ("unknown status never grants", [view(status="lost?")], NOON, "main", False, Reason.REVOKED),
    ("not yet valid", [view(valid_from=NOON + 1)], NOON, "main", False, Reason.NOT_YET_VALID),
    ("expired", [view(valid_until=NOON)], NOON, "main", False, Reason.EXPIRED),
    ("last second valid", [view(valid_until=NOON + 1)], NOON, "main", True, Reason.OK),
    (
        "worker at noon",
        [view(kind="worker", valid_until=NOON + DAY)],
        NOON,
        "main",
        True,
        Reason.OK,
    ),
    ("worker at 19:00", [view(kind="worker")], at(19), "main", False, Reason.OUTSIDE_HOURS),
    ("worker at 06:59", [view(kind="worker")], at(6, 59), "main", False, Reason.OUTSIDE_HOURS),
    ("worker at 07:00", [view(kind="worker")], at(7), "main", True, Reason.OK),
    (
        "own window across midnight",
        [view(daily_window=(time(22), time(6)))],
        at(23),
        "main",
        True,
        Reason.OK,
    ),
    ("wrong gate", [view(gates=frozenset({"side"}))], NOON, "main", False, Reason.WRONG_GATE),
    ("allowed gate", [view(gates=frozenset({"main"}))], NOON, "main", True, Reason.OK),
    (
        "revoked beats expired (order of checks)",
        [view(status="revoked", valid_until=NOON - 1)],
        NOON,
        "main",
        False,
        Reason.REVOKED,
    ),
    (
        "expired beats wrong gate",
        [view(valid_until=NOON - 1, gates=frozenset({"side"}))],
        NOON,
        "main",
        False,
        Reason.EXPIRED,
    ),
    (
        "renewal granted beside an old revoked pass",
        [view(id="old", status="revoked", issued_at=1), view(id="new", issued_at=2)],
        NOON,
        "main",
        True,
        Reason.OK,
    ),
    (
        "deny shows the newest pass's reason",
        [
            view(id="old", valid_until=NOON - 1, issued_at=1),
            view(id="new", valid_from=NOON + 10, issued_at=2),
        ],
        NOON,
        "main",
        False,
        Reason.NOT_YET_VALID,
    ),
]


@pytest.mark.parametrize(
    ("passes", "now", "gate", "granted", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision_table(passes, now, gate, granted, reason):
    d = decide(passes, now, gate, RULES)
    assert (d.granted, d.reason) == (granted, reason)


times = st.floats(NOON - 400 * DAY, NOON + 400 * DAY)
passes = st.builds(
    PassView,
    id=st.text("abcdef0123456789", min_size=1, max_size=4),
    kind=st.sampled_from(KINDS),
    status=st.sampled_from([*STATUSES, "weird"]),
    valid_from=times,
    valid_until=st.one_of(st.none(), times),
    issued_at=times,
    gates=st.one_of(st.none(), st.frozensets(st.sampled_from(["main", "side", "back"]))),
    daily_window=st.one_of(st.none(), st.tuples(st.times(), st.times())),
)


@given(ps=st.lists(passes, max_size=4), now=times, gate=st.sampled_from(["main", "side"]))
def test_a_granted_pass_is_always_active_in_window_and_at_an_allowed_gate(ps, now, gate):
    d = decide(ps, now, gate, RULES)
    assert d.granted == (d.reason is Reason.OK)
    if d.granted:
        p = d.pass_
        assert p in ps and p.status == "active"
        assert p.valid_from <= now and (p.valid_until is None or now < p.valid_until)
        assert p.gates is None or gate in p.gates


@given(ps=st.lists(passes, max_size=4), now=times)
def test_revoked_or_confiscated_passes_are_never_granted(ps, now):
    blocked = [
        PassView(p.id, p.kind, s, p.valid_from, p.valid_until, p.issued_at, p.gates, p.daily_window)
        for p, s in zip(ps, ["revoked", "confiscated"] * 4, strict=False)
    ]
    assert not decide(blocked, now, "main", RULES).granted


@given(p=passes, now=times)
def test_nothing_outside_its_validity_window_is_granted(p, now):
    if now < p.valid_from or (p.valid_until is not None and now >= p.valid_until):
        assert not decide([p], now, "main", RULES).granted


@given(ps=st.lists(passes, min_size=1, max_size=4), now=times)
def test_a_deny_names_one_of_the_card_s_passes(ps, now):
    d = decide(ps, now, "main", RULES)
    assert d.pass_ in ps
