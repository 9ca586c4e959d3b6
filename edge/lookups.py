"""What a guard looks up by hand: a card number typed, a slip number typed.

A card at the reader is a person at the gate, and the guard's screen shows the holder
whole. A number typed is not: typed in a run, it walks the card space (a masked card hides
16 bits: 65,536 tries) or the slip numbers, and each hit answers a resident's name. So a
manual lookup is allowed ``LIMIT`` times a minute per person (65,536 tries then take 36
hours, not 19 seconds), every one is written to the audit log with its masked subject, and
``MISSES`` misses within ``MISS_WINDOW_S`` raise a ``lookup_enumeration`` alarm for the
control room, once per window.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

LIMIT = 30  # manual lookups a person may make a minute: a busy gate needs a few
WINDOW_S = 60.0
MISSES = 10  # lookups that found nothing, within MISS_WINDOW_S: someone is walking numbers
MISS_WINDOW_S = 300.0
MAX_PEOPLE = 1_000  # users remembered at most (bounded like the token throttle)


class Lookups:
    def __init__(self, limit: int = LIMIT, misses: int = MISSES) -> None:
        self.limit = limit
        self.misses = misses
        self._made: OrderedDict[str, deque[float]] = OrderedDict()
        self._missed: OrderedDict[str, deque[float]] = OrderedDict()
        self._alarmed: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, who: str, now: float) -> bool:
        """Whether ``who`` may look up once more now (counted if so)."""
        with self._lock:
            made = _recent(self._made, who, now - WINDOW_S, self.limit)
            if len(made) >= self.limit:
                return False
            made.append(now)
            return True

    def missed(self, who: str, now: float) -> bool:
        """A lookup that found nothing; True when it makes ``who``'s run an alarm (once a
        window: the alarm then counts the rest)."""
        with self._lock:
            missed = _recent(self._missed, who, now - MISS_WINDOW_S, self.misses)
            missed.append(now)
            if (
                len(missed) < self.misses
                or now - self._alarmed.get(who, -MISS_WINDOW_S) < MISS_WINDOW_S
            ):
                return False
            self._alarmed[who] = now
            return True


def _recent(
    table: OrderedDict[str, deque[float]], who: str, since: float, keep: int
) -> deque[float]:
    q = table.pop(who, None) or deque(maxlen=keep)
    while q and q[0] < since:
        q.popleft()
    table[who] = q
    while len(table) > MAX_PEOPLE:
        table.popitem(last=False)
    return q
