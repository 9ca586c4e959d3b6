"""The push batch on the wire: one line per outbox row, tab-separated, in PostgreSQL COPY's
text format, so the office can hand the rows to COPY without decoding JSON twice.

    <seq> TAB <kind> TAB <ref> TAB <sha256 of the payload> TAB <payload (JSON)> NEWLINE

kind, ref and payload are escaped as COPY expects (backslash, tab, CR, LF). The epoch and
the epoch's first seq travel as query parameters.

What the sha256 covers, and what the office compares: the gate hashes its outbox row's
payload text (UTF-8) before escaping; the office unescapes the field, checks the hash over
that text, and then hands the *escaped* field to COPY. The two readings of the field — the
office's ``unescape`` and COPY's own — must therefore agree, or the office would store
something other than what it checked. COPY reads more escapes than ``escape`` writes
(``\\b``, ``\\f``, ``\\v``, octal ``\\101``, hex ``\\x41``, ``\\N`` as NULL, a backslash
before the delimiter), so ``decode`` refuses any field that is not exactly what ``escape``
makes of some text: there, and only there, both readings are the same (property-tested
against a real COPY in tests/security/test_office_push.py).

Once stored, the payload is jsonb: the value of the text that was hashed, not its spelling
(key order and spacing are jsonb's own, numbers exact decimals). So the stored ``sha256``
is the gate's text's, checked at receipt; the stored ``payload`` equals that text parsed
(strings exactly, numbers as decimals); re-serialising the jsonb does not give back the
gate's bytes, and nothing at the office relies on it (the gate still has the text, and a
resend is compared by hash).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import NamedTuple

_UNESCAPE = re.compile(r"\\(.)")
_CHARS = {"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}
_ESCAPES = re.compile(r"\\[\\tnr]")  # the only escapes ``escape`` writes
SEQ_MAX = 2**63 - 1  # PostgreSQL's bigint, the office's column


def escape(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    )


def unescape(value: str) -> str:
    if "\\" not in value:
        return value
    return _UNESCAPE.sub(lambda m: _CHARS.get(m.group(1), m.group(1)), value)


def canonical(field: str) -> bool:
    """Whether ``field`` is ``escape`` of some text without NUL: the fields COPY reads as
    ``unescape`` does. (A raw CR is refused by COPY; NUL by PostgreSQL's text.)"""
    if "\r" in field or "\x00" in field:  # (str's own scans: far faster than a regex)
        return False
    # every backslash must start one of the four escapes; removing those (left to right,
    # as COPY reads them) must leave none
    return "\\" not in field or "\\" not in _ESCAPES.sub("", field)


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
    lines = text.split("\n")
    if lines[-1]:  # a batch is whole lines: a last one without its newline was cut short
        raise ValueError(f"line {len(lines)} does not end with a newline")
    for n, line in enumerate(lines[:-1], 1):
        fields = line.split("\t")
        if (
            len(fields) != 5
            or not (fields[0].isascii() and fields[0].isdigit())  # not "١": int() takes it
            or len(fields[0]) > 19
            or len(fields[3]) != 64  # (a sha256 that is not hex matches no payload)
        ):
            raise ValueError(f"line {n} is not seq, kind, ref, sha256, payload")
        seq = int(fields[0])
        if not 1 <= seq <= SEQ_MAX:
            raise ValueError(f"line {n}: seq {seq} is not between 1 and {SEQ_MAX}")
        if not (canonical(fields[1]) and canonical(fields[2]) and canonical(fields[4])):
            named = {"kind": fields[1], "ref": fields[2], "payload": fields[4]}
            name = next(name for name, field in named.items() if not canonical(field))
            raise ValueError(
                f"line {n}: {name} is not escaped as the protocol escapes (only \\\\, \\t, "
                "\\n and \\r; no NUL)"
            )
        out.append(Row(seq, fields[1], fields[2], fields[3], fields[4]))
    return out
