"""The office clerk's desk: issue a pass, see the passes issued last, print a temporary
pass with its QR code; the estate's units, renovation permits and visitors announced in
advance (``/desk/estate``), an announced visitor's code to print. The login is the
console's (edge.console); the pages call the office's /api/v1 routes with the session's
CSRF token."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import datetime, time
from typing import Any

import segno
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import Engine

from edge.api.deps import Throttle
from edge.cards import mask_key
from edge.clock import Clock
from edge.config import OfficeCfg
from edge.console import json_for_script, lang_of, page, require, session
from edge.console.text import words
from edge.sessions import Sessions
from edge.views import iso
from edge.visitors import CATEGORIES
from sync import expected, office, permits, units
from sync.qr import Signer, pass_payload, slip_payload

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


def _shown(p: dict[str, Any], cfg: OfficeCfg, now: float) -> dict[str, Any]:
    ended = p["status"] == "active" and p["valid_until"] is not None and p["valid_until"] <= now
    return {
        "id": p["id"], "kind": p["kind"], "name": p["name"], "unit": p["unit"],
        "card": mask_key(p["card_key"]), "status": p["status"],
        "shown_status": "expired" if ended else p["status"], "photo": p["photo_sha256"],
        "valid_from": _when(p["valid_from"], cfg, ""),
        "valid_until": _when(p["valid_until"], cfg, ""),  # "": open-ended, said in words
        "issued_by": p["issued_by"],
    }  # fmt: skip


def _slip_shown(slip: dict[str, Any], cfg: OfficeCfg, now: float) -> dict[str, Any]:
    ended = slip["status"] == "issued" and slip["valid_until"] <= now
    return slip | {
        "shown_status": "expired" if ended else slip["status"],
        "from": _when(slip["valid_from"], cfg), "until": _when(slip["valid_until"], cfg),
        "closed": _when(slip["closed_at"], cfg, ""),
    }  # fmt: skip


def _when(ts: float | None, cfg: OfficeCfg, none: str = "—") -> str:
    """To the minute, in the office's time zone."""
    return (iso(ts, cfg.tz) or none)[:16].replace("T", " ")


@router.get("/desk")
def desk(request: Request, q: str = Query("", max_length=100)) -> Response:
    s = require(request, *ROLES)
    if isinstance(s, Response):
        return s
    cfg, eng, _signer = _state(request)
    now = request.app.state.clock.now()
    with eng.connect() as c:
        found = [_shown(p, cfg, now) for p in office.recent_passes(c, 50 if q else 20, q)]
        slips = [_slip_shown(s, cfg, now) for s in office.recent_slips(c, 50 if q else 20, q)]
        gates = [g | {"last_seen": _when(g["last_seen_at"], cfg)} for g in office.sync_state(c)]
        sites = office.list_sites(c)  # a choice on the forms when there are several
        # the anomalies are the admin's to read (a clerk sees the passes and slips)
        anomalies = ([a | {"when": _when(a["at"], cfg)} for a in office.recent_anomalies(c)]
                     if s.role == "admin" else [])  # fmt: skip
        audit = ([a | {"when": _when(a["at"], cfg)} for a in office.recent_audit(c)]
                 if s.role == "admin" else [])  # fmt: skip
    config = {"csrf": s.csrf, "t": words(lang_of(request))}
    return page(
        request, "desk.html", user=s, passes=found, slips=slips, q=q, gates=gates,
        anomalies=anomalies, sites=sites, audit=audit,
        month=datetime.now(cfg.tz).strftime("%Y-%m"), config=json_for_script(config),
    )  # fmt: skip


@router.get("/desk/report")
def report(request: Request, month: str = Query(pattern=r"^\d{4}-\d{2}$")) -> Response:
    """The month at every gate, as tables; ``/desk/report.csv`` is the same for Excel."""
    s = require(request, *ROLES)
    if isinstance(s, Response):
        return s
    cfg, eng, _signer = _state(request)
    with eng.connect() as c:
        found = office.monthly_report(c, month, cfg.tz, request.app.state.clock.now())
    t = words(lang_of(request))
    return page(request, "report.html", user=s, month=month, sections=_sections(found, t))


@router.get("/desk/report.csv")
def report_csv(request: Request, month: str = Query(pattern=r"^\d{4}-\d{2}$")) -> Response:
    """UTF-8 with a byte-order mark: Excel on a Chinese Windows opens it as UTF-8 (without
    the mark it guesses GBK and the Chinese comes out garbled)."""
    s = session(request, *ROLES)
    if s is None:
        return Response("log in first", 401, media_type="text/plain")
    cfg, eng, _signer = _state(request)
    with eng.connect() as c:
        found = office.monthly_report(c, month, cfg.tz, request.app.state.clock.now())
    t = words(lang_of(request))
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow([t["report.section"], t["report.item"], t["report.count"]])
    for section, rows in _sections(found, t):
        for key, n in rows:
            w.writerow([t.get(f"report.{section}", section), key, n])
    return Response(
        "\ufeff" + out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="gatehouse-{month}.csv"'},
    )


REPORT_SECTIONS = ("office_slips", "gate_slips", "confiscations", "alarms_by_type",
                   "alarms_by_shift", "decisions", "key_loans", "late_requests",
                   "late_minutes", "patrol_by_route", "patrol_by_guard", "renovation",
                   "announced_visitors")  # fmt: skip


def _sections(report: dict[str, Any], t: dict[str, Any]) -> list[tuple[str, list[tuple[str, int]]]]:
    """The report's count tables, in order, each as (what, count) rows in the reader's
    words: a gate's id stays as it is, the words after it are translated."""

    def label(section: str, key: str) -> str:
        if section in ("late_requests", "late_minutes"):  # a help request's type and stage
            kind, _, stage = key.partition(":")
            return t.get("alarm." + kind, kind) + " · " + t.get("deadline." + stage, stage)
        if section in ("patrol_by_route", "patrol_by_guard"):  # ids and names, then a status
            who, _, status = key.rpartition(":")
            return who + ":" + t.get("patrol." + status, status)
        node, _, what = key.rpartition(":")
        prefix = {"office_slips": "slip.status.", "gate_slips": "report.", "decisions": "",
                  "key_loans": "report.keys.", "renovation": "report.renovation.",
                  "announced_visitors": "report.visits.",
                  "alarms_by_type": "alarm.", "alarms_by_shift": "shift."}.get(section)  # fmt: skip
        if prefix is None:  # confiscations: node and gate, both ids
            return key
        return (f"{node}:" if node else "") + t.get(prefix + what, what)

    return [(name, sorted((label(name, k), n) for k, n in report[name].items()))
            for name in REPORT_SECTIONS]  # fmt: skip


@router.get("/desk/passes/{pass_id}/print")
def print_pass(request: Request, pass_id: str) -> Response:
    """A temporary pass to print and hand over: its holder, its validity and the QR code
    the gates verify offline (signed anew here, from the pass as it stands)."""
    s = require(request, *ROLES)
    if isinstance(s, Response):
        return s
    cfg, eng, signer = _state(request)
    with eng.connect() as c:
        record = office.get_pass(c, pass_id)
    p = _shown(record, cfg, request.app.state.clock.now())
    qr_svg = None
    if p["kind"] == "temporary" and p["shown_status"] == "active":
        code = segno.make(signer.sign(pass_payload(record)), error="m")
        qr_svg = code.svg_inline(scale=4, border=4)  # the quiet zone the standard asks
    return page(request, "pass_print.html", user=s, p=p, qr_svg=qr_svg)


@router.get("/desk/slips/{number}/print")
def print_slip(request: Request, number: str) -> Response:
    """A goods release slip for the mover's copy: the goods, the bearer, the authorisation
    and the QR code the gates verify offline."""
    s = require(request, *ROLES)
    if isinstance(s, Response):
        return s
    cfg, eng, signer = _state(request)
    with eng.connect() as c:
        slip = office.get_slip(c, number)
    shown = _slip_shown(slip, cfg, request.app.state.clock.now())
    qr_svg = None
    if shown["shown_status"] == "issued":
        code = segno.make(signer.sign(slip_payload(slip)), error="m")
        qr_svg = code.svg_inline(scale=3, border=4)
    return page(request, "slip_print.html", user=s, slip=shown, qr_svg=qr_svg)


def _permit_shown(p: dict[str, Any], cfg: OfficeCfg, now: float) -> dict[str, Any]:
    """A permit as the desk lists it, with the changes its status allows (the API lets a
    clerk or an admin make each of them: sync.office_api.move_permit)."""
    ended = p["status"] == "active" and p["valid_until"] is not None and p["valid_until"] <= now
    return p | {
        "shown_status": "ended" if ended else p["status"],  # the gates deny it: permit_closed
        "from": _when(p["valid_from"], cfg), "until": _when(p["valid_until"], cfg, ""),
        "moves": [m for m, (sources, _to) in permits.MOVES.items() if p["status"] in sources],
    }  # fmt: skip


def _visit_shown(v: dict[str, Any], cfg: OfficeCfg, now: float) -> dict[str, Any]:
    """An announced visitor; ``open``: the code still admits (cancellable, printable)."""
    if v["status"] != "active":
        shown = v["status"]
    elif v["valid_until"] <= now:
        shown = "ended"
    else:
        shown = "upcoming" if v["valid_from"] > now else "active"
    return v | {"shown_status": shown, "open": shown in ("active", "upcoming"),
                "from": _when(v["valid_from"], cfg),
                "until": _when(v["valid_until"], cfg)}  # fmt: skip


@router.get("/desk/estate")
def estate(request: Request) -> Response:
    """The estate's units, its renovation permits, and today's and the coming visitors
    announced in advance; the forms call /api/v1/units, /permits and /expected-visitors."""
    s = require(request, *ROLES)
    if isinstance(s, Response):
        return s
    cfg, eng, _signer = _state(request)
    now = request.app.state.clock.now()
    # today's visits (ended ones too: a host may call about one) and those to come
    midnight = datetime.combine(datetime.fromtimestamp(now, cfg.tz).date(), time(), cfg.tz)
    with eng.connect() as c:
        sites = office.list_sites(c)
        unit_list = units.listing(c, None)
        found = [_permit_shown(p, cfg, now) for p in permits.listing(c, None, None)]
        visits = [_visit_shown(v, cfg, now)
                  for v in expected.listing(c, None, expected.Announcer(s.name),
                                            midnight.timestamp())]  # fmt: skip
    found.sort(key=lambda p: (p["status"] == "closed", p["permit_no"]))  # the open ones first
    config = {"csrf": s.csrf, "t": words(lang_of(request))}
    return page(
        request, "estate.html", user=s, sites=sites, units=unit_list, permits=found,
        visits=visits, categories=CATEGORIES, config=json_for_script(config),
    )  # fmt: skip


@router.get("/desk/visitors/{visitor_id}/print")
def print_visitor(request: Request, visitor_id: str) -> Response:
    """An announced visitor's code for the host to pass on: the 8 digits to show or type at
    the gate, and the same digits as a QR code a gate's scanner types into the guard's code
    field. Not signed: the code itself is the key (the gates rate-limit wrong ones)."""
    s = require(request, *ROLES)
    if isinstance(s, Response):
        return s
    cfg, eng, _signer = _state(request)
    with eng.connect() as c:
        visit = _visit_shown(expected.get(c, visitor_id), cfg, request.app.state.clock.now())
        sites = {x["site_id"]: x["name"] for x in office.list_sites(c)}
    qr_svg = None
    if visit["open"]:
        # make_qr, not make: 8 digits would fit a Micro QR, which few scanners read
        qr_svg = segno.make_qr(visit["code"], error="m").svg_inline(scale=8, border=4)
    site = sites.get(visit["site"], visit["site"]) if len(sites) > 1 else None
    return page(request, "visitor_print.html", user=s, v=visit, qr_svg=qr_svg, site=site)
