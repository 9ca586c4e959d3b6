"""How a snapshot appears on the record it belongs to (kept apart from OpenCV)."""

from __future__ import annotations

from typing import Any

# Joined into a record's query: ``LEFT JOIN snapshots s ON s.id = <table>.snapshot_id``.
JOIN_COLUMNS = (
    "s.id AS snap_id, s.sha256 AS snap_sha256, s.age_ms AS snap_age_ms, "
    "s.stale AS snap_stale, s.path AS snap_path, s.deleted_at AS snap_deleted_at"
)


def view(
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
    return view(
        row["snap_id"], row["snap_sha256"], row["snap_age_ms"], bool(row["snap_stale"]), has_file
    )
