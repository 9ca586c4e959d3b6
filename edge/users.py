"""Users: a bearer token for devices and scripts, a password for people at the console.

A token is shown once; only its SHA-256 is kept (tokens are 256 random bits, so a fast hash
is as good as a slow one). A password is chosen by a person, so it is kept as an argon2id
hash (argon2-cffi's defaults, RFC 9106's second recommendation).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import sqlite3

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from edge import audit, store
from edge.errors import Conflict, DomainError, NotFound
from edge.models import User

ROLES = ("guard", "control", "admin")
MIN_PASSWORD = 8  # characters

_hasher = PasswordHasher()


@functools.cache
def _dummy() -> str:
    """Verified against when the name is unknown, so a wrong name costs what a wrong
    password does (made at the first login, not at import: every CLI call imports this)."""
    return _hasher.hash("not a password anyone has")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add(conn: sqlite3.Connection, name: str, role: str, now: float, by: str = "cli") -> str:
    """Create a user; the token it returns is not stored anywhere. A revoked user comes back
    under the same name (the duty log and handover signatures keep naming one person), with
    a new token and no password until one is set again."""
    name = name.strip()
    if not name:
        raise DomainError("name: must not be empty")
    if role not in ROLES:
        raise DomainError(f"role: {role!r} is not one of {', '.join(ROLES)}")
    found = conn.execute("SELECT revoked_at FROM users WHERE name = ?", (name,)).fetchone()
    if found and found[0] is None:
        raise Conflict(f"a user named {name!r} exists already")
    token = secrets.token_urlsafe(32)
    if found:
        conn.execute(
            "UPDATE users SET role = ?, token_hash = ?, created_at = ?, revoked_at = NULL, "
            "password_hash = NULL, password_set_at = NULL WHERE name = ?",
            (role, hash_token(token), now, name),
        )
    else:
        store.insert(conn, User, {"name": name, "role": role, "token_hash": hash_token(token),
                                  "created_at": now})  # fmt: skip
    audit.record(conn, by, "user_add_again" if found else "user_add", name, now)
    return token


def rotate(conn: sqlite3.Connection, name: str, now: float, by: str = "cli") -> str:
    """A new token for an active user; the old one is refused from the next request on.
    The password, the role and the name stay (a leaked token, not a new person)."""
    token = secrets.token_urlsafe(32)
    cur = conn.execute(
        "UPDATE users SET token_hash = ? WHERE name = ? AND revoked_at IS NULL",
        (hash_token(token), name),
    )
    if cur.rowcount == 0:
        raise NotFound(f"no active user named {name!r}")
    audit.record(conn, by, "user_rotate", name, now)
    return token


def revoke(conn: sqlite3.Connection, name: str, now: float, by: str = "cli") -> None:
    cur = conn.execute(
        "UPDATE users SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (now, name)
    )
    if cur.rowcount == 0:
        raise NotFound(f"no active user named {name!r}")
    audit.record(conn, by, "user_revoke", name, now)


def authenticate(conn: sqlite3.Connection, token: str) -> tuple[str, str] | None:
    """(name, role) of the token's active user, or None."""
    row = conn.execute(
        "SELECT name, role FROM users WHERE token_hash = ? AND revoked_at IS NULL",
        (hash_token(token),),
    ).fetchone()
    return (row[0], row[1]) if row else None


def active(conn: sqlite3.Connection, name: str) -> tuple[str, str] | None:
    """(name, role) of the active user of that name, or None."""
    row = conn.execute(
        "SELECT name, role FROM users WHERE name = ? AND revoked_at IS NULL", (name,)
    ).fetchone()
    return (row[0], row[1]) if row else None


def hash_password(password: str) -> str:
    """The argon2id hash of an acceptable password (the office keeps its users' the same)."""
    if len(password) < MIN_PASSWORD:
        raise DomainError(f"password: at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` hashes; a user with none costs as much."""
    try:
        _hasher.verify(stored or _dummy(), password)
    except (VerificationError, InvalidHashError):
        return False
    return stored is not None


def set_password(conn: sqlite3.Connection, name: str, password: str, now: float) -> None:
    """Set (or change) an active user's console password."""
    cur = conn.execute(
        "UPDATE users SET password_hash = ?, password_set_at = ? "
        "WHERE name = ? AND revoked_at IS NULL",
        (hash_password(password), now, name),
    )
    if cur.rowcount == 0:
        raise NotFound(f"no active user named {name!r}")


def check_password(conn: sqlite3.Connection, name: str, password: str) -> tuple[str, str] | None:
    """(name, role) if ``password`` is this active user's, else None."""
    row = conn.execute(
        "SELECT name, role, password_hash FROM users WHERE name = ? AND revoked_at IS NULL",
        (name,),
    ).fetchone()
    ok = verify_password(row[2] if row else None, password)
    return (row[0], row[1]) if ok and row else None
