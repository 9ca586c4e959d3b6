"""Authentication and roles: a dependency every /api/ route declares.

A caller is a device or script with a bearer token, or a person logged in at the console
with a session cookie; a cookie's request that changes anything must carry the session's
CSRF token in ``X-CSRF-Token``. 401 without a valid token or session, 403 for a role the
route does not allow (an admin may do everything) or a missing CSRF token, 429 for a
client that keeps presenting bad tokens.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from edge import audit, users
from edge.sessions import COOKIE

if TYPE_CHECKING:
    from edge.service import Service

FAILURE_WINDOW_S = 60.0
MAX_FAILURES = 20  # per client address in the window, then 429 until it passes

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
    """Counts wrong tokens per client address; a missing token is no guess and not counted."""

    def __init__(self, limit: int = MAX_FAILURES) -> None:
        self.limit = limit
        self.failures: dict[str, deque[float]] = defaultdict(deque)

    def blocked(self, client: str, now: float) -> bool:
        q = self.failures[client]
        while q and q[0] < now - FAILURE_WINDOW_S:
            q.popleft()
        return len(q) >= self.limit

    def fail(self, client: str, now: float) -> None:
        self.failures[client].append(now)


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
        if svc.throttle.blocked(client, now):
            raise HTTPException(429, "too many bad tokens from this address; wait a minute")
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
            if cred is not None:
                svc.throttle.fail(client, now)
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


async def body_upto(request: Request, limit: int) -> bytes:
    """The request's body, refused with 413 once it passes ``limit`` bytes: an upload is
    never held whole before it is known to be small enough (routes read it only after
    their caller was authenticated)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is {declared} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"the body is more than the {limit} bytes accepted")
        chunks.append(chunk)
    return b"".join(chunks)
