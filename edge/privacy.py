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
    """HMAC-SHA256 of an ID number under a per-site key: matchable, not reversible.

    An office derives each site's key from its own (``for_site``) and hands it to the
    site's gates (GET /sync/v1/id-key): a number hashed at any gate of the estate, or at
    the office for a pass of that estate, matches. A gate's keys from before it had the
    site's (its own, made at first use) are kept as ``id_hash.retired-*.key`` so the hashes
    made under them still match (``candidates``)."""

    def __init__(self, key: bytes, retired: tuple[bytes, ...] = (), keys: Path | None = None):
        self._keys = (key, *retired)  # current first; swapped whole, never edited in place
        self._dir = keys

    @classmethod
    def from_data_dir(cls, data_dir: Path, create: bool = True) -> IdHasher:
        """The key under ``data_dir``, made there when missing and ``create`` (a gate makes
        its own at first use, until its office gives it the site's; the office's is made by
        `office key init` only, as a new key would silently stop every ID number the office
        holds from matching)."""
        keys = data_dir / "keys"
        path = keys / "id_hash.key"
        if not path.exists() and not create:
            raise MissingKey(
                f"office: no ID-number key in {path}: make one with `gatehouse office key "
                "init`, or restore the office backup that holds it (gatehouse restore FILE)"
            )
        if not path.exists():
            _write_key(path, secrets.token_bytes(32))
        retired = tuple(_read_key(p) for p in sorted(keys.glob("id_hash.retired-*.key")))
        return cls(_read_key(path), retired, keys)

    @property
    def key(self) -> bytes:
        return self._keys[0]

    def for_site(self, site: str) -> IdHasher:
        """The hasher of one estate, its key derived from this (the office's) key: one key
        to back up at the office, and a gate's key opens no other estate's hashes."""
        derived = hmac.new(self.key, b"gatehouse id-hash site " + site.encode(), "sha256")
        return IdHasher(derived.digest())

    def digest(self, id_number: str) -> tuple[str, str]:
        """(keyed hash, last 4) of an ID number; raises ValueError if it is malformed."""
        value = normalise_id_number(id_number)
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest(), value[-4:]

    def candidates(self, id_number: str) -> list[str]:
        """The number's hash under every key this gate has had, the current one first: what
        a record made here at any time may hold."""
        value = normalise_id_number(id_number).encode()
        return [hmac.new(k, value, hashlib.sha256).hexdigest() for k in self._keys]

    def adopt(self, key: bytes) -> bool:
        """Take ``key`` (the site's, from the office) as the current one; whether it was new.
        The one it replaces is kept, retired, for the hashes already made under it."""
        if key == self.key:
            return False
        if self._dir is None:
            raise RuntimeError("this hasher has no key directory to keep its keys in")
        stamp = hashlib.sha256(self.key).hexdigest()[:12]
        retired = self._dir / f"id_hash.retired-{stamp}.key"
        if not retired.exists():
            _write_key(retired, self.key)
        _write_key(self._dir / "id_hash.key", key, replace=True)
        self._keys = (key, *(k for k in self._keys if k != key))
        return True


def _read_key(path: Path) -> bytes:
    return bytes.fromhex(path.read_text().strip())


def _write_key(path: Path, key: bytes, replace: bool = False) -> None:
    """A key file, 0600, whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not replace:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key.hex())
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
