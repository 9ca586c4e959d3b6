"""How a snapshot is joined into the record it belongs to (kept apart from OpenCV); its
view is in edge.views."""

from __future__ import annotations

# Joined into a record's query: ``LEFT JOIN snapshots s ON s.id = <table>.snapshot_id``.
JOIN_COLUMNS = (
    "s.id AS snap_id, s.sha256 AS snap_sha256, s.age_ms AS snap_age_ms, "
    "s.stale AS snap_stale, s.path AS snap_path, s.deleted_at AS snap_deleted_at"
)
