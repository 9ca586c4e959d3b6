"""Reader protocols against fixtures of real and corrupted frames (tests/fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.line import Line
from drivers.protocol import Scan
from drivers.rdm6300 import Rdm6300
from drivers.registry import PARSERS
from drivers.stxbin import StxBin
from edge.cards import parse_card

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "frames.json").read_text())
CASES = [(name, case) for name, sets in FIXTURES.items() for case in sets["good"]]
BAD = [(name, case) for name, sets in FIXTURES.items() for case in sets["bad"]]


@pytest.mark.parametrize(("protocol", "case"), CASES, ids=[f"{p}-{c['note']}" for p, c in CASES])
def test_good_fixture_frames_give_their_cards(protocol: str, case: dict):
    parser = PARSERS[protocol]()
    frames = parser.feed(bytes.fromhex(case["hex"]), 0.0)
    assert [f.card for f in frames] == [parse_card(c) for c in case["cards"]]


@pytest.mark.parametrize(("protocol", "case"), BAD, ids=[f"{p}-{c['cause']}" for p, c in BAD])
def test_corrupt_fixture_frames_are_dropped_and_counted_by_cause(protocol: str, case: dict):
    parser = PARSERS[protocol]()
    assert parser.feed(bytes.fromhex(case["hex"]), 0.0) == []
    assert parser.rejected[case["cause"]] >= 1


@pytest.mark.parametrize("parser_cls", [Rdm6300, StxBin, Line])
def test_a_good_frame_after_a_corrupt_one_is_read(parser_cls):
    parser = parser_cls()
    card = parse_card("0040856634")
    good = parser_cls.encode(card)
    bad = good[:-2] + bytes([good[-2] ^ 0x01]) + good[-1:]
    if parser_cls is Line:
        bad = b"00408X6634\r\n"
    frames = parser.feed(bad + good, 0.0)
    assert [f.card.key for f in frames] == [card.key]
    assert sum(parser.rejected.values()) >= 1


@pytest.mark.parametrize("parser_cls", [Rdm6300, StxBin, Line])
def test_a_partial_frame_is_dropped_after_the_inter_byte_timeout(parser_cls):
    parser = parser_cls(inter_byte_timeout=0.1)
    good = parser_cls.encode(parse_card("01026F6C3A"))
    assert parser.feed(good[:5], 0.0) == []
    # the rest arrives too late to belong to it: the half frame is dropped, not glued on
    assert parser.feed(good[5:], 0.5) == []
    assert parser.rejected["timeout"] == 1
    assert len(parser.feed(good, 0.6)) == 1


@pytest.mark.parametrize("parser_cls", [Rdm6300, StxBin, Line])
def test_a_frame_split_across_reads_is_reassembled(parser_cls):
    parser = parser_cls()
    good = parser_cls.encode(parse_card("01026F6C3A"))
    out = []
    for i, b in enumerate(good):
        out += parser.feed(bytes([b]), i * 0.001)
    assert len(out) == 1 and parser.rejected.total() == 0


def test_line_reader_configured_for_hex_reads_digit_only_ids_as_hex():
    parser = Line(card_format="hex")
    (frame,) = parser.feed(b"0102030405\r\n", 0.0)
    assert frame.card.hex == "0102030405"


def test_stxbin_encodes_the_fixture_frame_of_the_research_notes():
    assert StxBin.encode(parse_card("82D4D711")).hex().upper() == "02000007470082D4D7118C03"


@pytest.mark.parametrize("parser_cls", [Rdm6300, StxBin, Line])
@given(noise=st.binary(max_size=400), card=st.integers(0, 0xFFFFFFFF))
def test_no_noise_breaks_the_parser_or_its_buffer_bound(parser_cls, noise: bytes, card: int):
    parser = parser_cls()
    parser.feed(noise, 0.0)
    assert len(parser.buf) <= parser_cls.max_buffer
    # after a pause longer than the inter-byte timeout, a good frame is always read
    frames = parser.feed(parser_cls.encode(parse_card(f"{card:010d}")), 1.0)
    assert frames and frames[-1].card.key == card


def test_a_scanned_slip_number_is_a_scan_not_a_card():
    (scan,) = Line().feed(b"FX-2026-00042\r\n", 0.0)
    assert isinstance(scan, Scan) and scan.text == "FX-2026-00042"
