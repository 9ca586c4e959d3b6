"""Issue 11, what a serial device can send: the attacks of the security review on the reader
parsers, each on the parser alone and then on a real pty read by a running node.

- finding 8: a crafted QR (``GH1.`` and a byte >= 0x80) at the line reader closed the port
  for a second, lost the good card in the same read and raised ``reader_silent``;
- finding 11: the stxbin parser read a reply to another command as a card, and let a
  header-like bit of noise swallow the real frame after it; the line parser dropped the
  next good line after an over-long one.

Nothing a device sends may close the port or cost the next good frame."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from drivers.line import Line
from drivers.protocol import Frame, Scan
from drivers.stxbin import CMD_CARD, ETX, STX, StxBin
from edge.cards import CardId, parse_card
from tests.helpers import Broker, Listener, Node, Pty, cli, http_call, node_for

CARD = parse_card("82D4D711")  # a Mifare UID, as a stxbin module reports it
PRINTED = "0040856634"  # a card as a line reader types it
LINE_CARD = parse_card(PRINTED)
GOOD_FRAME = StxBin.encode(CARD)  # 02 00 00 07 47 00 82 D4 D7 11 8C 03
GOOD_LINE = PRINTED.encode() + b"\r\n"


def stx_frame(cmd: int, status: int, data: bytes, addr: bytes = b"\x00\x00") -> bytes:
    """A well framed stxbin frame of any command: right length, checksum and end byte."""
    body = bytes([len(data) + 3, cmd, status]) + data
    return bytes([STX]) + addr + body + bytes([sum(body) & 0xFF, ETX])


def wrapped_around(real: bytes, cmd: int = 0x20) -> bytes:
    """Noise shaped as a well framed frame of another command that ends where the real frame
    ends: its data is the real frame up to the real checksum and end bytes, which serve as
    its own, and its status byte is chosen to make that checksum right."""
    length = 3 + len(real) - 2  # LEN, CMD, STATUS, then the data
    status = (real[-2] - length - cmd - sum(real[:-2])) & 0xFF
    wrapper = bytes([STX, 0x00, 0x00, length, cmd, status]) + real
    assert wrapper[-1] == ETX and sum(wrapper[3:-2]) & 0xFF == wrapper[-2]  # framed well
    return wrapper


def cards(frames: list[Frame | Scan]) -> list[CardId]:
    return [f.card for f in frames if isinstance(f, Frame)]


# -- finding 11a: stxbin reads only card reports ------------------------------------------

OTHER_REPLIES = [
    # replies of the same modules to commands other than anticollision, with status 0 and
    # 4 or 7 data bytes: the shape of a card report, but no card
    pytest.param(stx_frame(0x48, 0x00, bytes.fromhex("AABBCCDD")), id="select-reply"),
    pytest.param(stx_frame(0x41, 0x00, bytes.fromhex("01020304")), id="module-serial"),
    pytest.param(stx_frame(0x4B, 0x00, bytes.fromhex("11223344556677")), id="7-byte-data"),
    pytest.param(stx_frame(0x00, 0x00, bytes.fromhex("DEADBEEF")), id="cmd-0"),
    pytest.param(stx_frame(0xC7, 0x00, bytes.fromhex("82D4D711")), id="high-bit-of-0x47"),
]


@pytest.mark.parametrize("reply", OTHER_REPLIES)
def test_a_reply_to_another_command_is_never_a_card(reply: bytes):
    """Only the length and status were checked: any reply with status 0 and 4 or 7 data
    bytes came out as a card (the select reply above as card AABBCCDD)."""
    parser = StxBin()
    assert parser.feed(reply, 0.0) == []
    assert parser.rejected == {"bad_cmd": 1}
    assert cards(parser.feed(GOOD_FRAME, 0.01)) == [CARD]  # and the next card is read


def test_a_card_report_with_another_status_is_still_no_card():
    parser = StxBin()
    assert parser.feed(stx_frame(CMD_CARD, 0x01, bytes.fromhex("82D4D711")), 0.0) == []
    assert parser.rejected == {"no_card": 1}


# -- finding 11b: header-like noise never swallows the real frame -------------------------

HEADER_NOISE = [
    # a start byte and a length that runs past the real frame: the frame waited inside the
    # claimed span and was dropped with it at the inter-byte timeout
    pytest.param(bytes.fromhex("02000020"), id="longest-claim"),
    pytest.param(bytes.fromhex("0200000F"), id="claim-past-the-frame"),
    pytest.param(bytes.fromhex("0200"), id="a-start-and-half-a-header"),
    pytest.param(bytes.fromhex("ff02aa0710"), id="garbage-then-a-claim"),
    pytest.param(bytes.fromhex("0200000902000014"), id="two-claims"),
    pytest.param(bytes.fromhex("02000008"), id="claim-ending-inside-the-frame"),
    # noise framed well around the real frame (a reply to command 0x20 whose data is the
    # real frame): it was consumed whole as one frame, the card with it
    pytest.param(wrapped_around(GOOD_FRAME)[: -len(GOOD_FRAME)], id="a-frame-wrapped-around"),
]


@pytest.mark.parametrize("noise", HEADER_NOISE)
def test_header_like_noise_never_swallows_the_real_frame(noise: bytes):
    parser = StxBin()
    # in one read: read at once, with no pause needed for the noise to time out
    assert cards(parser.feed(noise + GOOD_FRAME, 0.0)) == [CARD]
    assert "timeout" not in parser.rejected and parser.rejected.total() >= 1


@pytest.mark.parametrize("noise", HEADER_NOISE)
def test_header_like_noise_in_an_earlier_read_never_swallows_the_real_frame(noise: bytes):
    parser = StxBin()
    assert parser.feed(noise, 0.0) == []
    assert cards(parser.feed(GOOD_FRAME, 0.01)) == [CARD]
    assert not parser.buf  # nothing held back to be dropped, or glued, later


def test_a_real_frame_split_across_reads_is_not_cut_short_by_the_noise_rule():
    """The rule above must not misread a real frame that is simply still arriving: a start
    byte in a 7-byte UID is data, not a frame of its own."""
    card = parse_card("hex:02D4D70311FF03")  # start and end bytes among the UID's bytes
    frame = StxBin.encode(card)
    for cut in range(1, len(frame)):
        parser = StxBin()
        got = parser.feed(frame[:cut], 0.0) + parser.feed(frame[cut:], 0.001)
        assert cards(got) == [card] and not parser.rejected, cut


# -- finding 11c: the next good line after an over-long one --------------------------------

PAUSE = 0.5  # longer than the inter-byte timeout (100 ms): the reader went quiet
LONG = b"9" * 1100  # over MAX_LINE (1024); every piece of it could pass for a card
# reads, each with when it comes (seconds)
LONG_LINES = [
    pytest.param([(LONG + b"\r\n" + GOOD_LINE, 0.0)], id="long-line-and-card-in-one-read"),
    pytest.param([(LONG, 0.0), (b"\r\n" + GOOD_LINE, 0.01)], id="end-and-card-next-read"),
    pytest.param([(LONG + b"\r", 0.0), (b"\n", 0.01), (GOOD_LINE, 0.02)], id="cr-lf-card-apart"),
    pytest.param([(b"A" * 3000 + b"\n" + GOOD_LINE, 0.0)], id="over-twice-the-buffer"),
    pytest.param([(b"GH1." + LONG + b"\r\n" + GOOD_LINE, 0.0)], id="an-over-long-qr"),
    # the long line never ends; the card comes after a pause: it was taken for the rest of
    # the long line (the pause did not end the skipping) and swallowed
    pytest.param([(LONG, 0.0), (GOOD_LINE, PAUSE)], id="no-end-then-a-pause"),
    pytest.param(
        [(LONG, 0.0), (GOOD_LINE[:4], PAUSE), (GOOD_LINE[4:], PAUSE + 0.01)],
        id="no-end-then-a-pause-card-in-two-reads",
    ),
    pytest.param(
        [(LONG[:1000], 0.0), (LONG[1000:], 0.01), (GOOD_LINE, PAUSE)],
        id="over-only-with-its-second-read",
    ),
]


@pytest.mark.parametrize("reads", LONG_LINES)
def test_the_next_good_line_after_an_over_long_one_is_read(reads: list[tuple[bytes, float]]):
    parser = Line()
    got: list[Frame | Scan] = []
    for data, at in reads:
        got += parser.feed(data, at)
    assert cards(got) == [LINE_CARD] and len(got) == 1
    assert parser.rejected == {"too_long": 1}


# -- finding 8: a crafted QR at the line reader ---------------------------------------------

HIGH_BYTES = [0x80, 0x9F, 0xC3, 0xE9, 0xFF]


@pytest.mark.parametrize("byte", HIGH_BYTES, ids=lambda b: f"0x{b:02X}")
def test_a_qr_line_with_a_high_byte_is_refused_and_the_card_after_it_read(byte: int):
    parser = Line()
    got = parser.feed(b"GH1." + bytes([byte]) + b"\r\n" + GOOD_LINE, 0.0)
    assert cards(got) == [LINE_CARD] and len(got) == 1
    assert parser.rejected == {"bad_card": 1}


# -- the same attacks on a real pty, read by a running node ---------------------------------


class Wires:
    """One running node for the tests below, each with a reader of its own on its own pty
    (so one test's rejects and frames are not another's); no debouncing, so every read that
    gets through is decided."""

    READERS: ClassVar[dict[str, str]] = {
        "qr": "line",
        "long": "line",
        "cmd": "stxbin",
        "noise": "stxbin",
    }

    def __init__(self, workdir: Path) -> None:
        self.broker = Broker(workdir).start()
        self.pty = {name: Pty() for name in self.READERS}
        readers = [
            {"id": name, "gate": "main", "port": self.pty[name].path, "protocol": protocol,
             "debounce_ms": 0}
            for name, protocol in self.READERS.items()
        ]  # fmt: skip
        self.node = node_for(workdir, readers, self.broker.port)
        for card in (PRINTED, CARD.hex or ""):
            out = cli(self.node.config, "pass", "add", "--kind", "resident", "--card", card,
                      "--name", "李四")  # fmt: skip
            assert out.returncode == 0, out.stderr
        self.node.start(wait_ready=True)
        self.listener = Listener(self.broker.port)

    def close(self) -> None:
        self.listener.close()
        self.node.stop()
        self.broker.stop()
        for pty in self.pty.values():
            pty.close()


@pytest.fixture(scope="module")
def wires(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wires]:
    w = Wires(tmp_path_factory.mktemp("wires"))
    try:
        yield w
    finally:
        w.close()


def decided(listener: Listener, reader: str, marker: str) -> list[dict[str, Any]]:
    """The reader's decisions up to and including the first one for card ``marker``
    (masked): everything the node read before the marker has been decided by then, as one
    reader's frames are decided in order."""
    out: list[dict[str, Any]] = []
    while True:
        body = listener.next("/decision")
        if body["reader"] == reader:
            out.append(body)
            if body["card"] == marker:
                return out


def port_never_closed(node: Node, reader: str) -> dict[str, Any]:
    health = node.reader(reader)
    assert health["state"] == "open" and health["error"] is None and health["opens"] == 1
    return health


def test_a_reply_to_another_command_on_the_wire_is_never_decided(wires: Wires):
    for reply in OTHER_REPLIES:
        wires.pty["cmd"].write(reply.values[0])
    wires.pty["cmd"].write(GOOD_FRAME)  # the marker: a real card, after them
    got = decided(wires.listener, "cmd", CARD.masked)
    assert [(d["card"], d["reason"]) for d in got] == [(CARD.masked, "ok")]
    health = port_never_closed(wires.node, "cmd")
    assert health["rejected"] == {"bad_cmd": len(OTHER_REPLIES)}


def test_header_like_noise_on_the_wire_never_swallows_the_real_frame(wires: Wires):
    """Each noise and a real frame in one write: the card is decided with nothing more sent
    after it (it was held inside the noise's claimed length, then dropped with the noise at
    the inter-byte timeout)."""
    for noise in HEADER_NOISE:
        wires.pty["noise"].write(noise.values[0] + GOOD_FRAME)
        (got,) = decided(wires.listener, "noise", CARD.masked)
        assert got["reason"] == "ok" and got["stale"] is False, noise.id
    health = port_never_closed(wires.node, "noise")
    assert "timeout" not in health["rejected"] and health["frames"] == len(HEADER_NOISE)


def test_the_next_good_line_after_an_over_long_one_on_the_wire_is_decided(wires: Wires):
    for reads in LONG_LINES:
        before = 0.0
        for data, at in reads.values[0]:
            time.sleep(at - before)  # the reader's own pauses, as it makes them
            before = at
            wires.pty["long"].write(data)
        (got,) = decided(wires.listener, "long", LINE_CARD.masked)
        assert got["reason"] == "ok", reads.id
    health = port_never_closed(wires.node, "long")
    assert health["rejected"] == {"too_long": len(LONG_LINES)}


def test_a_crafted_qr_never_closes_the_scanner_or_costs_the_card_in_the_same_read(
    wires: Wires,
):
    """Each crafted QR and a good card in the same write (the scanner's buffer): every card
    is decided, the port is never closed and reopened, no ``reader_silent`` alarm."""
    n = wires.node
    officer = cli(n.config, "user", "add", "值班员", "--role", "control").stdout.strip()
    for byte in HIGH_BYTES:
        wires.pty["qr"].write(b"GH1." + bytes([byte]) + b"\r\n" + GOOD_LINE)
        (got,) = decided(wires.listener, "qr", LINE_CARD.masked)
        assert got["reason"] == "ok"
    health = port_never_closed(n, "qr")
    assert health["rejected"] == {"bad_card": len(HIGH_BYTES)}
    assert health["callback_errors"] == 0 and health["frames"] == len(HIGH_BYTES)
    status, body = http_call(f"http://127.0.0.1:{n.api_port}", "GET", "/api/v1/alarms", officer)
    assert status == 200 and [a for a in body["items"] if a["type"] == "reader_silent"] == []
