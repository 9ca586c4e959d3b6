"""RDM6300-style 125 kHz readers (and the 13.56 MHz clones that copy them).

14 bytes: STX 0x02, 10 ASCII hex digits (the card's 5 ID bytes), 2 ASCII hex digits of the
XOR of those 5 bytes, ETX 0x03; 9600 8N1. A reader repeats the frame while the card stays
in the field. Unlike ESPHome's parser, an STX seen mid-frame restarts the frame, and the
digits and checksum are checked before a card is reported.
"""

from __future__ import annotations

from functools import reduce

from drivers.protocol import Frame, Parser, Scan
from edge.cards import CardId

STX, ETX = 0x02, 0x03
LENGTH = 14
_HEX = frozenset(b"0123456789ABCDEFabcdef")


class Rdm6300(Parser):
    name = "rdm6300"

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
            restart = buf.find(STX, 1, LENGTH)
            if restart > 0:  # a new frame began before this one ended
                self.reject("truncated")
                del buf[:restart]
                continue
            if len(buf) < LENGTH:
                break
            frame = bytes(buf[:LENGTH])
            del buf[:LENGTH]
            card = self.check(frame)
            if card is not None:
                out.append(Frame(card, frame))
        return out

    def check(self, frame: bytes) -> CardId | None:
        body = frame[1:13]
        if frame[13] != ETX:
            self.reject("bad_end")
            return None
        if not set(body) <= _HEX:
            self.reject("bad_chars")
            return None
        data = bytes.fromhex(body[:10].decode())
        if reduce(lambda a, b: a ^ b, data) != int(body[10:12], 16):
            self.reject("bad_checksum")
            return None
        hex_id = body[:10].decode().upper()
        return CardId(int(hex_id, 16) & 0xFFFFFFFF, hex_id)

    @staticmethod
    def encode(card: CardId) -> bytes:
        hex_id = (card.hex or f"{card.key:010X}")[-10:].rjust(10, "0")
        data = bytes.fromhex(hex_id)
        checksum = reduce(lambda a, b: a ^ b, data)
        return bytes([STX]) + f"{hex_id}{checksum:02X}".encode() + bytes([ETX])
