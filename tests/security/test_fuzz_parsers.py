"""Fuzzing every reader parser in drivers/ (issue 11): whatever bytes a device sends, in
whatever reads and pauses, a parser

- never raises (its only refusal is a count, under a documented cause) and keeps its
  buffer bounded;
- never yields a card that was not framed: each card's bytes are in the stream, whole,
  never across a pause that dropped a partial frame, and pass every check of the protocol;
- never loses a good frame that follows garbage, where the protocol can resync: after a
  pause for all three, at once for rdm6300 and stxbin (start bytes), after a line end for
  line;
- reads the same cards however the stream is cut into reads (rdm6300, line).

The framing shared in drivers/protocol.py (inter-byte timeout, overflow) runs under all of
it, and the last test feeds the serial thread (drivers/serial_port.py) on a real pty.

Fast by default (``make test``); ``GATEHOUSE_FUZZ_EXAMPLES=20000`` (``make fuzz``) runs
each property that many times. The review's payloads and what fuzzing found are kept as
explicit examples.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import struct
import termios
import threading
from collections.abc import Iterator
from functools import reduce

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from drivers.line import MAX_LINE, QR_PASS, SLIP_NUMBER
from drivers.protocol import Frame, Parser, Scan
from drivers.rdm6300 import Rdm6300
from drivers.registry import PARSERS
from drivers.serial_port import SerialReader
from drivers.stxbin import CMD_CARD, StxBin
from edge.cards import CardId, parse_card
from tests.helpers import Pty, wait_for

EXAMPLES = int(os.environ.get("GATEHOUSE_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a loaded CI machine is not a bug
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# docs/readers.md: every cause a parser counts (the serial thread adds port_lost and
# parser_error, which no parser may ever need)
CAUSES = {
    "garbage", "truncated", "bad_end", "bad_chars", "bad_checksum", "bad_length", "no_card",
    "bad_card", "too_long", "timeout", "overflow", "bad_cmd",
}  # fmt: skip
TIMEOUT = 0.1  # the parsers' default inter-byte timeout (s)
PAUSE = 1.0  # well past it

GOOD = parse_card("0040856634")


def frame_of(protocol: str, card: CardId) -> bytes:
    return PARSERS[protocol].encode(card)


# -- what a device could send --------------------------------------------------------------

_CARDS = [parse_card(c) for c in ("0040856634", "82D4D711", "hex:02D4D70311FF03", "00000000")]
# pieces of each protocol's frames: start and end bytes, good frames, frames cut short,
# frames with one byte wrong, and the review's payloads
PIECES: dict[str, list[bytes]] = {
    "rdm6300": [b"\x02", b"\x03", b"0102", b"6F6C3A", b"3A", b"FFFFFFFFFF", b"\x02\x02"]
    + [Rdm6300.encode(c) for c in _CARDS]
    + [Rdm6300.encode(c)[:7] for c in _CARDS]
    + [Rdm6300.encode(c)[:-2] + b"00\x03" for c in _CARDS],
    "stxbin": [b"\x02", b"\x03", b"\x02\x00\x00\x20", b"\x02\x00\x00\x07", b"\x47\x00",
               bytes.fromhex("0200000747"), bytes.fromhex("02000007480082d4d7118d03")]
    + [StxBin.encode(c) for c in _CARDS]
    + [StxBin.encode(c)[:6] for c in _CARDS]
    + [StxBin.encode(c)[:-2] + b"\x00\x03" for c in _CARDS],
    "line": [b"\r", b"\n", b"\r\n", b"GH1.", b"GH1.\xe9", b"\x80", b"\xff", b"FX-2026-00001",
             b"0x", b"hex:", b"dec:", b" ", b"\x00", b"\xc2\xb2", b"9" * 600, b"A" * 1025,
             b"0040856634", b"82D4D711", b"01026F6C3A"],
}  # fmt: skip


def noise(protocol: str) -> st.SearchStrategy[bytes]:
    """Random bytes, or random bytes and pieces of real frames run together."""
    pieces = st.sampled_from(PIECES[protocol]) | st.binary(max_size=12)
    return st.binary(max_size=300) | st.lists(pieces, max_size=20).map(b"".join)


GAPS = st.sampled_from([0.0, 0.0, 0.001, 0.05, TIMEOUT + 0.01, PAUSE])


def reads(protocol: str) -> st.SearchStrategy[list[tuple[bytes, float]]]:
    """Reads as the serial thread makes them: bytes (possibly none: an idle port's read)
    each with the time since the one before."""
    return st.lists(st.tuples(noise(protocol) | st.just(b""), GAPS), max_size=8)


# -- what a card may only come from ---------------------------------------------------------


def framed(protocol: str, raw: bytes, card: CardId) -> bool:
    """``raw`` is a good frame of ``protocol`` carrying ``card``, by the protocol's own rules
    written out again here (not by calling the parser)."""
    if protocol == "rdm6300":
        body = raw[1:13]
        if len(raw) != 14 or raw[0] != 0x02 or raw[13] != 0x03:
            return False
        if not all(chr(b) in "0123456789ABCDEFabcdef" for b in body):
            return False
        data = bytes.fromhex(body[:10].decode())
        return reduce(lambda a, b: a ^ b, data) == int(body[10:12], 16) and card == CardId(
            int(body[:10], 16) & 0xFFFFFFFF, body[:10].decode().upper()
        )
    if protocol == "stxbin":
        uid = raw[6:-2]
        return (
            len(raw) >= 8 and raw[0] == 0x02 and raw[-1] == 0x03 and raw[3] + 5 == len(raw)
            and raw[4] == CMD_CARD and raw[5] == 0x00 and len(uid) in (4, 7)
            and sum(raw[3:-2]) & 0xFF == raw[-2]
            and card == CardId(int(uid.hex(), 16) & 0xFFFFFFFF, uid.hex().upper())
        )  # fmt: skip
    text = raw.strip()
    return (
        b"\r" not in raw and b"\n" not in raw and len(raw) <= MAX_LINE
        and text.isascii() and parse_card(text.decode()) == card
    )  # fmt: skip


def starts(stream_reads: list[tuple[bytes, float]]) -> tuple[bytes, set[int]]:
    """The whole stream, and the offsets where a pause past the inter-byte timeout came
    (a partial frame held there was dropped: no frame spans one)."""
    stream, cuts = b"", set()
    last_byte_at: float | None = None
    now = 0.0
    for data, gap in stream_reads:
        now += gap
        if last_byte_at is not None and now - last_byte_at > TIMEOUT:
            cuts.add(len(stream))
        if data:
            last_byte_at = now
            stream += data
    return stream, cuts


def located(protocol: str, raw: bytes, stream: bytes, cuts: set[int]) -> bool:
    """``raw`` came whole from the stream: found there with no pause inside it, and for a
    line, as a whole line (after the stream's start, a line end or a pause; before a line
    end)."""
    at = stream.find(raw)
    while at >= 0:
        end = at + len(raw)
        inside = any(at < c < end for c in cuts)
        if protocol != "line":
            if not inside:
                return True
        elif (
            not inside
            and (at == 0 or stream[at - 1 : at] in (b"\r", b"\n") or at in cuts)
            and stream[end : end + 1] in (b"\r", b"\n")
        ):
            return True
        at = stream.find(raw, at + 1)
    return False


def feed_all(parser: Parser, stream_reads: list[tuple[bytes, float]]) -> list[Frame | Scan]:
    out: list[Frame | Scan] = []
    now = 0.0
    for data, gap in stream_reads:
        now += gap
        got = parser.feed(data, now)
        assert len(parser.buf) <= parser.max_buffer
        out += got
    return out


def check_everything_read(
    protocol: str, parser: Parser, stream_reads: list[tuple[bytes, float]], out: list
) -> None:
    stream, cuts = starts(stream_reads)
    for item in out:
        if isinstance(item, Scan):  # only the line protocol has them: slips and QR passes
            assert protocol == "line"
            text = item.raw.strip()
            assert SLIP_NUMBER.match(text) or text.startswith(QR_PASS)
            assert text.isascii() and item.text == text.decode()
        else:
            assert framed(protocol, item.raw, item.card), item
        assert located(protocol, item.raw, stream, cuts), item
    assert set(parser.rejected) <= CAUSES, parser.rejected
    assert parser.accepted == len(out)


PROTOCOLS = sorted(PARSERS)


# -- 1. any bytes, any reads: no exception, bounded, every card framed -----------------------

REVIEW_STREAMS = [  # the review's payloads (issue 11, findings 8 and 11) as reads
    [(b"GH1.\xe9\r\n0040856634\r\n", 0.0)],
    [(b"GH1." + bytes([0x80]) + b"\r\n", 0.0), (b"0040856634\r\n", 0.001)],
    [(b"9" * 1100, 0.0), (b"0040856634\r\n", PAUSE)],
    [(bytes.fromhex("020000074800aabbccdd") + b"\x70\x03", 0.0)],
    [(bytes.fromhex("02000020") + StxBin.encode(parse_card("82D4D711")), 0.0)],
    [(b" " * 1020 + b"0040856634\r\n", 0.0)],  # padded past MAX_LINE round a card
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@FUZZ
@given(data=st.data())
def test_no_stream_raises_and_every_card_was_framed(protocol: str, data: st.DataObject):
    stream_reads = data.draw(reads(protocol) | st.sampled_from(REVIEW_STREAMS))
    parser = PARSERS[protocol]()
    out = feed_all(parser, stream_reads)
    check_everything_read(protocol, parser, stream_reads, out)


# -- 2. a good frame after garbage is read -------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
@FUZZ
@given(data=st.data(), card=st.integers(0, 0xFFFFFFFF))
def test_a_good_frame_after_garbage_and_a_pause_is_read(
    protocol: str, data: st.DataObject, card: int
):
    stream_reads = data.draw(reads(protocol))
    good = frame_of(protocol, parse_card(f"{card:010d}"))
    parser = PARSERS[protocol]()
    feed_all(parser, stream_reads)
    got = parser.feed(good, sum(g for _, g in stream_reads) + PAUSE)
    assert [f.card.key for f in got if isinstance(f, Frame)] == [card]


@pytest.mark.parametrize("protocol", ["rdm6300", "stxbin"])
@FUZZ
@given(data=st.data(), card=st.integers(0, 0xFFFFFFFF), split=st.booleans())
# header-like noise whose claimed length runs past the frame (finding 11)
@example(data=None, card=0x82D4D711, split=False)
def test_a_good_frame_right_after_garbage_is_read(
    protocol: str, data: st.DataObject | None, card: int, split: bool
):
    """With start bytes, no pause is needed. The one way for stxbin to lose the frame: the
    garbage and the frame's first bytes together make a good card report of their own (its
    checksum and end byte right by chance), which is then what is read."""
    garbage = bytes.fromhex("02000020") if data is None else data.draw(noise(protocol))
    good = frame_of(protocol, parse_card(f"{card:010d}"))
    parser = PARSERS[protocol]()
    if split:
        got = parser.feed(garbage, 0.0) + parser.feed(good, 0.001)
    else:
        got = parser.feed(garbage + good, 0.0)
    frames = [f for f in got if isinstance(f, Frame)]
    stolen = [f for f in frames if f.raw not in garbage]  # framed partly of the good bytes
    assert (frames and frames[-1].card.key == card) or (protocol == "stxbin" and stolen)


@FUZZ
@given(garbage=noise("line"), card=st.integers(0, 0xFFFFFFFF), end=st.sampled_from([b"\r", b"\n"]))
@example(garbage=b"9" * 1100, card=GOOD.key, end=b"\n")  # an over-long line (finding 11)
@example(garbage=b"GH1.\xe9", card=GOOD.key, end=b"\r")  # a crafted QR (finding 8)
def test_a_good_line_after_garbage_and_a_line_end_is_read(garbage: bytes, card: int, end: bytes):
    parser = PARSERS["line"]()
    got = parser.feed(garbage + end + frame_of("line", parse_card(f"{card:010d}")), 0.0)
    assert got and isinstance(got[-1], Frame) and got[-1].card.key == card


# -- 3. the same cards however the stream is cut into reads -------------------------------


@pytest.mark.parametrize("protocol", ["rdm6300", "line"])
@FUZZ
@given(data=st.data())
# a card padded past MAX_LINE: whole it was read as the card, cut after 1025 bytes dropped
@example(data=None)
def test_the_same_cards_however_the_stream_is_cut(protocol: str, data: st.DataObject | None):
    """stxbin is left out on purpose: where garbage overlaps a frame so that both would
    check out (two checksums right by chance), which one is read depends on which
    completes first, by design."""
    if data is None:
        stream = b" " * 1020 + b"0040856634\r\n" if protocol == "line" else b""
        cuts: list[int] = [1026]
    else:
        stream = data.draw(noise(protocol))
        cuts = data.draw(st.lists(st.integers(0, max(0, len(stream))), max_size=10))
    whole = PARSERS[protocol]()
    pieces = PARSERS[protocol]()
    expected = [f.card for f in whole.feed(stream, 0.0) if isinstance(f, Frame)]
    got: list[CardId] = []
    bounds = [0, *sorted(set(cuts)), len(stream)]
    for a, b in itertools.pairwise(bounds):
        got += [f.card for f in pieces.feed(stream[a:b], 0.0) if isinstance(f, Frame)]
    assert got == expected


# -- 4. the serial thread on a real pty ------------------------------------------------------


class Wire:
    """A SerialReader on a real pty, fed by the test; what it delivers, in order."""

    def __init__(self, protocol: str) -> None:
        self.pty = Pty()
        self.got: list[Frame | Scan] = []
        self.lock = threading.Lock()
        self.reader = SerialReader("fuzz", self.pty.path, 9600, PARSERS[protocol](),
                                   lambda _id, frame, _m, _w: self._on(frame))  # fmt: skip
        self.reader.start()
        wait_for(lambda: self.reader.state == "open", 5, "the port to open")

    def _on(self, frame: Frame | Scan) -> None:
        with self.lock:
            self.got.append(frame)

    def unread(self) -> int:
        """Bytes written but not yet read by the reader (the tty's input queue)."""
        raw = fcntl.ioctl(self.pty.slave, termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", raw)[0])

    def settle(self) -> None:
        """Wait until everything written is read and handled and no frame is under way:
        a pause longer than the inter-byte timeout, as the reader sees it."""
        wait_for(lambda: self.unread() == 0, 10, "the reader to read it all")
        beat = self.reader.last_beat
        wait_for(lambda: self.reader.last_beat != beat, 10, "a turn of the reader's loop")
        wait_for(lambda: not self.reader.parser.pending(), 10, "the partial frame to expire")

    def close(self) -> None:
        self.reader.stop()
        self.pty.close()


@pytest.fixture(scope="module", params=PROTOCOLS)
def wire(request: pytest.FixtureRequest) -> Iterator[tuple[str, Wire]]:
    w = Wire(request.param)
    try:
        yield request.param, w
    finally:
        w.close()


@settings(FUZZ, max_examples=max(2, EXAMPLES // 20))
@given(data=st.data(), card=st.integers(0, 0xFFFFFFFF))
def test_the_serial_thread_reads_the_card_after_any_bytes(
    wire: tuple[str, Wire], data: st.DataObject, card: int
):
    """Garbage written to a real pty, then (after a pause) a good frame: the frame is
    delivered, every card delivered was framed, and the port was never closed."""
    protocol, w = wire
    garbage = data.draw(noise(protocol))
    with w.lock:
        w.got.clear()
    w.pty.write(garbage)
    w.settle()
    good = parse_card(f"{card:010d}")
    w.pty.write(frame_of(protocol, good))
    wait_for(lambda: any(isinstance(f, Frame) and f.card.key == good.key for f in w.got), 10,
             "the card")  # fmt: skip
    with w.lock:
        for item in w.got:
            if isinstance(item, Frame):
                assert framed(protocol, item.raw, item.card)
    health = w.reader.health()
    assert health["opens"] == 1 and health["state"] == "open" and health["alive"]
    assert "parser_error" not in health["rejected"] and health["callback_errors"] == 0
