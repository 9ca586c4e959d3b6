"""The push batch on the wire: one line per outbox row, tab-separated, in PostgreSQL COPY's
text format, so the office can hand the rows to COPY without decoding JSON twice.

    <seq> TAB <kind> TAB <ref> TAB <sha256 of the payload> TAB <payload (JSON)> NEWLINE

kind, ref and payload are escaped as COPY expects (backslash, tab, CR, LF). The epoch and
the epoch's first seq travel as query parameters.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import NamedTuple

_UNESCAPE = re.compile(r"\\(.)")
_CHARS = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}


def escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: _CHARS.get(m.group(1), m.group(1)), value)


class Row(NamedTuple):
    seq: int
    kind: str  # as on the wire (escaped)
    ref: str  # escaped
    sha256: str
    payload: str  # escaped


def encode(rows: Iterable[tuple[int, str, str, str]]) -> str:
    """(seq, kind, ref, payload) rows → the batch text."""
    return "".join(
        f"{seq}\t{escape(kind)}\t{escape(ref)}\t"
        f"{hashlib.sha256(payload.encode()).hexdigest()}\t{escape(payload)}\n"
        for seq, kind, ref, payload in rows
    )


def decode(text: str) -> list[Row]:
    """The batch's rows, or ValueError naming the bad line."""
    out = []
    for n, line in enumerate(text.split("\n")[:-1] if text else [], 1):
        fields = line.split("\t")
        if len(fields) != 5 or not fields[0].isdigit() or len(fields[3]) != 64:
            raise ValueError(f"line {n} is not seq, kind, ref, sha256, payload")
        out.append(Row(int(fields[0]), fields[1], fields[2], fields[3], fields[4]))
    return out
