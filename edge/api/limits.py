"""Limits that hold before a route runs: how much of a body is read, and from whom.

FastAPI reads a request's body before it runs the route's dependencies, the token check
among them, so without these anyone on the LAN could make the process that opens the
barrier hold hundreds of megabytes. Every app has a small default body limit
(``MAX_BODY``; FastAPI's own ``max_body_size``: a ``Content-Length`` over it is refused
unread, a longer stream is cut off when it passes it); the few routes that take more say
so on their decorator. And a change to ``/api/`` or ``/sync/`` that carries no credentials
at all is refused before a byte of its body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import socket
from typing import Any

import h11
import uvicorn
from fastapi import FastAPI
from starlette.middleware import body_limit
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from edge.config import ConfigError
from edge.logs import quiet_floods
from edge.messages import refusal
from edge.sessions import COOKIE

MAX_BODY = 256 * 1024  # the largest JSON body a person or device sends is a few KB
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
GUARDED = ("/api/", "/sync/")
# where Starlette's body limiter keeps itself in the scope while it runs (no public name)
_RESPONDER_KEY = getattr(body_limit, "_BODY_LIMIT_RESPONDER_SCOPE_KEY", "")


class CredentialsFirst:
    """401 for a change to the API that carries neither a bearer token nor a session
    cookie, before its body is read (the route still checks what it carries)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] not in SAFE_METHODS
            and scope["path"].startswith(GUARDED)
            and not _credentials(scope)
        ):
            close = (b"connection", b"close")  # the unread body is not waited for
            await _send_json(send, 401, refusal("a valid bearer token is required"),
                             ((b"www-authenticate", b"Bearer"), close))  # fmt: skip
            return
        await self.app(scope, receive, send)


def _credentials(scope: Scope) -> bool:
    request = Request(scope)  # reads headers only: the body stays unread
    return bool(request.headers.get("authorization", "").strip() or request.cookies.get(COOKIE))


# -- connections ------------------------------------------------------------------------------

HEADER_TIMEOUT_S = 10.0  # a request's line and headers arrive within this, or it is closed
BODY_TIMEOUT_S = 60.0  # and its body within this (an 8 MiB photo over a slow office link)
MAX_CONNECTIONS = 2000  # past this a request gets 503 at once (a flood: closed within seconds)
OPEN_FILES = 16_384  # the soft limit raised to (systemd's unit says the same)


class DeadlineH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the deadline it lacks: a connection that opens and
    sends a request slowly or never (a half-open flood) is closed, instead of holding a
    file descriptor until the process has none left for the barrier's serial port."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._since = self.loop.time()
        self._timer: asyncio.TimerHandle | None = self.loop.call_later(
            HEADER_TIMEOUT_S, self._check
        )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._since = self.loop.time()  # the next request on this connection starts now
        self._rearm(HEADER_TIMEOUT_S)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    def _rearm(self, after: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(after, self._check)

    def _check(self) -> None:
        self._timer = None
        state = self.conn.their_state
        waited = self.loop.time() - self._since
        # (an idle keep-alive connection may go too: uvicorn would close it after 5 s)
        if state is h11.IDLE or (state is h11.SEND_BODY and waited >= BODY_TIMEOUT_S):
            FLOOD_LOG.warning("closed a connection from %s that sent no whole request in "
                              "%.0f s", self.client[0] if self.client else "?", waited)  # fmt: skip
            self.transport.close()
        elif state is h11.SEND_BODY:
            self._rearm(HEADER_TIMEOUT_S)


FLOOD_LOG = logging.getLogger("edge.api.flood")


def server_config(app: ASGIApp, **options: Any) -> uvicorn.Config:
    """How both services serve HTTP: bounded connections and deadlines, no trust in
    forwarded headers (a client on this machine could otherwise claim any address and
    dodge or aim the throttle), and repeated errors logged once a minute."""
    _raise_open_files()
    quiet_floods()
    return uvicorn.Config(
        app, http=DeadlineH11, proxy_headers=False, limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=5, log_level="warning", access_log=False, **options,
    )  # fmt: skip


def listen_socket(host: str, port: int, key: str) -> socket.socket:
    """The service's listening socket, bound before anything else starts; a port that is
    taken (another Gatehouse, or another program) is one line naming the config key, not a
    traceback or a uvicorn exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on connections accepted
    # from a socket that says it is TCP; without it a response's body waits for the client's
    # delayed ACK behind its headers, ~40 ms on every request of a kept-alive connection
    # (bench/list_routes.py)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise ConfigError(
            f"{key}: cannot listen on {host}:{port}: {e.strerror or e} (is another service on "
            f"that port? `ss -ltnp 'sport = :{port}'` names it)"
        ) from None
    return sock


def _raise_open_files() -> None:
    """1,024 open files (the usual default) is a flood's ceiling: raise the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# -- what the service says about itself --------------------------------------------------------

LOOPBACK = ("127.0.0.1", "::1")
DOCS = ("/docs", "/redoc", "/openapi.json", "/static-offline-docs")


def trusted_peer(scope: Scope) -> bool:
    """This machine (forwarded headers are not trusted, so the peer is who it says), or a
    person logged in to the console."""
    client = scope.get("client")
    if client and client[0] in LOOPBACK:
        return True
    sid = Request(scope).cookies.get(COOKIE)
    accounts = getattr(scope["app"].state, "accounts", None)
    return sid is not None and accounts is not None and accounts.sessions.get(sid) is not None


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:  # fmt: skip
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
        *extra,
    ]})  # fmt: skip
    await send({"type": "http.response.body", "body": data})


class JsonTooLarge:
    """A body whose length says it is over its route's limit is refused by Starlette's
    limiter outside every handler, as a plain-text ``413 Content Too Large``; every other
    refusal here is JSON with ``detail_zh``. This, outermost, answers that one in JSON too,
    naming the limit. (A body cut off as it streams past the limit reaches the app's
    HTTPException handler, which says the same with ``too_large``.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        swallowing = False

        async def send_json(message: Message) -> None:
            nonlocal swallowing
            if swallowing:
                return  # the plain text's body: the JSON one was sent instead
            if (
                message["type"] == "http.response.start"
                and message["status"] == 413
                and (b"content-type", b"text/plain; charset=utf-8") in message["headers"]
            ):
                swallowing = True
                await _send_json(send, 413, refusal(too_large(scope)), ((b"connection", b"close"),))
                return
            await send(message)

        await self.app(scope, receive, send_json)


def too_large(scope: Scope) -> str:
    """A body over the limit, said with the limit in force: the route's, kept by the
    limiter that refused it."""
    limit = getattr(scope.get(_RESPONDER_KEY), "max_body_size", None)
    if limit is None:
        return "the body is larger than this route accepts"
    return f"the body is more than the {limit} bytes accepted"


def answer_large_bodies_in_json(app: FastAPI) -> None:
    """Put ``JsonTooLarge`` outside the app's whole stack, the body limiter included
    (a middleware added the usual way sits inside it)."""
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: JsonTooLarge(build())  # type: ignore[method-assign]


class PrivateDocs:
    """The API's description (``/docs``, ``/openapi.json``) is a map of every route: for
    this machine and for people logged in, not for anyone on the LAN."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(DOCS) and not trusted_peer(scope):
            await _send_json(send, 401, refusal("log in to read the API's description"))
            return
        await self.app(scope, receive, send)
