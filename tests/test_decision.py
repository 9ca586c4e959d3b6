"""The gate decision: a table of cases and properties that must hold whatever the input."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import parse_hours
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


def hours(text: str) -> tuple[time, time]:
    return parse_hours(text, "daily_window")


WORKER = dict(kind="worker", daily_window=hours("00:00-24:00"))

CASES = [
    ("no pass", [], NOON, "main", False, Reason.UNKNOWN_CREDENTIAL),
    # a worker's renovation permit (装修许可证): in force, suspended, closed, ended
    (
        "permit in force",
        [view(**WORKER, permit_status="active", permit_until=NOON + DAY)],
        NOON,
        "main",
        True,
        Reason.OK,
    ),
    (
        "permit suspended",
        [view(**WORKER, permit_status="suspended")],
        NOON,
        "main",
        False,
        Reason.PERMIT_SUSPENDED,
    ),
    (
        "permit closed",
        [view(**WORKER, permit_status="closed")],
        NOON,
        "main",
        False,
        Reason.PERMIT_CLOSED,
    ),
    (
        "permit's period ended",
        [view(**WORKER, permit_status="active", permit_until=NOON)],
        NOON,
        "main",
        False,
        Reason.PERMIT_CLOSED,
    ),
    (
        "a permit status never heard of",
        [view(**WORKER, permit_status="paused?")],
        NOON,
        "main",
        False,
        Reason.PERMIT_CLOSED,
    ),
    (
        "a permit this gate has not heard of: the office's pass stands",
        [view(**WORKER)],
        NOON,
        "main",
        True,
        Reason.OK,
    ),
    (
        "revoked before the permit",
        [view(**WORKER, status="revoked", permit_status="suspended")],
        NOON,
        "main",
        False,
        Reason.REVOKED,
    ),
    (
        "expired before the permit",
        [view(**WORKER, valid_until=NOON, permit_status="closed")],
        NOON,
        "main",
        False,
        Reason.EXPIRED,
    ),
    (
        "a permit before the hours",
        [view(kind="worker", daily_window=hours("07:00-08:00"), permit_status="suspended")],
        NOON,
        "main",
        False,
        Reason.PERMIT_SUSPENDED,
    ),
    (
        "only a worker's pass answers to a permit",
        [view(kind="resident", permit_status="suspended")],
        NOON,
        "main",
        True,
        Reason.OK,
    ),
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
    (
        "across midnight, 05:59",
        [view(daily_window=hours("22:00-06:00"))],
        at(5, 59),
        "main",
        True,
        Reason.OK,
    ),
    (
        "across midnight, 06:00",
        [view(daily_window=hours("22:00-06:00"))],
        at(6),
        "main",
        False,
        Reason.OUTSIDE_HOURS,
    ),
    (
        "across midnight, 21:59",
        [view(daily_window=hours("22:00-06:00"))],
        at(21, 59),
        "main",
        False,
        Reason.OUTSIDE_HOURS,
    ),
    ("all day, 00:00", [view(daily_window=hours("00:00-24:00"))], at(0), "main", True, Reason.OK),
    ("all day, 12:00", [view(daily_window=hours("00:00-24:00"))], NOON, "main", True, Reason.OK),
    (
        "all day, 23:59:59",
        [view(daily_window=hours("00:00-24:00"))],
        at(23, 59) + 59,
        "main",
        True,
        Reason.OK,
    ),
    (
        "to 24:00, 23:59:59",
        [view(daily_window=hours("19:00-24:00"))],
        at(23, 59) + 59,
        "main",
        True,
        Reason.OK,
    ),
    (
        "to 24:00, 00:00",
        [view(daily_window=hours("19:00-24:00"))],
        at(0),
        "main",
        False,
        Reason.OUTSIDE_HOURS,
    ),
    (
        "to 24:00, 18:59",
        [view(daily_window=hours("19:00-24:00"))],
        at(18, 59),
        "main",
        False,
        Reason.OUTSIDE_HOURS,
    ),
    (
        "workers all day by rule",
        [view(kind="worker")],
        at(3),
        "main",
        True,
        Reason.OK,
        SiteRules(tz=TZ, kind_hours={"worker": hours("00:00-24:00")}),
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
    ("passes", "now", "gate", "granted", "reason", "rules"),
    [(*c[1:], *([RULES] if len(c) == 6 else [])) for c in CASES],
    ids=[c[0] for c in CASES],
)  # fmt: skip
def test_decision_table(passes, now, gate, granted, reason, rules):
    d = decide(passes, now, gate, rules)
    assert (d.granted, d.reason) == (granted, reason)


times = st.floats(NOON - 400 * DAY, NOON + 400 * DAY)

# Daily windows as an officer types them ("HH:MM-HH:MM"; an end of 24:00; across midnight;
# all day), so the reference below can read the text rather than trust the parser.
window_texts = st.one_of(
    st.sampled_from(["00:00-24:00", "00:00-00:00", "07:00-19:00", "22:00-06:00", "19:00-24:00",
                     "02:00-03:00", "01:00-02:00", "02:30-02:31", "23:59-00:01", "08:00-08:00"]),
    st.builds(
        "{0[0]:02d}:{0[1]:02d}-{1[0]:02d}:{1[1]:02d}".format,
        st.tuples(st.integers(0, 23), st.integers(0, 59)),
        st.one_of(st.just((24, 0)), st.tuples(st.integers(0, 23), st.integers(0, 59))),
    ),
)  # fmt: skip


def edges(text: str) -> tuple[int, int]:
    """A window's start and end in minutes after local midnight (24:00 is 1440)."""
    a, b = text.split("-")
    return tuple(int(x[:2]) * 60 + int(x[3:]) for x in (a, b))  # type: ignore[return-value]


def inside(local: datetime, text: str) -> bool:
    """The meaning of a daily window, read from its text: from the start up to the next
    end; across midnight when the end comes first; the whole day when they are equal."""
    start, end = edges(text)
    m = local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60
    if start < end:
        return start <= m < end
    return start == end or m >= start or m < end


BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def offset_changes(tz: ZoneInfo, years: range = range(2026, 2028)) -> list[float]:
    """The instants the zone's UTC offset changes, from the tz database (on the hour in UTC
    for the zones used here)."""
    t = datetime(years.start, 1, 1, tzinfo=UTC)
    found, before = [], t.astimezone(tz).utcoffset()
    while t.year < years.stop:
        t += timedelta(hours=1)
        offset = t.astimezone(tz).utcoffset()
        if offset != before:
            found.append(t.timestamp())
            before = offset
    return found


CHANGES = {TZ: offset_changes(TZ), BERLIN: offset_changes(BERLIN),
           NEW_YORK: offset_changes(NEW_YORK)}  # fmt: skip


def test_the_time_zones_change_on_the_real_dates():
    def utc(*a: int) -> float:
        return datetime(*a, tzinfo=UTC).timestamp()

    assert CHANGES[TZ] == []  # China keeps no daylight saving time
    assert CHANGES[BERLIN] == [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1),
                               utc(2027, 3, 28, 1), utc(2027, 10, 31, 1)]  # fmt: skip
    assert CHANGES[NEW_YORK] == [utc(2026, 3, 8, 7), utc(2026, 11, 1, 6),
                                 utc(2027, 3, 14, 7), utc(2027, 11, 7, 6)]  # fmt: skip


@st.composite
def instants(draw: st.DrawFn, tz: ZoneInfo, windows: list[str]) -> float:
    """Anywhere in two years, within three days of a daylight saving change, or on (and a
    second either side of) a window's edge on the local days around a change, each of the
    two times an hour repeated by the change occurs."""
    how = draw(st.sampled_from(["anywhere", "near a change", "on an edge"]))
    if how == "anywhere":
        return draw(times)
    change = draw(st.sampled_from(CHANGES[tz] or [NOON]))
    if how == "near a change" or not windows:
        return change + draw(st.integers(-3 * 86400, 3 * 86400)) + draw(st.sampled_from([0, 0.5]))
    minutes = draw(st.sampled_from(edges(draw(st.sampled_from(windows)))))
    day = datetime.fromtimestamp(change, tz).date() + timedelta(days=draw(st.integers(-1, 1)))
    local = datetime.combine(day, time(0), tz) + timedelta(minutes=minutes)  # wall clock
    local = local.replace(fold=draw(st.sampled_from([0, 1])))
    return local.timestamp() + draw(st.sampled_from([-1, 0, 1]))


passes = st.builds(
    PassView,
    id=st.text("abcdef0123456789", min_size=1, max_size=4),
    kind=st.sampled_from(KINDS),
    status=st.sampled_from([*STATUSES, "weird"]),
    valid_from=times,
    valid_until=st.one_of(st.none(), times),
    issued_at=times,
    gates=st.one_of(st.none(), st.frozensets(st.sampled_from(["main", "side", "back"]))),
    daily_window=st.one_of(st.none(), st.tuples(st.times(), st.times()), window_texts.map(hours)),
)


# passes that only their daily window can stop, so that grants are common
open_passes = st.builds(
    PassView,
    id=st.text("abcdef0123456789", min_size=1, max_size=4),
    kind=st.sampled_from(KINDS),
    status=st.just("active"),
    valid_from=st.just(NOON - 800 * DAY),
    valid_until=st.none(),
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


@given(data=st.data(), gate=st.sampled_from(["main", "side"]))
def test_a_grant_is_always_inside_its_daily_window_in_local_time(data, gate):
    tz = data.draw(st.sampled_from([TZ, BERLIN, NEW_YORK]), "tz")
    worker_hours = data.draw(window_texts, "worker_hours")
    rules = SiteRules(tz=tz, kind_hours={"worker": hours(worker_hours)})
    texts = data.draw(st.lists(st.none() | window_texts, min_size=1, max_size=4), "windows")
    drawn = data.draw(st.lists(passes | open_passes, min_size=len(texts), max_size=len(texts)))
    ps = [
        replace(p, daily_window=hours(t) if t else None) for p, t in zip(drawn, texts, strict=True)
    ]
    now = data.draw(instants(tz, [t for t in [*texts, worker_hours] if t]), "now")
    d = decide(ps, now, gate, rules)
    if d.granted:
        i = next(i for i, p in enumerate(ps) if p is d.pass_)
        window = texts[i] or (worker_hours if ps[i].kind == "worker" else None)
        if window is not None:
            assert inside(datetime.fromtimestamp(now, tz), window), (window, now)


@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_an_active_pass_is_granted_exactly_inside_its_daily_window(data, kind):
    """The converse too, on the days around daylight saving changes: nothing else in the
    way, a pass is granted exactly when the local time is inside its window."""
    tz = data.draw(st.sampled_from([BERLIN, NEW_YORK, TZ]), "tz")
    text = data.draw(window_texts, "window")
    now = data.draw(instants(tz, [text]), "now")
    p = PassView("p", kind, "active", NOON - 800 * DAY, None, daily_window=hours(text))
    d = decide([p], now, "main", SiteRules(tz=tz))
    assert d.granted == inside(datetime.fromtimestamp(now, tz), text), (text, now)
    assert d.reason in (Reason.OK, Reason.OUTSIDE_HOURS)


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


@given(p=passes, now=times, status=st.sampled_from(["suspended", "closed", "", "x"]))
def test_a_worker_whose_permit_is_not_in_force_is_never_granted(p, now, status):
    worker = replace(p, kind="worker", permit_status=status)
    decision = decide([worker], now, "main", RULES)
    assert not decision.granted


# -- the gate's mode (issue 16) ----------------------------------------------------------

MODE_CASES = [
    ("locked: a resident is locked out", [view(kind="resident")], "locked", False,
     Reason.GATE_LOCKED),
    ("locked: staff still pass", [view(kind="staff")], "locked", True, Reason.OK),
    ("locked: a card with a staff pass beside its resident's passes",
     [view(id="r", kind="resident"), view(id="s", kind="staff")], "locked", True, Reason.OK),
    ("locked: a revoked pass keeps its own reason",
     [view(kind="resident", status="revoked")], "locked", False, Reason.REVOKED),
    ("locked: an unknown card is unknown", [], "locked", False, Reason.UNKNOWN_CREDENTIAL),
    ("held open: as normal", [view(kind="resident")], "held_open", True, Reason.OK),
    ("held open: a deny is still a deny", [view(kind="resident", status="revoked")],
     "held_open", False, Reason.REVOKED),
]  # fmt: skip


@pytest.mark.parametrize(("passes", "mode", "granted", "reason"),
                         [c[1:] for c in MODE_CASES], ids=[c[0] for c in MODE_CASES])  # fmt: skip
def test_the_gate_s_mode_in_the_decision(passes, mode, granted, reason):
    d = decide(passes, NOON, "main", RULES, mode)
    assert (d.granted, d.reason) == (granted, reason)


@given(ps=st.lists(passes, max_size=4), now=times, gate=st.sampled_from(["main", "side"]))
def test_a_locked_gate_never_grants_a_pass_not_exempt(ps, now, gate):
    d = decide(ps, now, gate, RULES, "locked")
    assert not d.granted or (d.pass_ is not None and d.pass_.kind == "staff")


@given(ps=st.lists(passes, max_size=4), now=times, gate=st.sampled_from(["main", "side"]))
def test_a_gate_held_open_decides_every_passage_as_a_normal_one(ps, now, gate):
    assert decide(ps, now, gate, RULES, "held_open") == decide(ps, now, gate, RULES)
