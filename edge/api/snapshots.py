"""Pictures from the gates' cameras: on demand, and each one by its id."""

from __future__ import annotations

import uuid
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from edge.api.deps import Caller, roles, service
from edge.api.schemas import SnapshotIn
from edge.errors import DomainError

router = APIRouter(prefix="/api/v1/snapshots", tags=["cameras"])


@router.post("", status_code=201)
def take(request: Request, body: SnapshotIn, who: Caller = roles("guard", "control")) -> dict:
    """A picture from the gate's camera now (waits for the next frame, at most its limit)."""
    svc = service(request)
    req = svc.cameras.snap(
        svc.cfg.known_gate(body.gate), "request", uuid.uuid4().hex, svc.clock.now()
    )
    if req is None:
        raise DomainError(f"gate: {body.gate!r} has no camera")
    try:
        return req.result.result(timeout=req.camera.stale_after_ms / 1000 + 5)  # type: ignore[no-any-return]
    except FutureTimeout:
        raise HTTPException(504, f"camera {req.camera.id} gave no picture in time") from None


@router.get("/{snapshot_id}", response_class=FileResponse)
def picture(
    request: Request,
    snapshot_id: Annotated[int, PathParam(ge=1, le=2**62)],
    who: Caller = roles("guard", "control"),
) -> Any:
    svc = service(request)
    row = svc.read(
        lambda c: c.execute(
            "SELECT path, sha256, deleted_at FROM snapshots WHERE id = ?", (snapshot_id,)
        ).fetchone()
    )
    if row is None:
        raise HTTPException(404, f"no snapshot with id {snapshot_id}")
    path, sha, deleted = row
    if path is None:
        raise HTTPException(404, f"snapshot {snapshot_id} has no picture: the camera gave none")
    if deleted is not None or not Path(path).is_file():
        raise HTTPException(410, f"snapshot {snapshot_id} was removed by retention")
    return FileResponse(path, media_type="image/jpeg", headers={"X-SHA256": sha or ""})
