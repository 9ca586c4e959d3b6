"""A patrol wand's download (巡更棒): the reads it stored, sent over its serial cable when
docked, as its vendors' software saves them — one read per line, ``seq,tag,time``:

    0001,0000900001,2026-12-06 09:05:12

The ``seq`` is the wand's own count; ``tag`` the checkpoint tag's number (the card number,
as the gate's readers print it, or the text of a QR tag); ``time`` the wand's clock, local
time with no zone. A first line that is not a read (a header: 序号,卡号,时间) is skipped, and
so are blank lines. Anything else that is not a read is an error naming its line: the
upload is all or nothing, so a half-read wand never looks like a patrol with gaps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

MAX_BYTES = 4 * 1024 * 1024  # a wand holds some 60,000 reads at most
_TIME = "%Y-%m-%d %H:%M:%S"
_TAG = re.compile(r"^[0-9A-Za-z._:-]{1,64}$")


@dataclass(frozen=True)
class WandRead:
    seq: int
    tag: str
    at: datetime  # local, naive: the wand's clock


class WandError(ValueError):
    """The download is not one this parser reads; ``problems`` names each bad line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems[:20]) + (" …" if len(problems) > 20 else ""))
        self.problems = problems


def parse(data: bytes) -> list[WandRead]:
    """Every read of a download, in its order; WandError naming every bad line."""
    if len(data) > MAX_BYTES:
        raise WandError([f"{len(data)} bytes is more than a wand holds ({MAX_BYTES})"])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("gb18030", errors="replace")  # a header saved by a Chinese PC
    reads: list[WandRead] = []
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = [f.strip() for f in re.split(r"[,\t]", line)]
        if number == 1 and not fields[0].isdigit():
            continue  # the header
        if len(fields) != 3:
            problems.append(f"line {number}: {len(fields)} fields, not seq,tag,time")
            continue
        seq, tag, when = fields
        if not seq.isdigit():
            problems.append(f"line {number}: {seq!r} is not a read's number")
        elif not _TAG.match(tag):
            problems.append(f"line {number}: {tag!r} is not a tag")
        else:
            try:
                reads.append(WandRead(int(seq), tag, datetime.strptime(when, _TIME)))
            except ValueError:
                problems.append(f"line {number}: {when!r} is not a time like 2026-12-06 09:05:12")
    if problems:
        raise WandError(problems)
    return reads
