"""What every reader protocol shares: bytes in, card reads out, rejects counted.

A protocol is a parser in a file of its own (rdm6300.py, line.py, stxbin.py), fed by
whatever transport carries its bytes (a serial port, a test). The base class holds the
rules the anchors agree on (research §6.4): an inter-byte timeout drops a partial frame,
the buffer is bounded, and every rejected frame is counted by cause.

A parser's whole state is its buffer plus whatever ``pending`` and ``reset`` cover in its
subclass (the line parser's "skip to the end of this over-long line"): a partial frame is
dropped by ``reset`` alone, whether it timed out, overflowed or lost its port.
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
        """Take the bytes read at monotonic time ``now``; return the complete good frames.

        A read with no bytes (an idle port's timeout) still lets a partial frame expire."""
        if (
            self.pending()
            and self.last_byte_at is not None
            and now - self.last_byte_at > self.inter_byte_timeout
        ):
            # a partial frame that never finished: what comes next is a new frame, even for
            # a protocol with no start byte (a line); a line being skipped was counted already
            self.drop("timeout")
        if not data:
            return []
        self.last_byte_at = now
        self.buf += data
        frames = self.extract()
        if len(self.buf) > self.max_buffer:
            self.reject("overflow")
            self.overflow()
        self.accepted += len(frames)
        return frames

    def pending(self) -> bool:
        """Whether a frame is under way: bytes held, or (a subclass's own state) a frame
        being skipped to its end."""
        return bool(self.buf)

    def reset(self) -> None:
        """Forget any frame under way: the next byte starts afresh."""
        self.buf.clear()

    def drop(self, cause: str) -> None:
        """Drop the frame under way, counting it under ``cause`` if bytes of it were held
        (the transport calls this when the port is lost mid-frame)."""
        if self.buf:
            self.reject(cause)
        self.reset()

    def overflow(self) -> None:
        """The buffer outgrew ``max_buffer``: keep its newer half, where the start of the
        next frame may be. A protocol whose frames have no start byte overrides this, since
        a kept tail would read as a frame of its own."""
        del self.buf[: len(self.buf) - self.max_buffer // 2]

    def reject(self, cause: str) -> None:
        self.rejected[cause] += 1

    @abstractmethod
    def extract(self) -> list[Frame | Scan]:
        """Consume complete frames (good or bad) from ``self.buf``."""

    @staticmethod
    @abstractmethod
    def encode(card: CardId) -> bytes:
        """The frame a reader of this kind sends for ``card`` (for the simulator and tests)."""
