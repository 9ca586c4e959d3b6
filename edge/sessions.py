"""Console sessions: a person logged in at a browser.

Held in memory, not on disk: a session is worth nothing after the service restarts (the
guard logs in again), and keeping them here means a page's every request costs no write.
The session id travels in an HttpOnly, SameSite=Strict cookie; each session has its own
CSRF token, which the pages send back in a header (or a form field) on every change.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "gh_session"
IDLE_S = 30 * 60.0  # a console left alone this long asks for the password again
MAX_SESSIONS = 1000  # a flood of logins cannot grow memory without bound


@dataclass
class Session:
    sid: str
    name: str
    role: str
    csrf: str
    seen: float = field(default=0.0)

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)


class Sessions:
    def __init__(self, monotonic: Callable[[], float], idle_s: float = IDLE_S) -> None:
        self.monotonic = monotonic
        self.idle_s = idle_s
        self._by_sid: dict[str, Session] = {}
        self._lock = threading.Lock()  # the API's worker threads

    def start(self, name: str, role: str) -> Session:
        now = self.monotonic()
        s = Session(secrets.token_urlsafe(32), name, role, secrets.token_urlsafe(32), now)
        with self._lock:
            self._expire(now)
            if len(self._by_sid) >= MAX_SESSIONS:  # the longest idle goes first
                oldest = min(self._by_sid.values(), key=lambda x: x.seen)
                del self._by_sid[oldest.sid]
            self._by_sid[s.sid] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        """The live session for this cookie, its idle clock restarted; None if there is
        none or it has been idle too long."""
        if not sid:
            return None
        now = self.monotonic()
        with self._lock:
            s = self._by_sid.get(sid)
            if s is None:
                return None
            if now - s.seen > self.idle_s:
                del self._by_sid[sid]
                return None
            s.seen = now
            return s

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._by_sid.pop(sid or "", None)

    def _expire(self, now: float) -> None:
        for sid in [k for k, s in self._by_sid.items() if now - s.seen > self.idle_s]:
            del self._by_sid[sid]
