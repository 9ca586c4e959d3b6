"""What every reader protocol shares: bytes in, card reads out, rejects counted.

A protocol is a parser in a file of its own (rdm6300.py, line.py, stxbin.py), fed by
whatever transport carries its bytes (a serial port, a test). The base class holds the
rules the anchors agree on (research §6.4): an inter-byte timeout drops a partial frame,
the buffer is bounded, and every rejected frame is counted by cause.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from edge.cards import CardId


@dataclass(frozen=True, slots=True)
class Frame:
    """One good frame: the card it carries and the bytes it came in (kept for forensics)."""

    card: CardId
    raw: bytes


@dataclass(frozen=True, slots=True)
class Scan:
    """A code that is not a card: a goods release slip's number from a barcode scanner."""

    text: str
    raw: bytes


class Parser(ABC):
    name: ClassVar[str]
    max_buffer: ClassVar[int] = 64

    def __init__(self, inter_byte_timeout: float = 0.1, card_format: str = "auto") -> None:
        self.inter_byte_timeout = inter_byte_timeout
        self.card_format = card_format
        self.buf = bytearray()
        self.last_byte_at: float | None = None
        self.rejected: Counter[str] = Counter()
        self.accepted = 0

    def feed(self, data: bytes, now: float) -> list[Frame | Scan]:
        """Take the bytes read at monotonic time ``now``; return the complete good frames."""
        if (
            self.buf
            and self.last_byte_at is not None
            and now - self.last_byte_at > self.inter_byte_timeout
        ):
            self.reject("timeout")  # a partial frame that never finished
            self.buf.clear()
        if not data:
            return []
        self.last_byte_at = now
        self.buf += data
        frames = self.extract()
        if len(self.buf) > self.max_buffer:
            self.reject("overflow")
            del self.buf[: len(self.buf) - self.max_buffer // 2]
        self.accepted += len(frames)
        return frames

    def reject(self, cause: str) -> None:
        self.rejected[cause] += 1

    @abstractmethod
    def extract(self) -> list[Frame | Scan]:
        """Consume complete frames (good or bad) from ``self.buf``."""

    @staticmethod
    @abstractmethod
    def encode(card: CardId) -> bytes:
        """The frame a reader of this kind sends for ``card`` (for the simulator and tests)."""
