"""Personal data: keyed hashes for ID numbers, masks for names and cards (PIPL, DOMAIN.md)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import unicodedata
from pathlib import Path

_ID_RE = re.compile(r"^[0-9A-Z]{6,32}$")
NAME_MASKS = ("surname", "none", "hidden")


def normalise_id_number(raw: str) -> str:
    """Upper-case and strip spaces; a Chinese resident ID may end in ``X``."""
    value = re.sub(r"[\s-]", "", raw).upper()
    if not _ID_RE.match(value):
        raise ValueError("id number must be 6 to 32 letters or digits")
    return value


class MissingKey(ValueError):
    """The key is not where the config says, and is not to be made there."""


class IdHasher:
    """HMAC-SHA256 of an ID number under a per-site key: matchable, not reversible."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def from_data_dir(cls, data_dir: Path, create: bool = True) -> IdHasher:
        """The key under ``data_dir``, made there when missing and ``create`` (a gate makes
        its own at first use; the office's is made by `office key init` only, as a new key
        would silently stop every ID number the office holds from matching)."""
        path = data_dir / "keys" / "id_hash.key"
        if not path.exists() and not create:
            raise MissingKey(
                f"office: no ID-number key in {path}: make one with `gatehouse office key "
                "init`, or restore the office backup that holds it (gatehouse restore FILE)"
            )
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


# Characters that take no room on a screen: zero-width spaces and joiners, direction
# marks, byte-order marks, controls, lone surrogates. Dropped before masking, so 李\u200b四
# is 李四 and no invisible character can make a word of a name look like two.
_INVISIBLE = frozenset(("Cc", "Cf", "Cs"))


def _clusters(word: str) -> list[str]:
    """A word as what a reader sees as characters: each base character with the combining
    marks after it (é written e + U+0301, Tibetan and Arabic vowel signs), so a mask never
    shows a base character's mark alone, nor hides half of what it shows."""
    out: list[str] = []
    for ch in word:
        if out and unicodedata.category(ch).startswith("M"):
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _words(name: str) -> list[list[str]]:
    """The name's words, split on any Unicode space (U+3000, NBSP, thin space, tab...), each
    as its clusters; the invisible characters gone."""
    seen = "".join(c for c in name if unicodedata.category(c) not in _INVISIBLE)
    return [_clusters(w) for w in seen.split()]


def mask_name(name: str, style: str = "surname") -> str:
    """A name fit to leave the box: ``张三丰`` → ``张**``, ``John Smith`` → ``J*** S****``.

    What shows is the first character (the surname of a Chinese name) or, for a name of
    several words each longer than one character, each word's initial. Never the whole name:
    a name of one character shows none of it, and a name with a word of one character
    (``李 四``, ``J S``, typed with any kind of space) is masked as one word, else each
    "initial" would be the whole word (issue 11, finding 6)."""
    if style == "none":
        return name
    words = _words(name) if style != "hidden" else []
    if not words:
        return "***"
    if len(words) > 1 and all(len(w) > 1 for w in words):  # Latin names: each initial
        return " ".join(w[0] + "*" * (len(w) - 1) for w in words)
    clusters = [c for w in words for c in w]
    if len(clusters) == 1:
        return "**"
    return clusters[0] + "*" * (len(clusters) - 1)
