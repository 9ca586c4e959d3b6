"""How records look in API answers: masked unless an admin asked (and was audited)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from edge.cards import mask_key
from edge.privacy import mask_name
from edge.snapshots import joined


def iso(t: float | None, tz: ZoneInfo) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, tz).isoformat(timespec="seconds")


def pass_view(r: dict[str, Any], tz: ZoneInfo, unmask: bool, name_mask: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "kind": r["kind"],
        "card": (r["card_hex"] or f"{r['card_key']:08X}") if unmask else mask_key(r["card_key"]),
        "name": r["name"] if unmask else mask_name(r["name"], name_mask),
        "unit": r["unit"],
        "id_last4": r["id_last4"],
        "valid_from": iso(r["valid_from"], tz),
        "valid_until": iso(r["valid_until"], tz),
        "status": r["status"],
        "status_reason": r["status_reason"],
        "gates": r["gates"].split(",") if r["gates"] else None,
        "daily_window": r["daily_window"],
        "photo_url": f"/api/v1/passes/{r['id']}/photo" if r["photo_path"] else None,
    }


def event_view(r: dict[str, Any], tz: ZoneInfo, unmask: bool, name_mask: str) -> dict[str, Any]:
    holder = r["holder"]
    card = None
    if r["card_key"] is not None:
        card = (r["card_hex"] or f"{r['card_key']:08X}") if unmask else mask_key(r["card_key"])
    return {
        "id": r["id"],
        "event_id": r["event_id"],
        "ts": iso(r["ts"], tz),
        "gate": r["gate"],
        "reader": r["reader"],
        "direction": r["direction"],
        "decision": r["decision"],
        "reason": r["reason"],
        "pass_id": r["pass_id"],
        "pass_kind": r["pass_kind"],
        "card": card,
        "holder": holder if unmask or not holder else mask_name(holder, name_mask),
        "source": r["source"],
        "stale": bool(r["stale"]),
        "by": r["by"],
        "notes": r["notes"],
        "snapshot": joined(r),
    }


def visitor_view(r: dict[str, Any], tz: ZoneInfo, unmask: bool, name_mask: str) -> dict[str, Any]:
    inside = r["entered_at"] is not None and r["exited_at"] is None
    return {
        "id": r["id"],
        "name": r["name"] if unmask else mask_name(r["name"], name_mask),
        "id_last4": r["id_last4"],
        "host_unit": r["host_unit"],
        "purpose": r["purpose"],
        "plate": r["plate"],
        "card": mask_key(r["card_key"]) if r["card_key"] is not None else None,
        "pass_id": r["pass_id"],
        "gate": r["gate"],
        "registered_at": iso(r["registered_at"], tz),
        "registered_by": r["registered_by"],
        "confirmed_by": r["confirmed_by"],
        "confirmed_how": r["confirmed_how"],
        "entered_at": iso(r["entered_at"], tz),
        "exited_at": iso(r["exited_at"], tz),
        "exited_by": r["exited_by"],
        "state": "inside" if inside else ("left" if r["exited_at"] else "waiting"),
    }


def slip_view(s: dict[str, Any], tz: ZoneInfo, status: str) -> dict[str, Any]:
    """A slip in full: the guard checks the goods and the bearer against it."""
    return {
        "id": s["id"],
        "number": s["number"],
        "status": status,
        "unit": s["unit"],
        "owner": s["owner"],
        "bearer": s["bearer"],
        "authorisation": s["authorisation"],
        "authorisation_detail": s["authorisation_detail"],
        "items": s["items"],
        "hazard_allowed": s["hazard_allowed"],
        "valid_from": iso(s["valid_from"], tz),
        "valid_until": iso(s["valid_until"], tz),
        "approver": s["approver"],
        "issued_by": s["issued_by"],
        "issued_at": iso(s["issued_at"], tz),
        "closed_by": s["closed_by"],
        "closed_at": iso(s["closed_at"], tz),
        "gate": s["gate"],
        "notes": s["notes"],
        "snapshot": joined(s),
    }


def handover_view(h: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": h["id"],
        "shift": h["shift"],
        "shift_start": iso(h["shift_start"], tz),
        "created_at": iso(h["created_at"], tz),
        "created_by": h["created_by"],
        "report": h["report"],
        "report_sha256": h["report_sha256"],
        "override_by": h["override_by"],
        "override_reason": h["override_reason"],
        "outgoing_by": h["outgoing_by"],
        "outgoing_at": iso(h["outgoing_at"], tz),
        "incoming_by": h["incoming_by"],
        "incoming_at": iso(h["incoming_at"], tz),
        "signed": h["outgoing_by"] is not None and h["incoming_by"] is not None,
    }
