"""Holders' photos: uploaded once, then named by a pass (``photo`` in ``POST /passes``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from edge.api.deps import Caller, keep_picture, roles
from edge.photos import MAX_UPLOAD

router = APIRouter(prefix="/api/v1/photos", tags=["passes"])


@router.post("", status_code=201, max_body_size=MAX_UPLOAD)
async def upload(request: Request, who: Caller = roles("admin")) -> dict[str, Any]:
    """The body is the picture itself (JPEG or PNG, at most 8 MiB). It is checked, turned
    upright, scaled to 640 px at most and kept without its metadata; the answer's
    ``photo`` is what a new pass names."""
    return {"photo": await keep_picture(request, who, "photo")}
