"""The console: the pages people use, served by the service itself.

Pages are rendered on the server (Jinja2) with a little plain JavaScript of our own; every
asset is in the package, nothing is fetched from elsewhere. A person logs in with a name
and password and gets a session cookie; the pages call the same /api/v1 routes as scripts
do, with the session's CSRF token, and hear what happens through one server-sent-events
stream fed by the same bus as MQTT (no broker needed).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from edge import alarms, screen, users, views
from edge.console.text import LANGS, words
from edge.sessions import COOKIE, Session

if TYPE_CHECKING:
    from edge.service import Service

HERE = Path(__file__).parent
LOGIN_CSRF = "gh_login"  # before a session exists, the login form's token (double submit)
LANG = "gh_lang"
KEEPALIVE_S = 15.0  # a comment line on a quiet stream, and the session checked again
HOME = {"guard": "/guard", "control": "/control", "admin": "/guard"}

templates = Jinja2Templates(directory=HERE / "templates")
static = StaticFiles(directory=HERE / "static")
router = APIRouter(include_in_schema=False)

# the pages run only what the service serves: no inline script, nothing from elsewhere
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _svc(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


def _lang(request: Request) -> str:
    lang = request.cookies.get(LANG, "zh")
    return lang if lang in LANGS else "zh"


def _session(request: Request) -> Session | None:
    svc = _svc(request)
    s = svc.sessions.get(request.cookies.get(COOKIE))
    if s is None:
        return None
    found = svc.read(lambda c: users.active(c, s.name))
    if found is None:  # revoked since: logged out
        svc.sessions.end(s.sid)
        return None
    s.role = found[1]
    return s


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = _lang(request)
    t = words(lang)
    response = templates.TemplateResponse(
        request, name, {"t": t, "lang": lang, **context}, status_code=status
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict", path="/",
        secure=False,  # the guard-room PC talks plain HTTP on the LAN; TLS is the proxy's
    )  # fmt: skip


@router.get("/")
def home(request: Request) -> Response:
    s = _session(request)
    if s is None:
        return RedirectResponse("/login", 303)
    return RedirectResponse(HOME.get(s.role, "/login?role=" + s.role), 303)


@router.get("/login")
def login_page(request: Request, error: str | None = None, role: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    t = words(_lang(request))
    message = t.get(f"login.{error}") if error else None
    if role is not None and message is None:
        message = f"{role}: 此角色的页面尚未提供 / no page for this role yet"
    response = _page(request, "login.html", csrf=token, error=message)
    _cookie(response, LOGIN_CSRF, token, max_age=3600)
    return response


@router.post("/login")
def login(
    request: Request,
    username: str = Form(max_length=100),
    password: str = Form(max_length=200),
    csrf: str = Form(max_length=100),
) -> Response:
    svc = _svc(request)
    expected = request.cookies.get(LOGIN_CSRF)
    if not expected or not secrets.compare_digest(expected, csrf):
        return RedirectResponse("/login?error=expired", 303)
    client = request.client.host if request.client else "?"
    now = time.monotonic()
    if svc.throttle.blocked(client, now):
        return RedirectResponse("/login?error=throttled", 303)
    found = svc.read(lambda c: users.check_password(c, username.strip(), password))
    if found is None:
        svc.throttle.fail(client, now)
        svc.count("refused:login")
        return RedirectResponse("/login?error=failed", 303)
    session = svc.sessions.start(*found)
    response = RedirectResponse("/", 303)
    _cookie(response, COOKIE, session.sid)
    response.delete_cookie(LOGIN_CSRF, path="/")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form(max_length=100)) -> Response:
    svc = _svc(request)
    s = svc.sessions.get(request.cookies.get(COOKIE))
    if s is not None and s.csrf_ok(csrf):
        svc.sessions.end(s.sid)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_lang(request: Request, lang: str) -> Response:
    back = request.headers.get("referer", "/")
    response = RedirectResponse(back if back.startswith(str(request.base_url)) else "/", 303)
    response.set_cookie(LANG, lang if lang in LANGS else "zh", samesite="strict", path="/")
    return response


@router.get("/guard")
def guard_page(request: Request) -> Response:
    s = _session(request)
    if s is None or s.role not in ("guard", "admin"):
        return RedirectResponse("/login", 303)
    svc = _svc(request)
    config = {"csrf": s.csrf, "gates": list(svc.cfg.gates), "t": words(_lang(request))}
    return _page(request, "guard.html", user=s, config=_json_for_script(config))


@router.get("/control")
def control_page(request: Request) -> Response:
    s = _session(request)
    if s is None or s.role not in ("control", "admin"):
        return RedirectResponse("/login", 303)
    svc = _svc(request)
    config = {
        "csrf": s.csrf,
        "t": words(_lang(request)),
        "help_types": list(alarms.HELP_TYPES),
        "resolutions": list(alarms.RESOLUTIONS),
    }
    return _page(request, "control.html", user=s, config=_json_for_script(config),
                 gates=list(svc.cfg.gates))  # fmt: skip


@dataclass(frozen=True)
class View:
    """What one page's stream carries: who may open it, which records, the state first."""

    roles: tuple[str, ...]
    wants: Callable[[str], bool]
    state: Callable[[Service, sqlite3.Connection], dict[str, Any]]
    record: str  # the event name each record is sent as


def _guard_state(svc: Service, conn: sqlite3.Connection) -> dict[str, Any]:
    return {"recent": screen.recent(conn, svc.cfg, list(svc.cfg.gates))}


def _control_state(svc: Service, conn: sqlite3.Connection) -> dict[str, Any]:
    now = svc.clock.now()
    found = alarms.listing(conn, False, True, now, QUEUE_SHOWN + 1, None)
    shown = [views.alarm_view(a, now, svc.cfg.tz) for a in found[:QUEUE_SHOWN]]
    total = conn.execute("SELECT count(*) FROM alarms WHERE state != 'closed'").fetchone()[0]
    return {"alarms": shown, "total": total}


QUEUE_SHOWN = 500  # open alarms sent to the board; the board says how many there are
VIEWS = {
    "guard": View(("guard", "admin"), lambda t: t.startswith("gate/") and t.endswith(
        "/decision"), _guard_state, "decision"),
    "control": View(("control", "admin"), lambda t: t.startswith("alarm/"), _control_state,
                    "alarm"),
}  # fmt: skip


@router.get("/console/stream")
async def stream(request: Request, view: str = "guard") -> Response:
    """Server-sent events for a page: first ``state`` (so a page that reconnects is whole
    again), then each record as it is committed: ``decision`` for the guard's screen (with
    the holder, as ``GET /api/v1/events/{event_id}``), ``alarm`` for the board (as
    ``GET /api/v1/alarms``' items)."""
    svc = _svc(request)
    shown = VIEWS.get(view)
    if shown is None:
        return Response(f"view: one of {', '.join(VIEWS)}", 422, media_type="text/plain")
    s = await asyncio.to_thread(_session, request)
    if s is None or s.role not in shown.roles:
        return Response("log in first", 401, media_type="text/plain")
    listener = svc.live.listen(asyncio.get_running_loop(), shown.wants)

    async def events() -> AsyncIterator[str]:
        try:
            yield "retry: 1000\n\n"
            state = await asyncio.to_thread(svc.read, partial(shown.state, svc))
            yield _sse("state", state)
            while True:
                try:
                    item = await asyncio.wait_for(listener.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    still = svc.sessions.get(s.sid) is not None and await asyncio.to_thread(
                        svc.read, partial(users.active, name=s.name)
                    )
                    if not still:  # logged out, idle elsewhere, or revoked
                        yield _sse("logout", {})
                        return
                    yield ": keepalive\n\n"
                    continue
                if item is None or listener.behind:
                    # stopping, or this page fell behind: it reconnects and starts whole
                    yield _sse("resync", {})
                    return
                _topic, payload = item
                if shown.record == "decision":
                    detail = partial(screen.decision_detail, cfg=svc.cfg,
                                     event_id=payload["event_id"])  # fmt: skip
                    payload = await asyncio.to_thread(svc.read, detail)
                yield _sse(shown.record, payload)
        finally:
            svc.live.leave(listener)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _json_for_script(data: Any) -> str:
    # JSON inside <script>: "</" escaped so no value can end the element
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
