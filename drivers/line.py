"""Line readers: ASCII card numbers ending in CR, LF or CRLF.

USB/RS-232 "ID/IC card readers" and barcode/QR scanners in serial mode send the card as
hex (8, 10 or 14 digits) or as the 10-digit decimal printed on it, then Enter. The
reader's ``card_format`` setting says which, where a site's readers are known to send hex
IDs that happen to have no letters. A scanner reading a goods release slip's barcode sends
its number (``FX-2026-00001``): that comes out as a Scan, not a card.
"""

from __future__ import annotations

import re

from drivers.protocol import Frame, Parser, Scan
from edge.cards import CardId, parse_card

MAX_LINE = 1024  # an office-signed QR pass is a few hundred characters
SLIP_NUMBER = re.compile(rb"^[A-Z]{2}-\d{4}-\d{5}$")  # a scanned goods release slip
QR_PASS = b"GH1."  # an office-signed pass (sync.qr)


class Line(Parser):
    name = "line"
    max_buffer = MAX_LINE * 2

    def __init__(self, inter_byte_timeout: float = 0.1, card_format: str = "auto") -> None:
        super().__init__(inter_byte_timeout, card_format)
        self._skipping = False  # inside an over-long line: drop it up to its end

    def extract(self) -> list[Frame | Scan]:
        out: list[Frame | Scan] = []
        buf = self.buf
        while True:
            ends = [i for i in (buf.find(b"\r"), buf.find(b"\n")) if i >= 0]
            if not ends:
                if len(buf) > MAX_LINE:
                    self.reject("too_long")
                    buf.clear()
                    self._skipping = True
                return out
            end = min(ends)
            line = bytes(buf[:end])
            del buf[: end + 1]
            if self._skipping:
                self._skipping = False
                continue
            text = line.strip()
            if not text:
                continue  # the LF of a CRLF, or a blank line
            if len(text) > MAX_LINE:
                self.reject("too_long")
                continue
            try:
                card = parse_card(text.decode("ascii"), self.card_format)
            except (UnicodeDecodeError, ValueError):
                if SLIP_NUMBER.match(text) or text.startswith(QR_PASS):
                    out.append(Scan(text.decode("ascii"), line))
                else:
                    self.reject("bad_card")
                continue
            out.append(Frame(card, line))

    @staticmethod
    def encode(card: CardId) -> bytes:
        return f"{card.key:010d}\r\n".encode()
