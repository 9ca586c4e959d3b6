"""Authentication and roles: a dependency every /api/ route declares.

A caller is a device or script with a bearer token, or a person logged in at the console
with a session cookie; a cookie's request that changes anything must carry the session's
CSRF token in ``X-CSRF-Token``. 401 without a valid token or session, 403 for a role the
route does not allow (an admin may do everything) or a missing CSRF token, 429 for a
client that keeps presenting bad tokens.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from edge import alarms, audit, lookups, users
from edge.errors import DomainError
from edge.passes import FIRST_YEAR, LAST_YEAR
from edge.sessions import COOKIE

if TYPE_CHECKING:
    from edge.service import Service

FAILURE_WINDOW_S = 60.0
MAX_FAILURES = 20  # wrong ones per key in the window, then 429 for wrong ones until it passes
ADDRESS_FACTOR = 10  # wrong tokens of any kind from one address: this many times as many
TOKEN_PREFIX = 8  # a wrong token's key holds this much of it: enough to tell two apart
MAX_KEYS = 10_000  # addresses (and address, name pairs) remembered at most

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True)
class Caller:
    name: str
    role: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


class Throttle:
    """Wrong credentials per key in a sliding window: a token's key is the client's
    address and the token's first characters (``wrong_token``), a password's the address
    and the name tried (so one person's typos, one script with a stale token, or one
    attacker, never lock out everyone at the same guard-room PC). It only ever refuses
    wrong credentials: a valid token or password is checked first and always accepted.
    Its memory is bounded: past ``max_keys`` the key that failed longest ago is forgotten."""

    def __init__(self, limit: int = MAX_FAILURES, max_keys: int = MAX_KEYS) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self.failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()  # the API's worker threads

    def blocked(self, key: str, now: float, limit: int | None = None) -> bool:
        with self._lock:
            q = self.failures.get(key)
            if q is None:
                return False
            while q and q[0] < now - FAILURE_WINDOW_S:
                q.popleft()
            if not q:
                del self.failures[key]
            return len(q) >= (limit or self.limit)

    def wrong(self, key: str, now: float, limit: int | None = None) -> bool:
        """A wrong credential for ``key``: True if it is past its limit (answer 429), else
        it is counted (answer 401)."""
        if self.blocked(key, now, limit):
            return True
        self.fail(key, now, limit)
        return False

    def wrong_token(self, client: str, token: str, now: float) -> bool:
        """A wrong bearer token from ``client``: limited per address and token prefix, and
        per address at ADDRESS_FACTOR times that (a spray of different tokens)."""
        one = self.wrong(f"{client} {token[:TOKEN_PREFIX]}", now)
        every = self.wrong(client, now, self.limit * ADDRESS_FACTOR)
        return one or every

    def fail(self, key: str, now: float, limit: int | None = None) -> None:
        with self._lock:
            q = self.failures.pop(key, None) or deque(maxlen=limit or self.limit)
            q.append(now)
            self.failures[key] = q  # the most recent failure last
            while len(self.failures) > self.max_keys:
                self.failures.popitem(last=False)


# Lists page by the id of their last row: `next` goes back as `cursor`.
CURSOR = Query(None, ge=1, le=2**62, description="the `next` of the last page")
UNMASK = Query(False, description="admin only; recorded in the audit log")


def page(found: list[dict[str, Any]], limit: int, key: str = "id") -> tuple[list[dict], str | None]:
    """The first ``limit`` rows of ``limit + 1`` read, and the cursor of the next page."""
    return found[:limit], str(found[limit - 1][key]) if len(found) > limit else None


def unmasked(svc: Service, who: Caller, unmask: bool, what: str, count: int) -> bool:
    """Whether to show personal data whole: an admin's choice, written to the audit log."""
    if not unmask:
        return False
    if not who.admin:
        raise HTTPException(403, "only an admin may see personal data unmasked")
    now = svc.clock.now()
    svc.write(lambda c: audit.record(c, who.name, f"unmask:{what}", f"{count} rows", now))
    return True


def service(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def roles(*allowed: str) -> Any:
    """A dependency: the caller, if their role is allowed (admin always is)."""

    def caller(
        request: Request, cred: HTTPAuthorizationCredentials | None = Depends(_bearer)
    ) -> Caller:
        svc = service(request)
        client = request.client.host if request.client else "?"
        now = time.monotonic()
        found = None
        if cred is not None and cred.scheme.lower() == "bearer":
            found = svc.read(lambda c: users.authenticate(c, cred.credentials))
        elif cred is None and (session := svc.sessions.get(request.cookies.get(COOKIE))):
            # the person's current role, and revoked means logged out, whatever the session
            found = svc.read(lambda c: users.active(c, session.name))
            changes = request.method not in SAFE_METHODS
            if (
                found is not None
                and changes
                and not session.csrf_ok(request.headers.get("x-csrf-token"))
            ):
                raise HTTPException(403, "this change needs the page's CSRF token")
        if found is None:
            # a wrong token (a missing one is no guess)
            if cred is not None and svc.throttle.wrong_token(client, cred.credentials, now):
                svc.count("refused:throttled")
                raise HTTPException(429, "too many bad tokens from this address; wait a minute")
            raise HTTPException(
                401,
                "a valid bearer token (or a console login) is required",
                {"WWW-Authenticate": "Bearer"},
            )
        who = Caller(*found)
        if who.role not in allowed and not who.admin:
            raise HTTPException(403, f"role {who.role!r} may not do this ({', '.join(allowed)})")
        return who

    caller.roles = tuple(dict.fromkeys((*allowed, "admin")))  # type: ignore[attr-defined]
    return Depends(caller)


def lookup_allowed(svc: Service, who: Caller) -> None:
    """A lookup by hand (edge.lookups): 429 past the person's limit a minute."""
    if not svc.lookups.allow(who.name, svc.clock.monotonic()):
        svc.count("refused:lookups")
        raise HTTPException(429, "too many lookups by hand; wait a minute")


def lookup_done(svc: Service, who: Caller, what: str, subject: str, found: bool) -> None:
    """Audit a lookup by hand, and raise ``lookup_enumeration`` when it ends a run of misses."""
    now = svc.clock.now()
    run = not found and svc.lookups.missed(who.name, svc.clock.monotonic())

    def job(c: Any) -> list[int]:
        audit.record(c, who.name, f"lookup:{what}", subject, now)
        if not run:
            return []
        return [alarms.raise_alarm(
            c, svc.cfg.alarms, "lookup_enumeration", f"user:{who.name}", now,
            notes=f"{who.name}: {lookups.MISSES} lookups by hand found nothing within "
                  f"{lookups.MISS_WINDOW_S / 60:.0f} minutes (last: {what} {subject})",
        )]  # fmt: skip

    svc.control.change(job)


def local_day(day: str | None, tz: ZoneInfo, now: float) -> datetime:
    """The start of ``day`` (YYYY-MM-DD; default today) in the site's zone; DomainError
    naming ``day`` for a date that is none, or outside the years a record may carry."""
    if not day:
        return datetime.fromtimestamp(now, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=tz)
    except ValueError:
        raise DomainError(f"day: {day!r} is not a date") from None
    if not FIRST_YEAR <= start.year <= LAST_YEAR:
        raise DomainError(f"day: {day!r} is outside the years {FIRST_YEAR} to {LAST_YEAR}")
    return start


async def keep_picture(request: Request, who: Caller, what: str) -> str:
    """The request's body kept as a picture (a photo, a signature, a fault's picture):
    checked, turned upright and stripped in the photo store, off the event loop (decoding
    takes a few ms), and the upload audited as ``<what>:upload`` once committed. The body
    is at most the route's ``max_body_size``. Its SHA-256, which a record then names."""
    svc = service(request)
    data = await request.body()

    def keep() -> str:
        sha = svc.photos.put(data)
        svc.write(lambda c: audit.record(c, who.name, f"{what}:upload", sha, svc.clock.now()))
        return sha

    return await run_in_threadpool(keep)
