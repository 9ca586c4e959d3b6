"""Binary framed 13.56 MHz (Mifare) modules with auto-read: STX/address/length/.../ETX.

The framing many Chinese Mifare UART modules use (research/anchors_access_control.md
§6.1, family 2):

    STX 0x02 | ADDR (2 bytes) | LEN | CMD | STATUS | DATA … | CHK | ETX 0x03

LEN counts LEN, CMD, STATUS and DATA; CHK is the low byte of the sum of those same bytes.
A card report is the anticollision reply: CMD 0x47, STATUS 0x00 and a 4- or 7-byte UID as
DATA, e.g. ``02 00 00 07 47 00 82 D4 D7 11 8C 03`` carries UID ``82D4D711``. A reply to any
other command is never a card, whatever its data (``bad_cmd``); a card report with any
other status (no card, collision) or UID length is counted as ``no_card``.

STX (0x02) is also an ordinary data byte, so a byte that looks like a frame's start may be
noise whose "length" runs past the real frame that follows it. Such a header is never
allowed to hide a complete card report that starts inside it: the report is read, and the
header counted as ``truncated``, instead of the report waiting inside the header's span
until the inter-byte timeout drops both.
"""

from __future__ import annotations

from drivers.protocol import Frame, Parser, Scan
from edge.cards import CardId

STX, ETX = 0x02, 0x03
CMD_CARD = 0x47
MIN_LEN, MAX_LEN = 3, 32
UID_LENGTHS = (4, 7)

# what _check finds at a start byte
INCOMPLETE, BAD_LENGTH, BAD_END, BAD_CHECKSUM, FRAMED = range(5)


class StxBin(Parser):
    name = "stxbin"

    def _check(self, at: int) -> tuple[int, int]:
        """(what starts at ``buf[at]``, an STX, and its total length in bytes)."""
        buf = self.buf
        if len(buf) < at + 4:
            return INCOMPLETE, 0
        length = buf[at + 3]
        if not MIN_LEN <= length <= MAX_LEN:
            return BAD_LENGTH, 0
        total = length + 5
        if len(buf) < at + total:
            return INCOMPLETE, total
        if buf[at + total - 1] != ETX:
            return BAD_END, total
        if sum(buf[at + 3 : at + 3 + length]) & 0xFF != buf[at + total - 2]:
            return BAD_CHECKSUM, total
        return FRAMED, total

    def _is_card_report(self, at: int, total: int) -> bool:
        """Whether the framed bytes at ``at`` are a good card report: the anticollision
        command, status 0, a 4- or 7-byte UID (total = 8 bytes of framing + the UID)."""
        buf = self.buf
        return buf[at + 4] == CMD_CARD and buf[at + 5] == 0x00 and total - 8 in UID_LENGTHS

    def _report_inside(self, end: int) -> int | None:
        """Where the first complete, good card report starting in ``buf[1:end]`` is."""
        buf = self.buf
        at = buf.find(STX, 1, end)
        while at > 0:
            kind, total = self._check(at)
            if kind == FRAMED and self._is_card_report(at, total):
                return at
            at = buf.find(STX, at + 1, end)
        return None

    def extract(self) -> list[Frame | Scan]:
        out: list[Frame | Scan] = []
        buf = self.buf
        while buf:
            start = buf.find(STX)
            if start < 0:
                self.reject("garbage")
                buf.clear()
                break
            if start > 0:
                self.reject("garbage")
                del buf[:start]
            kind, total = self._check(0)
            if kind == FRAMED and self._is_card_report(0, total):
                frame = bytes(buf[:total])
                del buf[:total]
                hex_id = frame[6:-2].hex().upper()
                out.append(Frame(CardId(int(hex_id, 16) & 0xFFFFFFFF, hex_id), frame))
                continue
            if kind == BAD_LENGTH:
                self.reject("bad_length")
                del buf[:1]  # this STX was not a frame start: look for the next one
                continue
            # Not a card report here, or not yet: a good report starting inside what this
            # start byte claims means the claim was noise (a real frame never holds one)
            inside = self._report_inside(len(buf) if kind == INCOMPLETE else total)
            if inside is not None:
                self.reject("truncated")
                del buf[:inside]
                continue
            if kind == INCOMPLETE:
                break  # the rest may come; else the inter-byte timeout drops it
            if kind in (BAD_END, BAD_CHECKSUM):
                self.reject("bad_end" if kind == BAD_END else "bad_checksum")
                del buf[:1]  # drop one byte: a real frame may start inside this one
                continue
            # well framed, but not a card: a reply to another command, or no card
            self.reject("no_card" if buf[4] == CMD_CARD else "bad_cmd")
            del buf[:total]
        return out

    @staticmethod
    def encode(card: CardId) -> bytes:
        hex_id = card.hex if card.hex and len(card.hex) in (8, 14) else f"{card.key:08X}"
        uid = bytes.fromhex(hex_id)
        body = bytes([len(uid) + 3, CMD_CARD, 0x00]) + uid
        return bytes([STX, 0x00, 0x00]) + body + bytes([sum(body) & 0xFF, ETX])
