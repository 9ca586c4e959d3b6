"""Binary framed 13.56 MHz (Mifare) modules with auto-read: STX/address/length/.../ETX.

The framing many Chinese Mifare UART modules use (research/anchors_access_control.md
§6.1, family 2):

    STX 0x02 | ADDR (2 bytes) | LEN | CMD | STATUS | DATA … | CHK | ETX 0x03

LEN counts LEN, CMD, STATUS and DATA; CHK is the low byte of the sum of those same bytes.
A card report has STATUS 0x00 and a 4- or 7-byte UID as DATA, e.g. the anticollision
reply ``02 00 00 07 47 00 82 D4 D7 11 8C 03`` carries UID ``82D4D711``. Frames with any
other status (no card, collision) are counted and ignored.
"""

from __future__ import annotations

from drivers.protocol import Frame, Parser, Scan
from edge.cards import CardId

STX, ETX = 0x02, 0x03
CMD_CARD = 0x47
MIN_LEN, MAX_LEN = 3, 32


class StxBin(Parser):
    name = "stxbin"

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
            if len(buf) < 4:
                break
            length = buf[3]
            if not MIN_LEN <= length <= MAX_LEN:
                self.reject("bad_length")
                del buf[:1]  # this STX was not a frame start: look for the next one
                continue
            total = length + 5
            if len(buf) < total:
                break
            frame = bytes(buf[:total])
            body = frame[3 : 3 + length]
            if frame[-1] != ETX or sum(body) & 0xFF != frame[-2]:
                self.reject("bad_end" if frame[-1] != ETX else "bad_checksum")
                del buf[:1]
                continue
            del buf[:total]
            status, uid = body[2], body[3:]
            if status != 0 or len(uid) not in (4, 7):
                self.reject("no_card")
                continue
            hex_id = uid.hex().upper()
            out.append(Frame(CardId(int(hex_id, 16) & 0xFFFFFFFF, hex_id), frame))
        return out

    @staticmethod
    def encode(card: CardId) -> bytes:
        hex_id = card.hex if card.hex and len(card.hex) in (8, 14) else f"{card.key:08X}"
        uid = bytes.fromhex(hex_id)
        body = bytes([len(uid) + 3, CMD_CARD, 0x00]) + uid
        return bytes([STX, 0x00, 0x00]) + body + bytes([sum(body) & 0xFF, ETX])
