"""The console: the pages people use, served by the services themselves.

Pages are rendered on the server (Jinja2) with a little plain JavaScript of our own; every
asset is in the package, nothing is fetched from elsewhere. A person logs in with a name
and password and gets a session cookie; the pages call the same /api/v1 routes as scripts
do, with the session's CSRF token.

This module is what the edge and the office share: the login, the language switch, the
templates and the assets. Each app puts an ``Accounts`` on ``app.state.accounts`` (its own
users and sessions); the edge's pages are in ``edge.console.pages``, the office's in
``sync.desk``.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any, Protocol

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from edge.console.text import LANGS, words
from edge.sessions import COOKIE, Session, Sessions

HERE = Path(__file__).parent
LOGIN_CSRF = "gh_login"  # before a session exists, the login form's token (double submit)
LANG = "gh_lang"

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


class Throttle(Protocol):
    def blocked(self, client: str, now: float) -> bool: ...

    def fail(self, client: str, now: float) -> None: ...


class Accounts(Protocol):
    """An app's people: who may log in, and where each role's page is."""

    sessions: Sessions
    throttle: Throttle
    homes: dict[str, str]  # role → its page

    def check_password(self, name: str, password: str) -> tuple[str, str] | None: ...

    def active(self, name: str) -> tuple[str, str] | None: ...

    def count(self, what: str) -> None: ...


def accounts(request: Request) -> Accounts:
    return request.app.state.accounts  # type: ignore[no-any-return]


def lang_of(request: Request) -> str:
    lang = request.cookies.get(LANG, "zh")
    return lang if lang in LANGS else "zh"


def session(request: Request, *roles: str) -> Session | None:
    """The logged-in person (their current role), if they have one of ``roles``."""
    acc = accounts(request)
    s = acc.sessions.get(request.cookies.get(COOKIE))
    if s is None:
        return None
    found = acc.active(s.name)
    if found is None:  # revoked since: logged out
        acc.sessions.end(s.sid)
        return None
    s.role = found[1]
    return s if not roles or s.role in roles else None


def require(request: Request, *roles: str) -> Session | Response:
    """The person, if logged in with one of ``roles``; else where to send them: to log in,
    or, logged in with another role, to their own page."""
    s = session(request)
    if s is None:
        return RedirectResponse("/login", 303)
    return s if s.role in roles else RedirectResponse("/", 303)


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = lang_of(request)
    response = templates.TemplateResponse(
        request, name, {"t": words(lang), "lang": lang, **context}, status_code=status
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def json_for_script(data: Any) -> str:
    # JSON inside <script>: "</" escaped so no value can end the element
    return json.dumps(data, ensure_ascii=False).replace("</", "<\\/")


def _cookie(response: Response, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, httponly=True, samesite="strict", path="/",
        secure=False,  # the guard-room PC talks plain HTTP on the LAN; TLS is the proxy's
    )  # fmt: skip


@router.get("/")
def home(request: Request) -> Response:
    s = session(request)
    if s is None:
        return RedirectResponse("/login", 303)
    home = accounts(request).homes.get(s.role)
    return RedirectResponse(home or "/login?role=" + s.role, 303)


@router.get("/login")
def login_page(request: Request, error: str | None = None, role: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    t = words(lang_of(request))
    message = t.get(f"login.{error}") if error else None
    if role is not None and message is None:
        message = f"{role}: {t['login.no_page']}"
    response = page(request, "login.html", csrf=token, error=message)
    _cookie(response, LOGIN_CSRF, token, max_age=3600)
    return response


@router.post("/login")
def login(
    request: Request,
    username: str = Form(max_length=100),
    password: str = Form(max_length=200),
    csrf: str = Form(max_length=100),
) -> Response:
    acc = accounts(request)
    expected = request.cookies.get(LOGIN_CSRF)
    if not expected or not secrets.compare_digest(expected, csrf):
        return RedirectResponse("/login?error=expired", 303)
    client = request.client.host if request.client else "?"
    now = time.monotonic()
    # per address and name: one person's typos never lock out the others at the same PC
    key = f"{client} {username.strip()}"
    if acc.throttle.blocked(key, now):
        acc.count("refused:throttled")
        return RedirectResponse("/login?error=throttled", 303)
    found = acc.check_password(username.strip(), password)
    if found is None:
        acc.throttle.fail(key, now)
        acc.count("refused:login")
        return RedirectResponse("/login?error=failed", 303)
    started = acc.sessions.start(*found)
    response = RedirectResponse("/", 303)
    _cookie(response, COOKIE, started.sid)
    response.delete_cookie(LOGIN_CSRF, path="/")
    return response


@router.post("/logout")
def logout(request: Request, csrf: str = Form(max_length=100)) -> Response:
    acc = accounts(request)
    s = acc.sessions.get(request.cookies.get(COOKIE))
    if s is not None and s.csrf_ok(csrf):
        acc.sessions.end(s.sid)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang/{lang}")
def switch_lang(request: Request, lang: str) -> Response:
    back = request.headers.get("referer", "/")
    response = RedirectResponse(back if back.startswith(str(request.base_url)) else "/", 303)
    response.set_cookie(LANG, lang if lang in LANGS else "zh", samesite="strict", path="/")
    return response
