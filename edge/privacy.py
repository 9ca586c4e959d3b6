"""Personal data: keyed hashes for ID numbers, masks for names and cards (PIPL, DOMAIN.md)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

_ID_RE = re.compile(r"^[0-9A-Z]{6,32}$")
NAME_MASKS = ("surname", "none", "hidden")


def normalise_id_number(raw: str) -> str:
    """Upper-case and strip spaces; a Chinese resident ID may end in ``X``."""
    value = re.sub(r"[\s-]", "", raw).upper()
    if not _ID_RE.match(value):
        raise ValueError("id number must be 6 to 32 letters or digits")
    return value


class IdHasher:
    """HMAC-SHA256 of an ID number under a per-site key: matchable, not reversible."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> IdHasher:
        path = data_dir / "keys" / "id_hash.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return cls(bytes.fromhex(path.read_text().strip()))

    def digest(self, id_number: str) -> tuple[str, str]:
        """(keyed hash, last 4) of an ID number; raises ValueError if it is malformed."""
        value = normalise_id_number(id_number)
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest(), value[-4:]


def mask_name(name: str, style: str = "surname") -> str:
    """A name fit to leave the box: ``张三丰`` → ``张**``, ``John Smith`` → ``J*** S****``."""
    if style == "none":
        return name
    if style == "hidden" or not name:
        return "***"
    words = name.split()
    if len(words) > 1:  # Latin names: keep each initial
        return " ".join(w[0] + "*" * (len(w) - 1) for w in words)
    return name[0] + "*" * max(len(name) - 1, 1)
