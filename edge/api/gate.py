"""At the gate: check a card, see the events, open by hand, confiscate a pass."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from edge import db, event_reads, gate, modes, pass_ops, pass_reads, screen, slips, visitors
from edge.api.deps import (
    CURSOR,
    UNMASK,
    Caller,
    lookup_allowed,
    lookup_done,
    page,
    roles,
    service,
    unmasked,
)
from edge.api.schemas import CheckIn, ConfiscationIn, GateModeIn, IdLookupIn, OverrideIn
from edge.cards import parse_card
from edge.errors import DomainError, NotFound
from edge.logs import scrub
from edge.passes import parse_time
from edge.privacy import normalise_id_number
from edge.shape import shaped
from edge.views import event_view, iso, pass_view, visitor_view
from sync import qr

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1", tags=["gate"])


def _card(text: str) -> Any:
    try:
        return parse_card(text)
    except ValueError as e:
        raise DomainError(f"card: {e}") from None


def _gate(svc: Any, gate_id: str | None) -> str:
    return svc.cfg.known_gate(gate_id or svc.cfg.gates[0])  # type: ignore[no-any-return]


def _admit(svc: Any, gate_id: str, rule: Callable[[Any], None]) -> None:
    """A QR rule (sync.qr) on the gate's records: a refusal is logged and counted
    (``refused:qr:<rule>``) as the scanner's are, then answered."""
    try:
        svc.read(rule)
    except qr.QrRefused as e:
        log.warning("QR refused at gate %s: %s", scrub(gate_id), scrub(e))
        svc.count(f"refused:qr:{e.what}")
        raise


@router.post("/check")
def check(request: Request, body: CheckIn, who: Caller = roles("guard")) -> dict[str, Any]:
    """The decision the gate would make, not recorded, with what the guard needs to match
    the pass to the person: name, photo, masked ID, unit, kind, validity."""
    svc = service(request)
    gate_id = _gate(svc, body.gate)
    at = parse_time(body.at, svc.cfg.tz) if body.at else svc.clock.now()
    rules = gate.site_rules(svc.cfg)
    if body.qr is not None:
        try:
            payload = qr.verify(body.qr, list(svc.cfg.qr_keys))
        except DomainError as e:
            return {"decision": "deny", "reason": "invalid_qr", "detail": str(e), "gate": gate_id,
                    "at": iso(at, svc.cfg.tz), "card": None, "pass": None}  # fmt: skip
        # signed, but a code this gate may not act on: refused (422) with the rule's reason,
        # which the guard's screen shows in Chinese (detail_zh)
        _admit(svc, gate_id, lambda c: qr.admit(c, payload, svc.clock.now()))
        if "s" in payload:  # a slip: whether it may be released, and what is on it
            s = svc.read(lambda c: slips.signed(c, payload))
            reason = slips.check_slip(s["status"], s["valid_from"], s["valid_until"], at)
            shown = {k: s[k] for k in ("number", "unit", "owner", "bearer", "items")}
            return {
                "decision": "grant" if reason.value == "ok" else "deny",
                "reason": reason.value,
                "gate": gate_id,
                "at": iso(at, svc.cfg.tz),
                "slip": shown | {"signed": True},
            }
        decision, holder = svc.read(lambda c: gate.check_qr(c, payload, at, gate_id, rules))
        if decision.granted:  # and entries left today at this gate, as the scanner counts them
            pass_id, tz = payload["p"], svc.cfg.tz
            _admit(svc, gate_id, lambda c: qr.check_entries(
                payload, qr.entries_used(c, pass_id, gate_id, at, tz), gate_id))  # fmt: skip
        return {
            "decision": "grant" if decision.granted else "deny",
            "reason": decision.reason.value,
            "gate": gate_id,
            "at": iso(at, svc.cfg.tz),
            "card": f"****{payload['c'][-4:]}" if payload.get("c") else None,
            "pass": {"id": payload["p"], "kind": payload["k"], "name": holder,
                     "unit": payload.get("u"), "valid_from": iso(payload["f"], svc.cfg.tz),
                     "valid_until": iso(payload["t"], svc.cfg.tz), "signed": True},
        }  # fmt: skip
    lookup_allowed(svc, who)  # a number typed: limited, audited, and a run of misses alarms
    card = _card(body.card or "")
    decision, _holder = svc.read(lambda c: gate.check(c, card, at, gate_id, rules))
    lookup_done(svc, who, "card", f"{card.masked} {decision.reason.value}",
                found=decision.pass_ is not None)  # fmt: skip
    shown = None
    if decision.pass_ is not None:
        r = svc.read(lambda c: dict(pass_reads.get_pass(c, decision.pass_.id)))
        shown = pass_view(r, svc.cfg.tz, False, svc.cfg.rules.name_mask)
        shown["name"] = r["name"]  # the guard compares it with the person in front of them
    return {
        "decision": "grant" if decision.granted else "deny",
        "reason": decision.reason.value,
        "gate": gate_id,
        "at": iso(at, svc.cfg.tz),
        "card": card.masked,
        "pass": shown,
    }


@router.post("/id-lookup")
def id_lookup(request: Request, body: IdLookupIn, who: Caller = roles("guard")) -> dict[str, Any]:
    """Who has shown this ID number here: the passes issued on it (at this gate or at the
    office for this estate) and the visits registered with it, masked. Matched by the
    keyed hash under every key this gate has had; the number itself is never kept, and is
    asked in a body, never a URL, so no log holds it. Counted and audited as a lookup by
    hand (its last 4 only)."""
    svc = service(request)
    lookup_allowed(svc, who)
    try:
        number = normalise_id_number(body.id_number)
    except ValueError as e:
        raise DomainError(f"id_number: {e}") from None
    hashes = svc.hasher.candidates(number)
    passes = svc.read(lambda c: pass_reads.by_id_hash(c, hashes))
    visits = svc.read(lambda c: visitors.by_id_hash(c, hashes))
    lookup_done(svc, who, "id_number", f"****{number[-4:]}", bool(passes or visits))
    name_mask = svc.cfg.rules.name_mask
    return {
        "passes": [pass_view(p, svc.cfg.tz, False, name_mask) for p in passes],
        "visits": [visitor_view(v, svc.cfg.tz, False, name_mask) for v in visits],
    }


@router.get("/events")
def events(
    request: Request,
    who: Caller = roles("guard", "control"),
    gate_id: str | None = Query(None, alias="gate", max_length=64),
    decision: str | None = Query(None, pattern="^(grant|deny)$"),
    reason: str | None = Query(None, max_length=40),
    since: str | None = Query(None, max_length=40, description="ISO 8601"),
    until: str | None = Query(None, max_length=40, description="ISO 8601"),
    limit: int = Query(50, ge=1, le=500),
    cursor: int | None = CURSOR,
    unmask: bool = UNMASK,
) -> dict[str, Any]:
    """Access events, newest first (by time); ``next``: the last one's id."""
    svc = service(request)
    start = parse_time(since, svc.cfg.tz) if since else None
    end = parse_time(until, svc.cfg.tz) if until else None
    found = svc.read(lambda c: event_reads.list_events(
        c, limit + 1, gate_id, decision, reason, start, end, cursor))  # fmt: skip
    whole = unmasked(svc, who, unmask, "events", len(found))
    shown, after = page(found, limit)
    items = [event_view(r, svc.cfg.tz, whole, svc.cfg.rules.name_mask) for r in shown]
    return {"items": items, "next": after}


@router.get("/doors/{gate_id}")
def door(
    request: Request,
    gate_id: Annotated[str, Path(max_length=64)],
    who: Caller = roles("guard", "control"),
    minutes: int = Query(60, ge=1, le=1440),
) -> dict[str, Any]:
    """A supervised gate's door or barrier: its state now, and its contact changes and the
    gate's access events of the last ``minutes`` in one timeline, newest first, so a
    forced opening or a tailgater shows beside the grants around it."""
    svc = service(request)
    svc.cfg.known_gate(gate_id)
    state = svc.control.doors.get(gate_id)
    if state is None:
        raise NotFound(f"gate {gate_id} has no door contact in the config")
    now = svc.clock.now()
    since = now - minutes * 60

    def timeline(c: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        doors = db.rows(c, "SELECT ts, what FROM door_events WHERE gate = ? AND ts >= ? "
                           "ORDER BY ts DESC LIMIT 500", (gate_id, since))  # fmt: skip
        return doors, event_reads.list_events(c, 500, gate_id, since=since)

    doors, events = svc.read(timeline)
    tz, mask = svc.cfg.tz, svc.cfg.rules.name_mask
    items = [{"type": "door", "ts": iso(d["ts"], tz), "what": d["what"], "at": d["ts"]}
             for d in doors] + [
        {"type": "access", "ts": iso(e["ts"], tz), "at": e["ts"]}
        | event_view(e, tz, False, mask) for e in events]  # fmt: skip
    items.sort(key=lambda i: i.pop("at"), reverse=True)
    mono = svc.clock.monotonic()
    return {
        "gate": gate_id,
        "state": {None: "unknown", True: "open", False: "closed"}[state.is_open],
        "open_s": round(mono - state.opened_at, 1) if state.opened_at is not None else None,
        "held": bool(state.held(mono)), "stuck": state.stuck(),
        "items": items,
    }  # fmt: skip


@router.get("/gates/{gate_id}/mode")
def gate_mode(request: Request, gate_id: Annotated[str, Path(max_length=64)],
              who: Caller = roles("guard", "control")) -> dict[str, Any]:  # fmt: skip
    """The gate's mode now: normal, held_open or locked, until when, why and by whom."""
    svc = service(request)
    svc.cfg.known_gate(gate_id)
    now = svc.clock.now()
    return shaped(svc.read(lambda c: modes.current(c, gate_id, now)), svc.cfg.tz)


@router.put("/gates/{gate_id}/mode")
def set_gate_mode(request: Request, body: GateModeIn,
                  gate_id: Annotated[str, Path(max_length=64)],
                  who: Caller = roles("control")) -> dict[str, Any]:  # fmt: skip
    """Hold the gate open (a fire: the lane for the engines) or lock it (a robbery: only
    staff passes open it), with the reason, until a time or until set back to ``normal``.
    The control room's (control, admin): a guard alone never locks people in. In the duty
    log, the handover and retained on MQTT ``gate/<id>/mode``."""
    svc = service(request)
    svc.cfg.known_gate(gate_id)
    tz = svc.cfg.tz
    until = parse_time(body.until, tz) if body.until else None
    got = svc.write(lambda c: modes.set_mode(c, gate_id, body.mode, until, body.reason,
                                             who.name, svc.clock.now(), svc.cfg.notify,
                                             tz))  # fmt: skip
    topic, shown = modes.message(got, tz)
    svc.bus.publish(topic, shown, True)  # committed: now the relay and the screens hear it
    svc.control.mode_changed()  # a hold's open within a second, its door told
    return shown


@router.get("/events/{event_id}")
def event_detail(
    request: Request, event_id: str = Path(max_length=64), who: Caller = roles("guard")
) -> dict[str, Any]:
    """One decision as the guard's screen shows it: the event, the pass and its holder's
    name (to compare with the person at the gate), the camera's picture of the moment."""
    svc = service(request)
    return svc.read(lambda c: screen.decision_detail(c, svc.cfg, event_id))  # type: ignore[no-any-return]


@router.post("/overrides", status_code=201)
def override(request: Request, body: OverrideIn, who: Caller = roles("guard")) -> dict[str, Any]:
    """Open the barrier by hand for someone without a valid pass; the reason is recorded."""
    svc = service(request)
    card = _card(body.card) if body.card else None
    return svc.gate.override(_gate(svc, body.gate), body.reason, who.name, card, body.name)


@router.post("/confiscations", status_code=201)
def confiscate(
    request: Request, body: ConfiscationIn, who: Caller = roles("guard")
) -> dict[str, Any]:
    """予以没收: the pass stops working at once; the office hears of it through the outbox."""
    svc = service(request)
    card = _card(body.card) if body.card else None
    gate_id = _gate(svc, body.gate) if body.gate else None
    record = svc.write(
        lambda c: pass_ops.confiscate(
            c, svc.epoch, body.pass_id, card, body.reason, gate_id, who.name, svc.clock.now()
        )
    )
    return {**record, "at": iso(record["at"], svc.cfg.tz)}
