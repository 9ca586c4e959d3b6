"""The office clerk's desk: issue a pass, see the passes issued last, print a temporary
pass with its QR code. The login is the console's (edge.console); the pages call the
office's /api/v1 routes with the session's CSRF token."""

from __future__ import annotations

from collections import Counter
from typing import Any

import segno
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import Engine

from edge.api.deps import Throttle
from edge.cards import mask_key
from edge.clock import Clock
from edge.config import OfficeCfg
from edge.console import json_for_script, lang_of, page, session
from edge.console.text import words
from edge.sessions import Sessions
from edge.views import iso
from sync import office
from sync.qr import Signer, pass_payload

ROLES = ("clerk", "admin")
router = APIRouter(include_in_schema=False)


class OfficeAccounts:
    """The office's users (PostgreSQL) and the desk's sessions, for the shared login."""

    def __init__(self, eng: Engine, clock: Clock) -> None:
        self.homes = {"clerk": "/desk", "admin": "/desk"}
        self.eng = eng
        self.sessions = Sessions(clock.monotonic)
        self.throttle = Throttle()
        self.counts: Counter[str] = Counter()

    def check_password(self, name: str, password: str) -> tuple[str, str] | None:
        with self.eng.connect() as c:
            return office.check_password(c, name, password)

    def active(self, name: str) -> tuple[str, str] | None:
        with self.eng.connect() as c:
            return office.active_user(c, name)

    def count(self, what: str) -> None:
        self.counts[what] += 1


def _state(request: Request) -> tuple[OfficeCfg, Engine, Signer]:
    st = request.app.state
    return st.cfg, st.eng, st.signer


def _shown(p: dict[str, Any], cfg: OfficeCfg) -> dict[str, Any]:
    return {
        "id": p["id"], "kind": p["kind"], "name": p["name"], "unit": p["unit"],
        "card": mask_key(p["card_key"]), "status": p["status"],
        "valid_from": (iso(p["valid_from"], cfg.tz) or "")[:16].replace("T", " "),
        "valid_until": (iso(p["valid_until"], cfg.tz) or "")[:16].replace("T", " "),
        "issued_by": p["issued_by"],
    }  # fmt: skip


@router.get("/desk")
def desk(request: Request) -> Response:
    s = session(request, *ROLES)
    if s is None:
        return RedirectResponse("/login", 303)
    cfg, eng, _signer = _state(request)
    with eng.connect() as c:
        recent = [_shown(p, cfg) for p in office.recent_passes(c)]
    config = {"csrf": s.csrf, "t": words(lang_of(request))}
    return page(request, "desk.html", user=s, passes=recent, config=json_for_script(config))


@router.get("/desk/passes/{pass_id}/print")
def print_pass(request: Request, pass_id: str) -> Response:
    """A temporary pass to print and hand over: its holder, its validity and the QR code
    the gates verify offline (signed anew here, from the pass as it stands)."""
    s = session(request, *ROLES)
    if s is None:
        return RedirectResponse("/login", 303)
    cfg, eng, signer = _state(request)
    with eng.connect() as c:
        p = office.get_pass(c, pass_id)
    qr_svg = None
    if p["kind"] == "temporary" and p["status"] == "active":
        code = segno.make(signer.sign(pass_payload(p)), error="m")
        qr_svg = code.svg_inline(scale=4, border=2)
    return page(request, "pass_print.html", user=s, p=_shown(p, cfg), qr_svg=qr_svg)
