"""Office-signed passes a gate can trust before it has synced: Ed25519 over a compact text
printed as a QR code.

    GH1.<base64url(JSON payload)>.<base64url(signature)>

The payload names the signing key (``kid``, the first 8 hex digits of the SHA-256 of the
public key), so keys can be rotated: gates list every key they accept
(``[qr] office_public_keys``), the office signs with the newest, and an old key is dropped
from the gates once the passes it signed have expired.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.errors import DomainError
from edge.privacy import mask_name

PREFIX = "GH1."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:8]


class Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key
        self.public_raw = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.kid = key_id(self.public_raw)

    @classmethod
    def from_data_dir(cls, data_dir: Path) -> Signer:
        path = data_dir / "keys" / "office_ed25519.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )  # fmt: skip
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(raw.hex())
        return cls(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(path.read_text().strip())))

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_raw).decode()

    def sign(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload | {"kid": self.kid}, separators=(",", ":"), ensure_ascii=False)
        data = body.encode()
        return PREFIX + _b64(data) + "." + _b64(self.key.sign(data))


def pass_payload(p: dict[str, Any]) -> dict[str, Any]:
    """What a printed pass carries: enough to decide, and no more than the paper shows to
    anyone who photographs it. No card number (a card of this kind is cloned from its
    number), and the holder's name masked as it is printed to the LAN (张**); a gate that
    has synced shows the whole name and the photo from its own copy of the pass."""
    return {
        "p": p["id"], "k": p["kind"], "n": mask_name(p["name"]),
        "u": p["unit"], "f": int(p["valid_from"]),
        "t": None if p["valid_until"] is None else int(p["valid_until"]),
        "g": p["gates"], "w": p["daily_window"], "v": p["version"],
    }  # fmt: skip


def slip_payload(s: dict[str, Any]) -> dict[str, Any]:
    """What a printed slip carries: everything the guard checks the goods and bearer against."""
    return {
        "s": s["number"], "u": s["unit"], "o": s["owner"], "b": s["bearer"],
        "a": s["authorisation"], "d": s["authorisation_detail"], "i": s["items"],
        "h": s["hazard_allowed"], "f": int(s["valid_from"]), "t": int(s["valid_until"]),
        "r": s["approver"], "v": s["version"],
    }  # fmt: skip


def verify(text: str, public_keys: list[str]) -> dict[str, Any]:
    """The payload of a QR text signed by one of ``public_keys`` (base64), or DomainError."""
    text = text.strip()
    if not text.startswith(PREFIX) or text.count(".") != 2:
        raise DomainError("qr: not a Gatehouse pass (GH1.…)")
    _, body_b64, sig_b64 = text.split(".")
    try:
        body, sig = _unb64(body_b64), _unb64(sig_b64)
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DomainError("qr: the code is damaged") from None
    if not isinstance(payload, dict):
        raise DomainError("qr: the code is damaged")
    keys = {}
    for k in public_keys:
        raw = base64.b64decode(k)
        keys[key_id(raw)] = Ed25519PublicKey.from_public_bytes(raw)
    key = keys.get(str(payload.get("kid")))
    if key is None:
        raise DomainError("qr: signed with a key this gate does not hold")
    try:
        key.verify(sig, body)
    except InvalidSignature:
        raise DomainError("qr: the signature does not match: a forged or altered pass") from None
    return payload
