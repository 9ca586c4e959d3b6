"""The edge's pages: the guard's screen and the control room's board, each with its live
stream of server-sent events fed by the same bus as MQTT (no broker needed)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from edge import alarms, dutylog, modes, screen, users, views
from edge.console import json_for_script, lang_of, page, require, session
from edge.console.text import words
from edge.shape import shaped

if TYPE_CHECKING:
    from edge.service import Service

KEEPALIVE_S = 15.0  # a comment line on a quiet stream, and the session checked again
HOMES = {"guard": "/guard", "control": "/control", "admin": "/guard"}

router = APIRouter(include_in_schema=False)


def _svc(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


class EdgeAccounts:
    """The node's users (SQLite) and the service's sessions, for the shared login."""

    homes = HOMES

    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.sessions = svc.sessions
        self.throttle = svc.throttle

    def check_password(self, name: str, password: str) -> tuple[str, str] | None:
        return self.svc.read(lambda c: users.check_password(c, name, password))

    def active(self, name: str) -> tuple[str, str] | None:
        return self.svc.read(lambda c: users.active(c, name))

    def count(self, what: str) -> None:
        self.svc.count(what)


@router.get("/guard")
def guard_page(request: Request) -> Response:
    s = require(request, "guard", "admin")
    if isinstance(s, Response):
        return s
    svc = _svc(request)
    config = {
        "csrf": s.csrf,
        "gates": list(svc.cfg.gates),
        "cameras": bool(svc.cfg.cameras),  # without one there is no picture to wait for
        "t": words(lang_of(request)),
    }
    return page(request, "guard.html", user=s, config=json_for_script(config))


@router.get("/control")
def control_page(request: Request) -> Response:
    s = require(request, "control", "admin")
    if isinstance(s, Response):
        return s
    svc = _svc(request)
    config = {
        "csrf": s.csrf,
        "t": words(lang_of(request)),
        "help_types": list(alarms.HELP_TYPES),
        "resolutions": list(alarms.RESOLUTIONS),
    }
    return page(request, "control.html", user=s, config=json_for_script(config),
                 gates=list(svc.cfg.gates))  # fmt: skip


@router.get("/duty")
def duty_page(request: Request) -> Response:
    """The day's duty log and the shift handover, for the guard and the control room."""
    s = require(request, "guard", "control", "admin")
    if isinstance(s, Response):
        return s
    svc = _svc(request)
    config = {
        "csrf": s.csrf,
        "user": s.name,
        "categories": [c for c in dutylog.CATEGORIES if c != "handover"],
        "post_items": svc.cfg.post_items,
        "t": words(lang_of(request)),
    }
    return page(request, "duty.html", user=s, config=json_for_script(config))


@router.get("/stats")
def stats_page(request: Request) -> Response:
    """The control room's workload (EEMUA 191 / ISA-18.2 measures) as charts."""
    s = require(request, "control", "admin")
    if isinstance(s, Response):
        return s
    config = {"t": words(lang_of(request))}
    return page(request, "stats.html", user=s, config=json_for_script(config))


@dataclass(frozen=True)
class View:
    """What one page's stream carries: who may open it, which records, the state first."""

    roles: tuple[str, ...]
    wants: Callable[[str], bool]
    state: Callable[[Service, sqlite3.Connection], dict[str, Any]]
    record: str  # the event name each record is sent as


def _guard_state(svc: Service, conn: sqlite3.Connection) -> dict[str, Any]:
    modes_now = modes.not_normal(conn, svc.clock.now())  # a gate held open or locked
    return {"recent": screen.recent(conn, svc.cfg, list(svc.cfg.gates)),
            "modes": shaped(modes_now, svc.cfg.tz)}  # fmt: skip


def _control_state(svc: Service, conn: sqlite3.Connection) -> dict[str, Any]:
    now = svc.clock.now()
    found = alarms.listing(conn, False, True, now, QUEUE_SHOWN + 1, None)
    shown = [views.alarm_view(a, now, svc.cfg.tz) for a in found[:QUEUE_SHOWN]]
    total = conn.execute("SELECT count(*) FROM alarms WHERE state != 'closed'").fetchone()[0]
    return {"alarms": shown, "total": total}


QUEUE_SHOWN = 500  # open alarms sent to the board; the board says how many there are
VIEWS = {
    "guard": View(("guard", "admin"), lambda t: t.startswith("gate/") and t.endswith(
        ("/decision", "/mode")), _guard_state, "decision"),
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
    s = await asyncio.to_thread(session, request, *shown.roles)
    if s is None:
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
                topic, payload = item
                if topic.endswith("/mode"):  # a gate's mode changed: the guard's red box
                    yield _sse("mode", payload)
                    continue
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


def _sse(kind: str, data: Any) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
