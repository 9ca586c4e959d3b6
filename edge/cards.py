"""Card numbers: one identity per card, whatever rendering a reader or a clerk uses.

A card's identity is the low 32 bits of its ID. That is what the 10-digit decimal printed
on EM and Mifare cards encodes, so a card registered as ``01026F6C3A`` (10 hex digits) and
one registered as ``0040856634`` (the printed decimal) match each other.
"""

from __future__ import annotations

from dataclasses import dataclass

_HEX = set("0123456789abcdefABCDEF")
HEX_LENGTHS = (8, 10, 14)


@dataclass(frozen=True, slots=True)
class CardId:
    """A card as the gate knows it: ``key`` is what matching uses."""

    key: int  # low 32 bits of the ID
    hex: str | None = None  # the full ID in hex, when the rendering carried it

    @property
    def masked(self) -> str:
        """What may leave the box: the last 4 hex digits of the ID."""
        return mask_key(self.key)

    @property
    def display(self) -> str:
        return self.hex or f"{self.key:08X}"


def mask_key(key: int) -> str:
    return f"****{key & 0xFFFF:04X}"


def parse_card(text: str, fmt: str = "auto") -> CardId:
    """Parse a card number; raise ValueError naming the problem.

    ``fmt`` is ``hex``, ``dec`` or ``auto``. In ``auto``, 10 decimal digits are the printed
    decimal number (the only way a clerk or a keyboard-wedge reader renders it); anything
    with a hex letter, or 8/14 digits, is hex. ``0x...``/``hex:...`` and ``dec:...`` force
    the reading, for the rare 10-digit hex ID without letters.
    """
    s = text.strip()
    low = s.lower()
    for prefix, forced in (("0x", "hex"), ("hex:", "hex"), ("dec:", "dec")):
        if low.startswith(prefix):
            s, fmt = s[len(prefix) :], forced
            break
    if not s:
        raise ValueError("card number is empty")
    if fmt == "auto":
        fmt = "dec" if (s.isdigit() and len(s) == 10 and int(s) <= 0xFFFFFFFF) else "hex"
    if fmt == "dec":
        if not s.isdigit() or len(s) > 10:
            raise ValueError(f"card number {text!r} is not a decimal card number (up to 10 digits)")
        value = int(s)
        if value > 0xFFFFFFFF:
            raise ValueError(f"card number {text!r} is larger than 32 bits")
        return CardId(value)
    if fmt != "hex":
        raise ValueError(f"unknown card format {fmt!r} (hex, dec or auto)")
    if not set(s) <= _HEX:
        raise ValueError(f"card number {text!r} is neither hex nor a 10-digit decimal")
    if len(s) not in HEX_LENGTHS:
        raise ValueError(f"card number {text!r} has {len(s)} hex digits (8, 10 or 14 expected)")
    s = s.upper()
    return CardId(int(s, 16) & 0xFFFFFFFF, s)
