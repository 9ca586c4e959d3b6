"""Line readers: ASCII card numbers ending in CR, LF or CRLF.

USB/RS-232 "ID/IC card readers" and barcode/QR scanners in serial mode send the card as
hex (8, 10 or 14 digits) or as the 10-digit decimal printed on it, then Enter. The
reader's ``card_format`` setting says which, where a site's readers are known to send hex
IDs that happen to have no letters. A scanner reading a goods release slip's barcode sends
its number (``FX-2026-00001``): that comes out as a Scan, not a card.

A line longer than MAX_LINE is dropped whole and counted once (``too_long``): once its first
MAX_LINE bytes have come without an end, the rest is skipped up to the next CR or LF. A line
has no start byte, so the only other thing that ends it is a pause longer than the
inter-byte timeout (or the port being lost): the next line is then read afresh, never the
tail of the long one glued to it, and never a good card swallowed as that tail.
"""

from __future__ import annotations

import re

from drivers.protocol import Frame, Parser, Scan
from edge.cards import CardId, parse_card

MAX_LINE = 1024  # an office-signed QR pass is a few hundred characters
SLIP_NUMBER = re.compile(rb"^[A-Z]{2}-\d{4}-\d{5}$")  # a scanned goods release slip
QR_PASS = b"GH1."  # an office-signed pass (sync.qr)
_END = re.compile(rb"[\r\n]")


class Line(Parser):
    name = "line"
    max_buffer = MAX_LINE * 2

    def __init__(self, inter_byte_timeout: float = 0.1, card_format: str = "auto") -> None:
        super().__init__(inter_byte_timeout, card_format)
        self._skipping = False  # inside an over-long line: drop it up to its end

    def pending(self) -> bool:
        return bool(self.buf) or self._skipping

    def reset(self) -> None:
        super().reset()
        self._skipping = False

    def overflow(self) -> None:
        # a line's kept tail would be read as a line of its own: skip the whole line instead
        self.buf.clear()
        self._skipping = True

    def extract(self) -> list[Frame | Scan]:
        out: list[Frame | Scan] = []
        buf = self.buf
        while buf:
            m = _END.search(buf)
            if self._skipping:  # the rest of an over-long line, counted when it began
                if m is None:
                    buf.clear()
                    break
                del buf[: m.end()]
                self._skipping = False
                continue
            if m is None:
                if len(buf) > MAX_LINE:
                    self.reject("too_long")
                    buf.clear()
                    self._skipping = True
                break
            line = bytes(buf[: m.start()])
            del buf[: m.end()]
            # measured as sent, like a line still arriving (above): a card padded with
            # blanks past MAX_LINE must not be read when it comes in one read only
            if len(line) > MAX_LINE:
                self.reject("too_long")
                continue
            text = line.strip()
            if not text:
                continue  # the LF of a CRLF, or a blank line
            frame = self.read_line(text, line)
            if frame is not None:
                out.append(frame)
        return out

    def read_line(self, text: bytes, line: bytes) -> Frame | Scan | None:
        try:
            ascii_text = text.decode("ascii")
        except UnicodeDecodeError:  # noise, or a scanner misreading: never a card or code
            self.reject("bad_card")
            return None
        try:
            return Frame(parse_card(ascii_text, self.card_format), line)
        except ValueError:
            if SLIP_NUMBER.match(text) or text.startswith(QR_PASS):
                return Scan(ascii_text, line)
            self.reject("bad_card")
            return None

    @staticmethod
    def encode(card: CardId) -> bytes:
        return f"{card.key:010d}\r\n".encode()
