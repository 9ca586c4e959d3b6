"""Records in the APIs' one shape: a time is ISO 8601 with its offset in the site's zone, a
yes/no is a JSON boolean.

Both stores keep UNIX seconds. The gate's routes answer through a view per record
(edge.views); two things have no one view: the records the gates push, which the office
keeps byte for byte as sent and which are of many kinds (docs/sync.md), and the handover
report, a document frozen (and hashed) as it was built. For those the rule goes by key,
the same for all. The sync protocol (/sync/v1) is spoken between machines and keeps its
numbers."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

from edge.clock import iso

# the moments in every record kind: ts, at, *_at, valid_from, valid_until, until (a
# gate mode's end), ...
TIME_KEY = re.compile(
    r"^(ts|at|until|valid_from|valid_until|shelved_until|shift_start|shift_end)$|_at$"
)
# the yes/no fields SQLite and the office's older columns keep as 0/1
YES_NO = frozenset({"active", "stale", "hazard_allowed", "acked", "revoked"})


def shaped(value: Any, tz: ZoneInfo) -> Any:
    """``value`` with every time under a time key as ISO 8601, and every 0/1 under a yes/no
    key as false/true; anything else as it is. A value already a string is left alone (a
    record a gate sent with a time it had written out)."""
    if isinstance(value, dict):
        return {k: _field(k, v, tz) for k, v in value.items()}
    if isinstance(value, list):
        return [shaped(v, tz) for v in value]
    return value


def _field(key: str, value: Any, tz: ZoneInfo) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        if TIME_KEY.search(key):
            return iso(value, tz)
        if key in YES_NO and value in (0, 1):
            return bool(value)
        return value
    return shaped(value, tz)
