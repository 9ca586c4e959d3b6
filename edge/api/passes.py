"""Passes: guards read (masked), admins issue and revoke."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response

from edge import audit, pass_ops, pass_reads, photos
from edge.api.deps import CURSOR, UNMASK, Caller, page, roles, service, unmasked
from edge.api.schemas import PassIn, ReasonIn, RevokeCardIn
from edge.cards import parse_card
from edge.errors import DomainError, NotFound
from edge.views import pass_view

router = APIRouter(prefix="/api/v1/passes", tags=["passes"])


@router.get("")
def list_passes(
    request: Request,
    who: Caller = roles("guard", "control"),
    status: str | None = Query(None, pattern="^(active|expired|revoked|confiscated)$"),
    card: str | None = Query(None, max_length=40),
    unit: str | None = Query(None, max_length=50),
    limit: int = Query(50, ge=1, le=500),
    cursor: int | None = CURSOR,
    unmask: bool = UNMASK,
) -> dict[str, Any]:
    svc = service(request)
    try:
        key = parse_card(card) if card else None
    except ValueError as e:
        raise DomainError(f"card: {e}") from None
    found = svc.read(lambda c: pass_reads.list_passes(
        c, svc.clock.now(), limit + 1, status, key, unit, cursor))  # fmt: skip
    whole = unmasked(svc, who, unmask, "passes", len(found))
    shown, after = page(found, limit, "_row")
    items = [pass_view(r, svc.cfg.tz, whole, svc.cfg.rules.name_mask) for r in shown]
    return {"items": items, "next": after}


@router.post("", status_code=201)
def issue(request: Request, body: PassIn, who: Caller = roles("admin")) -> dict[str, Any]:
    svc = service(request)
    for g in body.gates or []:
        svc.cfg.known_gate(g)
    req = pass_ops.PassRequest(
        kind=body.kind, card=body.card, name=body.name, unit=body.unit,
        id_number=body.id_number, valid_from=body.valid_from, valid_until=body.valid_until,
        gates=",".join(body.gates) if body.gates else None, daily_window=body.daily_window,
        permit_no=body.permit_no, photo=body.photo,
    )  # fmt: skip
    if body.photo is not None and not svc.photos.has(body.photo):
        raise NotFound(f"photo {body.photo}: upload it first (POST /api/v1/photos)")

    def job(conn: Any) -> dict[str, Any]:
        now = svc.clock.now()
        pass_id = pass_ops.issue(conn, req, svc.hasher, svc.cfg.tz, who.name, now,
                                 replace=body.replace)  # fmt: skip
        audit.record(conn, who.name, "pass:issue", pass_id, now)
        return dict(pass_reads.get_pass(conn, pass_id))

    return pass_view(svc.write(job), svc.cfg.tz, True, svc.cfg.rules.name_mask)


@router.post("/revoke")
def revoke_card(request: Request, body: RevokeCardIn, who: Caller = roles("admin")) -> dict:
    """Revoke whatever lets a card in, now or later: the guard knows the lost card, not its
    passes. 404 when the card has no live pass."""
    svc = service(request)
    try:
        card = parse_card(body.card)
    except ValueError as e:
        raise DomainError(f"card: {e}") from None

    def job(conn: Any) -> list[str]:
        now = svc.clock.now()
        ids = pass_ops.revoke_card(conn, card, body.reason, who.name, now)
        for pass_id in ids:
            audit.record(conn, who.name, "pass:revoke", pass_id, now)
        return ids

    return {"card": card.masked, "revoked": svc.write(job)}


@router.post("/{pass_id}/revoke")
def revoke(
    request: Request, pass_id: str, body: ReasonIn | None = None, who: Caller = roles("admin")
) -> dict[str, Any]:
    svc = service(request)
    reason = body.reason if body else None

    def job(conn: Any) -> dict[str, Any]:
        now = svc.clock.now()
        pass_ops.set_status(conn, pass_id, "revoked", reason, who.name, now)
        audit.record(conn, who.name, "pass:revoke", pass_id, now)
        return dict(pass_reads.get_pass(conn, pass_id))

    return pass_view(svc.write(job), svc.cfg.tz, False, svc.cfg.rules.name_mask)


@router.get("/{pass_id}/photo", response_class=Response)
def photo(request: Request, pass_id: str, who: Caller = roles("guard")) -> Response:
    """The holder's photo, for matching the pass to the person (证件与人是否相符): only ever
    a picture from the photo store, or a legacy file that decodes as one."""
    svc = service(request)
    r = svc.read(lambda c: dict(pass_reads.get_pass(c, pass_id)))
    if r["photo_sha256"] and svc.photos.has(r["photo_sha256"]):
        return FileResponse(svc.photos.path(r["photo_sha256"]), media_type="image/jpeg",
                            headers={"Cache-Control": "no-store"})  # fmt: skip
    if r["photo_path"]:
        # issued before photos were data, by a path the CLI took as given: served only as
        # the picture it decodes to, so no other file the service can read (its keys) is
        try:
            with Path(r["photo_path"]).open("rb") as f:
                picture = photos.normalise(f.read(photos.MAX_UPLOAD + 1))
        except (OSError, photos.PhotoError):
            picture = None
        if picture is not None:
            return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "no-store"})
    raise HTTPException(404, f"pass {pass_id} has no photo on file")
