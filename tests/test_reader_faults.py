"""The serial reader thread when something goes wrong that is not the card (issue 9, "the
gate never goes silent"): a callback or parser that raises, a thread that stops turning,
a reader unplugged in the middle of a frame. Real ptys, real socat, a real node."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial

from drivers.line import Line
from drivers.protocol import Frame, Scan
from drivers.rdm6300 import Rdm6300
from drivers.serial_port import SerialReader
from edge.cards import CardId, parse_card
from tests.helpers import Broker, Listener, Node, Pty, SocatPair, cli, node_for, wait_for

CARD_A, CARD_B = parse_card("01026F6C3A"), parse_card("0A0B0C0D0E")

Delivered = list[tuple[str, CardId]]


def rdm(card: CardId) -> bytes:
    return Rdm6300.encode(card)


@pytest.fixture
def readers() -> Iterator[list[SerialReader]]:
    made: list[SerialReader] = []
    yield made
    for r in made:
        r.stop()


def reader_on(
    readers: list[SerialReader],
    port: str,
    on_frame: Callable[[str, Frame | Scan, float, float], None],
    parser: Rdm6300 | None = None,
) -> SerialReader:
    r = SerialReader("door-7", port, 9600, parser or Rdm6300(), on_frame)
    readers.append(r)
    r.start()
    wait_for(lambda: r.state == "open" or port == "/nonexistent", 5, "the port to open")
    return r


def failing_once(error: BaseException, got: Delivered) -> Callable[..., None]:
    """A callback that fails on card A's frame (noting it in ``got`` first) and takes every
    other frame."""

    def on_frame(reader_id: str, frame: Frame | Scan, _mono: float, _wall: float) -> None:
        assert isinstance(frame, Frame)
        got.append((reader_id, frame.card))
        if frame.card == CARD_A:
            raise error

    return on_frame


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and "door-7" in r.message]


# -- 1. a callback's exception costs its frame, never the port or the thread ---------------


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("a bug in the pipeline"),  # ended the thread; state stayed "open"
        KeyError("main-in"),
        sqlite3.OperationalError("database is locked"),
        OSError(28, "No space left on device"),  # closed and reopened the port
        serial.SerialException("not the port's fault"),
        ValueError("a bad value in the pipeline"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_a_callback_that_raises_costs_one_frame_not_the_port_or_the_thread(
    pty: Pty, readers: list[SerialReader], caplog: pytest.LogCaptureFixture, error: Exception
):
    caplog.set_level(logging.INFO, logger="drivers.serial_port")
    got: Delivered = []
    reader = reader_on(readers, pty.path, failing_once(error, got))
    pty.write(rdm(CARD_A))
    wait_for(lambda: got, 5, "card A to be handed on")
    time.sleep(0.2)
    pty.write(rdm(CARD_B))
    wait_for(lambda: len(got) == 2, 5, "the next card to be handed on")
    assert got == [("door-7", CARD_A), ("door-7", CARD_B)]
    assert reader.opens == 1  # the port was never closed and reopened
    assert reader.state == "open" and reader.alive()
    assert reader.callback_errors == 1 and type(error).__name__ in reader.last_callback_error
    assert reader.parser.accepted == 2 and not reader.parser.rejected
    (logged,) = errors_logged(caplog)  # once, with the reader's id and the traceback
    assert logged.exc_info and logged.exc_info[1] is error
    health = reader.health()
    assert health["callback_errors"] == 1 and health["frames"] == 2 and health["alive"]


def test_the_same_failure_again_and_again_is_counted_each_time_and_logged_once(
    pty: Pty, readers: list[SerialReader], caplog: pytest.LogCaptureFixture
):
    """A card held on the reader repeats its frame ten times a second: a failing pipeline
    must not write ten tracebacks a second."""
    got: Delivered = []
    reader = reader_on(readers, pty.path, failing_once(sqlite3.OperationalError("locked"), got))
    pty.write(rdm(CARD_A) * 5)
    wait_for(lambda: len(got) == 5, 5, "five frames handed on")
    pty.write(rdm(CARD_B))  # it works again ...
    wait_for(lambda: len(got) == 6, 5, "card B")
    assert len(errors_logged(caplog)) == 1 and reader.callback_errors == 5
    pty.write(rdm(CARD_A))  # ... so a new failure is news again
    wait_for(lambda: len(got) == 7, 5, "card A again")
    time.sleep(0.1)
    assert len(errors_logged(caplog)) == 2 and reader.callback_errors == 6
    assert reader.opens == 1


class BuggyParser(Rdm6300):
    """A parser with a bug: a byte it does not expect makes it raise."""

    error: type[Exception] = ZeroDivisionError

    def extract(self) -> list[Frame | Scan]:
        if 0xEE in self.buf:
            raise self.error("a parser bug")
        return super().extract()


@pytest.mark.parametrize("error", [ZeroDivisionError, ValueError], ids=lambda e: e.__name__)
def test_a_parser_bug_costs_its_bytes_not_the_reader(
    pty: Pty, readers: list[SerialReader], caplog: pytest.LogCaptureFixture, error: type
):
    """ZeroDivisionError ended the thread; ValueError (what the line parser really raised
    for a non-ASCII QR line) closed and reopened the port, losing the next card with it."""
    got: Delivered = []
    parser = BuggyParser()
    parser.error = error
    reader = reader_on(readers, pty.path, failing_once(RuntimeError("unused"), got), parser)
    pty.write(rdm(CARD_B)[:6] + b"\xee")  # half a frame, then the byte that trips the bug
    time.sleep(0.3)
    pty.write(rdm(CARD_B))
    wait_for(lambda: got, 5, "the next card")
    assert got == [("door-7", CARD_B)] and reader.opens == 1 and reader.state == "open"
    assert parser.rejected == {"parser_error": 1}  # counted; the half frame went with it
    assert len(errors_logged(caplog)) == 1


# -- 2. the thread's heartbeat ------------------------------------------------------------


def beats(reader: SerialReader, count: int) -> list[float]:
    """The reader's next ``count`` distinct heartbeats (waited for, not timed)."""
    seen: list[float] = []

    def more() -> bool:
        if not seen or reader.last_beat != seen[-1]:
            seen.append(reader.last_beat)
        return len(seen) >= count

    wait_for(more, 20, f"{count} heartbeats")
    return seen


def test_an_idle_open_reader_beats_every_read_timeout(pty: Pty, readers: list[SerialReader]):
    reader = reader_on(readers, pty.path, lambda *_: None)
    beats(reader, 6)  # it keeps turning with nothing to read
    assert reader.state == "open" and reader.alive()


def test_an_unplugged_reader_beats_while_it_waits_for_the_port(
    readers: list[SerialReader],
):
    reader = reader_on(readers, "/nonexistent", lambda *_: None)
    beats(reader, 3)  # each reopen attempt is a turn
    assert reader.state == "closed" and reader.error and reader.alive()


def test_a_reader_stuck_in_its_callback_is_not_alive_until_it_returns(
    pty: Pty, readers: list[SerialReader]
):
    release, entered = threading.Event(), threading.Event()
    beat_in_callback: list[float] = []

    def stuck(*_: object) -> None:
        beat_in_callback.append(reader.last_beat)
        entered.set()
        release.wait(10)

    reader = reader_on(readers, pty.path, stuck)
    pty.write(rdm(CARD_A))
    assert entered.wait(10)
    wait_for(lambda: not reader.alive(within_s=0.3), 10, "the stuck reader to be seen")
    assert reader.last_beat == beat_in_callback[0]  # no turn while stuck
    release.set()
    wait_for(lambda: reader.alive(within_s=0.3), 10, "the reader to turn again")


class Halt(BaseException):
    """Not an error: what ends a thread however it is written (e.g. SystemExit)."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_reader_thread_that_ends_never_still_says_open(pty: Pty, readers: list[SerialReader]):
    """The callback's guard is for errors (Exception); anything else still ends the thread,
    and then the reader must not claim to be open (it did, for ever)."""

    def halt(*_: object) -> None:
        raise Halt

    reader = reader_on(readers, pty.path, halt)
    pty.write(rdm(CARD_A))
    wait_for(lambda: not reader._thread.is_alive(), 5, "the thread to end")
    assert reader.state == "closed" and reader.error and not reader.alive()


def test_a_stopped_reader_is_closed_and_not_alive(pty: Pty, readers: list[SerialReader]):
    reader = reader_on(readers, pty.path, lambda *_: None)
    reader.stop()
    assert reader.state == "closed" and not reader.alive()


# -- 3 and 4. a real node -----------------------------------------------------------------


def add(node: Node, card: str) -> None:
    out = cli(node.config, "pass", "add", "--kind", "resident", "--card", card, "--name", "张三")
    assert out.returncode == 0, out.stderr


def decisions(listener: Listener, wait: float) -> list[dict]:
    return [body for topic, body in listener.drain(wait) if topic.endswith("/decision")]


FRAMES = {  # each protocol's frame for a card, cut where a half frame ends
    "rdm6300": lambda card: Rdm6300.encode(card),
    "line": lambda card: Line.encode(card),
}


@pytest.mark.parametrize("protocol", ["rdm6300", "line"])
def test_a_reader_unplugged_mid_frame_never_decides_the_half_frame(
    tmp_path: Path, broker: Broker, listener: Listener, protocol: str
):
    """Half of card A's frame, the reader unplugged (socat stopped) and plugged back, the
    rest of A's frame, then card B: B is decided once, A never; readiness showed the reader
    closed while it was away; the half frame is counted as ``port_lost``.

    The inter-byte timeout is long here so that the half frame is certainly still held when
    the port goes (with 100 ms it would often expire first and be counted as ``timeout``)."""
    wire = SocatPair(tmp_path).start()
    reader = {"id": "main-in", "gate": "main", "port": wire.device, "protocol": protocol,
              "inter_byte_timeout_ms": 10_000}  # fmt: skip
    node = node_for(tmp_path, [reader], broker.port)
    try:  # whatever fails, the node and socat are stopped
        node.start(wait_ready=True)
        add(node, CARD_A.hex or "")
        add(node, CARD_B.hex or "")
        frame_a = FRAMES[protocol](CARD_A)
        half = len(frame_a) // 2
        wire.write(frame_a[:half])
        time.sleep(0.3)  # read by the node and held, waiting for the rest
        assert node.reader("main-in")["state"] == "open"

        wire.stop()  # unplugged
        wait_for(lambda: node.reader("main-in").get("state") == "closed", 10, "reader closed")
        ready, body = node.ready()
        assert not ready and body["readers"]["main-in"]["ok"] is False
        assert body["readers"]["main-in"]["error"]
        assert body["threads"]["reader:main-in"]  # away, but its thread still turns

        wire.start()  # plugged back in
        wait_for(lambda: node.reader("main-in").get("state") == "open", 10, "reader reopened")
        wait_for(lambda: node.ready()[0], 10, "the node to be ready again")
        wire.write(frame_a[half:])  # the rest of A's frame: not glued to the half before
        assert decisions(listener, 0.5) == []
        wire.write(FRAMES[protocol](CARD_B))
        (decided,) = [listener.next("/decision"), *decisions(listener, 1.5)]
        assert decided["card"] == CARD_B.masked and decided["reason"] == "ok"

        health = node.reader("main-in")
        assert health["ok"] and health["frames"] == 1
        # the rest of A's frame is refused as what it is on its own (stray bytes may come
        # in more than one read: each read's garbage is counted)
        rest_cause = {"rdm6300": "garbage", "line": "bad_card"}[protocol]
        assert health["rejected"].keys() == {"port_lost", rest_cause}
        assert health["rejected"]["port_lost"] == 1
    finally:
        node.stop()
        wire.stop()


def test_a_line_that_crashed_the_parser_no_longer_closes_the_port_or_costs_the_card(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty
):
    """``GH1.`` and a non-ASCII byte (a misread QR pass) raised UnicodeDecodeError in the
    line parser; the thread took it for a port fault, closed the port and lost the card
    that came in the same read."""
    reader = {"id": "main-in", "gate": "main", "port": pty.path, "protocol": "line"}
    node = node_for(tmp_path, [reader], broker.port)
    try:
        node.start(wait_ready=True)
        add(node, "0040856634")
        pty.write(b"GH1.\xe9\r\n0040856634\r\n")
        assert listener.next("/decision")["reason"] == "ok"
        health = node.reader("main-in")
        assert health["state"] == "open" and health["error"] is None
        assert health["rejected"] == {"bad_card": 1}
    finally:
        node.stop()


def test_a_failing_scan_lookup_in_the_node_costs_that_scan_not_the_reader(
    tmp_path: Path, broker: Broker, listener: Listener, pty: Pty
):
    """The service's own callback raising for real: a scanned slip number is looked up on
    the reader's thread, and the lookup fails (here the slips table is not where it should
    be: sqlite3.OperationalError). That ended the reader thread while readiness still said
    "open", and no card on that reader was ever decided again."""
    reader = {"id": "main-in", "gate": "main", "port": pty.path, "protocol": "line"}
    node = node_for(tmp_path, [reader], broker.port)
    try:
        node.start(wait_ready=True)
        add(node, "0040856634")
        db = sqlite3.connect(tmp_path / "var" / "edge.db", isolation_level=None)
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("ALTER TABLE goods_slips RENAME TO goods_slips_away")
        try:
            pty.write(b"FX-2026-00001\r\n")
            time.sleep(0.5)
            pty.write(b"FX-2026-00001\r\n")  # the same failure again: counted, not logged
            time.sleep(0.5)
        finally:
            db.execute("ALTER TABLE goods_slips_away RENAME TO goods_slips")
            db.close()
        pty.write(b"0040856634\r\n")
        assert listener.next("/decision")["reason"] == "ok"
        body = node.ready()[1]
        assert body["readers"]["main-in"]["state"] == "open" and body["threads"]["reader:main-in"]
        logged = [
            line for line in node.log.read_text().splitlines()
            if "reader main-in: handling a frame failed" in line
        ]  # fmt: skip
        assert len(logged) == 1
    finally:
        node.stop()
