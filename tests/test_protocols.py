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


# -- the line parser after an over-long line (issue 9) ------------------------------------

GOOD_LINE = b"0040856634\r\n"
GOOD_KEY = parse_card("0040856634").key
# an over-long line whose every tail could pass for a card (a half-read would show)
LONG = b"0099887766" * 110  # 1100 bytes, over MAX_LINE
PAUSE = 0.5  # longer than the inter-byte timeout (0.1 s)


def keys(frames) -> list[int]:
    return [f.card.key for f in frames]


def feed_all(parser, reads: list[tuple[bytes, float]]) -> list:
    out = []
    for data, at in reads:
        out += parser.feed(data, at)
    return out


@pytest.mark.parametrize(
    "reads",
    [
        # the long line never ends; a card is presented a while later: was swallowed
        # as "the rest of the long line" (the timeout did not end the skipping)
        [(LONG, 0.0), (GOOD_LINE, 1.0)],
        # the same, the good card split across reads
        [(LONG, 0.0), (GOOD_LINE[:4], 1.0), (GOOD_LINE[4:], 1.001)],
        # over MAX_LINE only once more bytes arrive, then silence, then a card
        [(LONG[:1000], 0.0), (LONG[1000:], 0.01), (GOOD_LINE, 1.0)],
        # the idle port's empty reads in between, as the serial thread makes them
        [(LONG, 0.0), (b"", 0.05), (b"", 0.2), (b"", 0.3), (GOOD_LINE, 0.35)],
        # the long line's tail, its end and the good line in the same read
        [(LONG[:1030], 0.0), (LONG[1030:] + b"\r\n" + GOOD_LINE, 0.01)],
        [(LONG[:1030], 0.0), (LONG[1030:] + b"\r" + GOOD_LINE, 0.01)],
        # the long line ends right at a read boundary, CR and LF apart
        [(LONG[:1030], 0.0), (LONG[1030:] + b"\r", 0.01), (b"\n" + GOOD_LINE, 0.02)],
        # the whole long line, ended, and the card in one read
        [(LONG + b"\n" + GOOD_LINE, 0.0)],
        # a long line arriving in many small reads, then its end, then the card
        [(LONG[i : i + 64], i * 1e-5) for i in range(0, len(LONG), 64)]
        + [(b"\r\n", 0.02), (GOOD_LINE, 0.03)],
    ],
    ids=[
        "no-end-then-pause",
        "no-end-then-pause-split-card",
        "over-only-after-more-bytes",
        "idle-reads-in-between",
        "tail-and-card-in-one-read-crlf",
        "tail-and-card-in-one-read-cr",
        "cr-and-lf-in-two-reads",
        "all-in-one-read",
        "many-small-reads",
    ],
)
def test_the_next_good_line_after_an_over_long_line_is_read(reads):
    parser = Line()
    assert keys(feed_all(parser, reads)) == [GOOD_KEY]
    assert parser.rejected["too_long"] == 1  # one long line, counted once
    assert parser.rejected["bad_card"] == 0  # no piece of it was read as a line of its own


@given(
    size=st.integers(1025, 5000),
    end=st.sampled_from([b"", b"\r", b"\n", b"\r\n"]),
    cuts=st.lists(st.integers(1, 5000), max_size=5),
    pause=st.booleans(),
    same_read=st.booleans(),
)
def test_an_over_long_line_is_never_half_read_and_never_costs_the_next_card(
    size: int, end: bytes, cuts: list[int], pause: bool, same_read: bool
):
    body = (b"0099887766" * 500)[:size] + end
    points = sorted({c for c in cuts if c < len(body)})
    reads = [
        (body[a:b], i * 0.001)
        for i, (a, b) in enumerate(zip([0, *points], [*points, len(body)], strict=True))
    ]
    at = reads[-1][1] + (PAUSE if pause else 0.001)
    if same_read and not pause:
        reads[-1] = (reads[-1][0] + GOOD_LINE, reads[-1][1])
    else:
        reads.append((GOOD_LINE, at))
    parser = Line()
    got = keys(feed_all(parser, reads))
    # with neither an end nor a pause, the card's digits are simply more of the long line
    assert got == ([GOOD_KEY] if end or pause else [])
    assert parser.rejected["too_long"] == 1 and len(parser.buf) <= Line.max_buffer


def test_a_line_cut_off_by_its_port_going_away_is_dropped_and_the_next_read():
    parser = Line()
    parser.feed(LONG, 0.0)  # skipping the rest of an over-long line
    parser.drop("port_lost")  # what the serial thread does when the port is lost
    assert keys(parser.feed(GOOD_LINE, 0.01)) == [GOOD_KEY]
    parser.feed(b"00408", 0.02)  # half a card, then the port goes
    parser.drop("port_lost")
    assert parser.feed(b"56634\r\n", 0.03) == []  # the rest is not glued to it
    assert parser.rejected["port_lost"] == 1 and parser.rejected["bad_card"] == 1


def test_an_overflowing_line_buffer_never_keeps_a_tail_to_read_as_a_card():
    """The base class keeps the newer half of an overflowing buffer (a start byte may be
    there); for a line that tail would be read as a line of its own."""

    class Small(Line):
        max_buffer = 16

    parser = Small()
    assert parser.feed(b"Z" * 20 + b"0040856634", 0.0) == []
    assert parser.feed(b"\r\n", 0.01) == []  # not the card "40856634" cut from the tail
    assert parser.rejected["overflow"] == 1
    assert keys(parser.feed(GOOD_LINE, 0.02)) == [GOOD_KEY]


def test_a_non_ascii_line_that_starts_like_a_qr_pass_is_refused_not_raised():
    """Raised UnicodeDecodeError (a ValueError): the serial thread took it for a port fault,
    closed the port and lost the card that came in the same read."""
    parser = Line()
    frames = parser.feed(b"GH1.\xe9\xff\r\n" + GOOD_LINE, 0.0)
    assert keys(frames) == [GOOD_KEY] and parser.rejected["bad_card"] == 1


@given(
    pieces=st.lists(
        st.sampled_from(
            [b"GH1.", b"FX-2026-00001", b"\xe9", b"\xff", b"\r", b"\n", b"0x", b"hex:",
             b"dec:", b"0040856634", b"\x00", b" ", b"\xc2\xb2", b"9" * 600]
        ),
        max_size=12,
    )
)  # fmt: skip
def test_no_line_of_pieces_raises(pieces: list[bytes]):
    parser = Line()
    parser.feed(b"".join(pieces), 0.0)
    assert len(parser.buf) <= Line.max_buffer
    assert keys(parser.feed(GOOD_LINE, 1.0)) == [GOOD_KEY]
