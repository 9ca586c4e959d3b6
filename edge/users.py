"""API users and their bearer tokens. A token is shown once; only its SHA-256 is kept
(tokens are 256 random bits, so a fast hash is as good as a slow one)."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3

from edge import store
from edge.errors import Conflict, DomainError, NotFound
from edge.models import User

ROLES = ("guard", "control", "admin")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add(conn: sqlite3.Connection, name: str, role: str, now: float) -> str:
    """Create a user; the token it returns is not stored anywhere."""
    name = name.strip()
    if not name:
        raise DomainError("name: must not be empty")
    if role not in ROLES:
        raise DomainError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    if conn.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
        raise Conflict(f"a user named {name!r} exists already")
    token = secrets.token_urlsafe(32)
    store.insert(
        conn, User, {"name": name, "role": role, "token_hash": hash_token(token), "created_at": now}
    )
    return token


def revoke(conn: sqlite3.Connection, name: str, now: float) -> None:
    cur = conn.execute(
        "UPDATE users SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name)
    )
    if cur.rowcount == 0:
        raise NotFound(f"no active user named {name!r}")


def authenticate(conn: sqlite3.Connection, token: str) -> tuple[str, str] | None:
    """(name, role) of the token's active user, or None."""
    row = conn.execute(
        "SELECT name, role FROM users WHERE token_hash = ? AND revoked_at IS NULL",
        (hash_token(token),),
    ).fetchone()
    return (row[0], row[1]) if row else None
