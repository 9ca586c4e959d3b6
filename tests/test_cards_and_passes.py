"""Card renderings and the pass kinds' limits."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.cards import parse_card
from edge.passes import PassError, add_months, resolve_validity
from edge.privacy import IdHasher, mask_name

TZ = ZoneInfo("Asia/Shanghai")


def test_contract_example_hex_and_printed_decimal_are_one_card():
    assert parse_card("01026F6C3A").key == parse_card("0040856634").key
    assert parse_card("01026f6c3a").masked == parse_card("0040856634").masked == "****6C3A"


@pytest.mark.parametrize("text", ["0x0102030405", "hex:0102030405", " 0102030405 "])
def test_prefixes_force_hex_for_ids_without_letters(text):
    card = parse_card(text)
    if text.strip().startswith(("0x", "hex:")):
        assert card.hex == "0102030405"
    else:
        assert card.hex is None and card.key == 102030405


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("12AB", "hex digits"),
        ("dec:99999999999", "decimal"),
        ("ZZZZZZZZ", "neither"),
    ],
)
def test_malformed_card_numbers_are_refused_with_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_card(text)


@given(st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFF))
def test_every_rendering_of_a_card_matches(low, high):
    hex10 = f"{high:02X}{low:08X}"
    # 10 digits without a hex letter read as the printed decimal, so the hex one is marked
    assert parse_card(f"hex:{hex10}").key == parse_card(f"{low:010d}").key == low
    assert parse_card(f"{low:08X}").key == low


def test_ten_digits_beyond_32_bits_can_only_be_hex():
    assert parse_card("4294967296").hex == "4294967296"


def ts(*a: int) -> float:
    return datetime(*a, tzinfo=TZ).timestamp()


def test_temporary_pass_defaults_to_72_hours_and_refuses_more():
    now = ts(2026, 11, 22, 9)
    v = resolve_validity("temporary", now, TZ)
    assert v.valid_until - v.valid_from == 72 * 3600
    with pytest.raises(PassError, match="at most 3 days"):
        resolve_validity("temporary", now, TZ, now, now + 72 * 3600 + 1)


BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("tz", "start"),
    [
        (BERLIN, (2026, 3, 27, 9)),  # clocks go forward on Sunday 29 March: 23-hour day
        (BERLIN, (2026, 10, 23, 9)),  # back on Sunday 25 October: a 25-hour day
        (BERLIN, (2026, 3, 29, 1, 30)),  # the last half hour before the change
        (NEW_YORK, (2026, 3, 7, 9)),  # forward on Sunday 8 March
        (NEW_YORK, (2026, 10, 31, 9)),  # back on Sunday 1 November
        (TZ, (2026, 11, 22, 9)),  # no daylight saving time at all
    ],
    ids=["berlin-spring", "berlin-autumn", "berlin-just-before", "new-york-spring",
         "new-york-autumn", "shanghai"],
)  # fmt: skip
def test_a_temporary_pass_is_72_elapsed_hours_across_a_daylight_saving_change(tz, start):
    now = datetime(*start, tzinfo=tz).timestamp()
    v = resolve_validity("temporary", now, tz)
    assert v.valid_until - v.valid_from == 72 * 3600  # not 71 or 73
    assert resolve_validity("temporary", now, tz, None, now + 72 * 3600).valid_until
    with pytest.raises(PassError, match="at most 3 days"):
        resolve_validity("temporary", now, tz, None, now + 72 * 3600 + 1)
    issued = now - 3600  # issued an hour before it starts: 72 hours from its own start
    assert resolve_validity("temporary", issued, tz, now).valid_until == now + 72 * 3600


@pytest.mark.parametrize("tz", [BERLIN, NEW_YORK])
def test_a_worker_pass_keeps_calendar_months_across_a_daylight_saving_change(tz):
    start = datetime(2026, 1, 15, 9, tzinfo=tz)  # winter time; 15 April is summer time
    v = resolve_validity("worker", start.timestamp(), tz)
    assert datetime.fromtimestamp(v.valid_until, tz) == datetime(2026, 4, 15, 9, tzinfo=tz)
    assert v.valid_until - v.valid_from == (31 + 28 + 31) * 86400 - 3600  # an hour short


def test_worker_pass_is_limited_to_three_calendar_months():
    now = ts(2026, 11, 30, 9)
    v = resolve_validity("worker", now, TZ)
    assert v.valid_until == ts(2027, 2, 28, 9)  # 30 Nov + 3 months, day clamped
    with pytest.raises(PassError, match="at most 3 months"):
        resolve_validity("worker", now, TZ, None, ts(2027, 3, 1, 9))


def test_residents_have_no_limit_and_an_end_before_the_start_is_refused():
    now = ts(2026, 11, 22, 9)
    assert resolve_validity("resident", now, TZ).valid_until is None
    with pytest.raises(PassError, match="after valid_from"):
        resolve_validity("staff", now, TZ, now, now - 1)


def test_add_months_clamps_to_month_end():
    assert add_months(datetime(2026, 1, 31), 1) == datetime(2026, 2, 28)
    assert add_months(datetime(2026, 11, 15), 3) == datetime(2027, 2, 15)


def test_id_numbers_are_hashed_with_a_key_and_only_the_last_4_kept(tmp_path):
    hasher = IdHasher.from_data_dir(tmp_path)
    digest, last4 = hasher.digest("11010519491231002x")
    assert last4 == "002X" and "11010519491231002" not in digest
    assert hasher.digest("110105 19491231 002X")[0] == digest  # same person, same hash
    assert IdHasher(b"another site").digest("11010519491231002X")[0] != digest
    assert (tmp_path / "keys" / "id_hash.key").stat().st_mode & 0o077 == 0


def test_names_are_masked_for_display():
    assert mask_name("张三丰") == "张**"
    assert mask_name("John Smith") == "J*** S****"
    assert mask_name("张三丰", "hidden") == "***"
