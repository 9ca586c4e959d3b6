"""Presenters: how records look outside the box, on MQTT and in API answers.

Times in the site's zone; names and cards masked unless an admin asked (and was audited).
The one place to look for what a decision, an alarm or a pass looks like to a screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from edge.alarms import STANDING_AFTER_S, isa_state, shelved
from edge.cards import mask_key
from edge.clock import iso
from edge.privacy import mask_name
from edge.shape import shaped

if TYPE_CHECKING:  # the record's type only: the gate imports this module, not the reverse
    from edge.gate import Event


def _card(r: dict[str, Any], unmask: bool) -> str | None:
    """A row's card: as printed for an admin who asked, else masked."""
    if r["card_key"] is None:
        return None
    return (r["card_hex"] or f"{r['card_key']:08X}") if unmask else mask_key(r["card_key"])


def pass_view(r: dict[str, Any], tz: ZoneInfo, unmask: bool, name_mask: str) -> dict[str, Any]:
    return {
        "id": r["id"],
        "kind": r["kind"],
        "card": _card(r, unmask),
        "name": r["name"] if unmask else mask_name(r["name"], name_mask),
        "unit": r["unit"],
        "id_last4": r["id_last4"],
        "valid_from": iso(r["valid_from"], tz),
        "valid_until": iso(r["valid_until"], tz),
        "status": r["status"],
        "status_reason": r["status_reason"],
        "gates": r["gates"].split(",") if r["gates"] else None,
        "daily_window": r["daily_window"],
        "photo_url": (
            f"/api/v1/passes/{r['id']}/photo" if r["photo_sha256"] or r["photo_path"] else None
        ),
    }


def event_view(r: dict[str, Any], tz: ZoneInfo, unmask: bool, name_mask: str) -> dict[str, Any]:
    holder = r["holder"]
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
        "card": _card(r, unmask),
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


def mask_phone(phone: str) -> str:
    """138****5678: enough to tell two borrowers apart, not to call them."""
    digits = phone.strip()
    return digits[:3] + "****" + digits[-4:] if len(digits) > 7 else "****" + digits[-2:]


def key_loan_view(
    r: dict[str, Any], tz: ZoneInfo, unmask: bool, name_mask: str, now: float
) -> dict[str, Any]:
    from edge.keys import state  # (edge.keys records; this module only shows)

    return {
        "id": r["id"],
        "key": r["key_id"],
        "label": r["label"],
        "unit": r["unit"],
        "quantity": r["quantity"],
        "borrower": r["borrower"] if unmask else mask_name(r["borrower"], name_mask),
        "borrower_kind": r["borrower_kind"],
        "company": r["company"],
        "phone": r["phone"] if unmask else mask_phone(r["phone"]),
        "reason": r["reason"],
        "signature": r["signature_sha256"],
        "approved_by": r["approved_by"],
        "lent_by": r["lent_by"],
        "lent_at": iso(r["lent_at"], tz),
        "due_at": iso(r["due_at"], tz),
        "returned_at": iso(r["returned_at"], tz),
        "returned_by": r["returned_by"],
        "returned_count": r["returned_count"],
        "inspected_by": r["inspected_by"],
        "inspected_at": iso(r["inspected_at"], tz),
        "inspection_notes": r["inspection_notes"],
        "lost_at": iso(r["lost_at"], tz),
        "lost_count": r["lost_count"],
        "closed_at": iso(r["closed_at"], tz),
        "overdue_alarm": r["overdue_alarm_id"],
        "notes": r["notes"],
        "state": state(r, now),
    }


KEY_FIELDS = ("id", "label", "kind", "unit", "quantity", "contractor", "responsible",
              "in_cabinet", "retired_at")  # fmt: skip


def key_view(k: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return shaped({x: k[x] for x in KEY_FIELDS if x in k}, tz)


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
        "report": shaped(h["report"], tz),  # one frozen before its times were ISO too
        "report_sha256": h["report_sha256"],
        "override_by": h["override_by"],
        "override_reason": h["override_reason"],
        "outgoing_by": h["outgoing_by"],
        "outgoing_at": iso(h["outgoing_at"], tz),
        "incoming_by": h["incoming_by"],
        "incoming_at": iso(h["incoming_at"], tz),
        "signed": h["outgoing_by"] is not None and h["incoming_by"] is not None,
    }


def decision_message(e: Event, tz: ZoneInfo, name_mask: str) -> dict[str, Any]:
    """A decision as published on ``gate/<gate>/decision`` and answered to a guard."""
    return {
        "event_id": e.event_id,
        "ts": iso(e.ts, tz, "milliseconds"),
        "gate": e.gate,
        "reader": e.reader,
        "direction": e.direction,
        "decision": "grant" if e.granted else "deny",
        "reason": e.reason,
        "pass_id": e.pass_id,
        "pass_kind": e.pass_kind,
        "holder": mask_name(e.holder, name_mask) if e.holder else None,
        "card": mask_key(e.card.key) if e.card else None,
        "stale": e.stale,
        "by": e.by,
    }


def alarm_view(a: dict[str, Any], now: float, tz: ZoneInfo) -> dict[str, Any]:
    """An alarm as the API and ``alarm/<id>`` show it."""

    return {
        "id": a["id"],
        "type": a["type"],
        "priority": a["priority"],
        "source": a["source"],
        "location": a["location"],
        "floor": a["floor"],
        "room": a["room"],
        "gate": a["gate"],
        "notes": a["notes"],
        "route_to": a["route_to"],
        "active": a["active"],
        "acked": a["acked_at"] is not None,
        "acked_by": a["acked_by"],
        "acked_at": iso(a["acked_at"], tz),
        "shelved_until": iso(a["shelved_until"], tz) if shelved(a, now) else None,
        "isa_state": isa_state(a, now),
        "state": a["state"],
        "count": a["count"],
        "raised_at": iso(a["raised_at"], tz),
        "last_active_at": iso(a["last_active_at"], tz),
        "escalation_level": a["escalation_level"],
        "standing": a["state"] != "closed" and now - a["raised_at"] > STANDING_AFTER_S,
        "dispatched_to": a["dispatched_to"],
        "resolution": a["resolution"],
        "resolution_notes": a["resolution_notes"],
        "resolved_by": a["resolved_by"],
        "closed_at": iso(a["closed_at"], tz),
        "checklist": [
            {"id": s["id"], "step": s["step"], "done_at": iso(s["done_at"], tz), "by": s["by"]}
            for s in a["checklist"]
        ],
        "snapshot": joined(a),
        # a help request's stages and when each is due; ``overdue``: escalated for it
        "deadlines": [deadline_view(d, tz) for d in a.get("deadlines", [])],
    }


def deadline_view(d: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {"stage": d["stage"], "due_at": iso(d["due_at"], tz), "met_at": iso(d["met_at"], tz),
            "overdue": d["overdue_at"] is not None}  # fmt: skip


def snapshot_view(
    snapshot_id: int, sha: str | None, age_ms: int | None, stale: bool, has_file: bool
) -> dict[str, Any]:
    return {
        "id": snapshot_id,
        "url": f"/api/v1/snapshots/{snapshot_id}" if has_file else None,
        "sha256": sha,
        "age_ms": age_ms,
        "stale": stale,
    }


def joined(row: dict[str, Any]) -> dict[str, Any] | None:
    """The snapshot of a row carrying JOIN_COLUMNS, or None if it has none (yet)."""
    if row.get("snap_id") is None:
        return None
    has_file = row["snap_path"] is not None and row["snap_deleted_at"] is None
    return snapshot_view(
        row["snap_id"], row["snap_sha256"], row["snap_age_ms"], bool(row["snap_stale"]), has_file
    )
