"""Office-signed passes a gate can trust before it has synced: Ed25519 over a compact text
printed as a QR code.

    GH1.<base64url(JSON payload)>.<base64url(signature)>

The payload names the signing key (``kid``, the first 8 hex digits of the SHA-256 of the
public key), so keys can be rotated: gates list every key they accept
(``[qr] office_public_keys``), the office signs with the newest, and an old key is dropped
from the gates once the passes it signed have expired.

The signature is checked over the body's bytes before anything in them is read; only then
is the body parsed, and the key it names must be the key that verified it. A verified code
is still only as good as the rules below (docs/sync.md, "What a gate checks on a QR
code"): a gate takes by QR only a temporary pass no longer than the kind's limit, a
bounded number of entries a day, and no code at all while its clock is behind the office's.

The private key lives in the office's data_dir, made once by ``gatehouse office key init``
and carried by the office backup; it is never made silently, since a new key would make
every printed pass unreadable at the gates.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge import db
from edge.config import ConfigError
from edge.errors import DomainError
from edge.passes import TEMPORARY_MAX, in_range
from edge.privacy import mask_name

PREFIX = "GH1."
KEY_FILE = Path("keys") / "office_ed25519.key"  # under the office's data_dir
INIT_COMMAND = "gatehouse office key init"
# How far the gate's clock may be behind the office's newest change it has pulled before
# the gate takes no QR code: the two clocks are set by different hands, and a minute is
# ordinary drift, while a gate hours behind would take an expired pass as valid.
CLOCK_TOLERANCE_S = 60.0
# The pass kinds a gate takes by QR, and how many entries one code allows in a local day
# at one gate (counted from the gate's own granted events). A printed code can be copied
# as often as it is photographed; a temporary pass is for a visitor or a short-term worker,
# who comes in, goes out for a meal or an errand and comes back: four covers that day with
# one to spare, and a copy handed round is refused after the fourth.
QR_ENTRIES_PER_DAY: dict[str, int] = {"temporary": 4}


class NoSigningKey(ConfigError):
    """The office has no QR signing key: made once, by ``gatehouse office key init``."""


class QrRefused(DomainError):
    """A code whose signature verified but which this gate may not act on. ``what`` names
    the rule, for the counters: clock_behind, kind, period, entries."""

    def __init__(self, message: str, what: str) -> None:
        super().__init__(message)
        self.what = what


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
        """The office's key; NoSigningKey when there is none (never made here: a new key
        would silently make every printed pass unreadable at the gates)."""
        path = data_dir / KEY_FILE
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            raise NoSigningKey(
                f"office: no QR signing key in {path}: make one with `{INIT_COMMAND}`, "
                "or restore the office backup that holds it (gatehouse restore FILE)"
            ) from None
        try:
            return cls(Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text)))
        except ValueError:
            raise NoSigningKey(f"office: {path} is not an Ed25519 key (64 hex digits)") from None

    @classmethod
    def create(cls, data_dir: Path) -> Signer:
        """Make the office's key (0600); refused when there is one already."""
        path = data_dir / KEY_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        raw = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )  # fmt: skip
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(
                f"office: {path} exists already: the office has its signing key "
                "(`gatehouse office key` prints its public half)"
            ) from None
        with os.fdopen(fd, "w") as f:
            f.write(raw.hex())
        return cls.from_data_dir(data_dir)

    @property
    def private_hex(self) -> str:
        """The key as its file holds it (for the office backup)."""
        return self.key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        ).hex()  # fmt: skip

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
    } | _site(p)  # fmt: skip


def _site(record: dict[str, Any]) -> dict[str, Any]:
    """The estate a code is for: a gate of another refuses it (``admit``)."""
    return {"x": record["site"]} if record.get("site") else {}


def slip_payload(s: dict[str, Any]) -> dict[str, Any]:
    """What a printed slip carries: everything the guard checks the goods and bearer against."""
    return {
        "s": s["number"], "u": s["unit"], "o": s["owner"], "b": s["bearer"],
        "a": s["authorisation"], "d": s["authorisation_detail"], "i": s["items"],
        "h": s["hazard_allowed"], "f": int(s["valid_from"]), "t": int(s["valid_until"]),
        "r": s["approver"], "v": s["version"],
    } | _site(s)  # fmt: skip


def verify(text: str, public_keys: list[str]) -> dict[str, Any]:
    """The payload of a QR text signed by one of ``public_keys`` (base64), or DomainError.

    The signature is checked over the body's bytes first, against each key held; nothing
    in the body is parsed until one of them verifies it."""
    text = text.strip()
    if not text.startswith(PREFIX) or text.count(".") != 2:
        raise DomainError("qr: not a Gatehouse pass (GH1.…)")
    _, body_b64, sig_b64 = text.split(".")
    try:
        body, sig = _unb64(body_b64), _unb64(sig_b64)
    except ValueError:
        raise DomainError("qr: the code is damaged") from None
    if len(sig) != 64:  # an Ed25519 signature's length: a misread, not a forgery
        raise DomainError("qr: the code is damaged")
    held = [base64.b64decode(k) for k in public_keys]
    signer = next((key_id(raw) for raw in held if _signs(raw, sig, body)), None)
    if signer is None:
        if _named_kid(body) not in (None, *map(key_id, held)):
            raise DomainError("qr: signed with a key this gate does not hold")
        raise DomainError("qr: the signature does not match: a forged or altered pass")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise DomainError("qr: the code is damaged") from None
    if not isinstance(payload, dict):
        raise DomainError("qr: the code is damaged")
    if payload.get("kid") != signer:
        raise DomainError("qr: the key the code names is not the key that signed it")
    return payload


def _signs(public_raw: bytes, sig: bytes, body: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(sig, body)
    except InvalidSignature:
        return False
    return True


def _named_kid(body: bytes) -> str | None:
    """The key id an unverified body ends with, as Signer.sign writes it
    (``…,"kid":"1a2b3c4d"}``), or None: a fixed-size look at its last bytes, never a parse,
    only to tell a key this gate lacks from a forgery in the refusal."""
    tail = body[-17:]
    if len(tail) == 17 and tail.startswith(b'"kid":"') and tail.endswith(b'"}'):
        kid = tail[7:15]
        if all(c in b"0123456789abcdef" for c in kid):
            return kid.decode()
    return None


# -- what a verified code may do at this gate ---------------------------------------------


def check_clock(now: float, newest_known: float | None) -> None:
    """The gate's clock against the office's newest change it has pulled: a clock behind
    it would take expired codes as valid, so no code is taken until it is set."""
    if newest_known is not None and now < newest_known - CLOCK_TOLERANCE_S:
        behind = int(newest_known - now)
        raise QrRefused(
            f"qr: this gate's clock is {behind} s behind the office's: set the gate's clock "
            "(timedatectl); no QR code is taken until then",
            "clock_behind",
        )


def check_site(payload: dict[str, Any], site: str | None) -> None:
    """A code for another estate of the company is not taken here (``site``: this gate's,
    as the office last named it; codes printed before sites name none)."""
    meant = payload.get("x")
    if site and meant is not None and meant != site:
        raise QrRefused(f"qr: this code is for estate {meant}, not this gate's ({site})", "site")


def check_pass(payload: dict[str, Any]) -> None:
    """A pass's code: only the kinds a gate takes by QR (temporary), no longer than the
    kind's limit (edge.passes.TEMPORARY_MAX), with an end."""
    kind = payload.get("k")
    if kind not in QR_ENTRIES_PER_DAY or "p" not in payload:
        raise QrRefused(f"qr: only a temporary pass is taken by QR, not a {kind} pass", "kind")
    start, end = payload.get("f"), payload.get("t")
    if not in_range(start) or not in_range(end):
        raise QrRefused("qr: the code does not say when the pass starts and ends", "period")
    limit = TEMPORARY_MAX.total_seconds()
    if end - start > limit:
        said, most = int((end - start) // 3600), int(limit // 3600)
        raise QrRefused(
            f"qr: a temporary pass is valid for at most {most} hours; this code says {said}",
            "period",
        )


def check_entries(payload: dict[str, Any], used: int, gate: str) -> None:
    """Entries left today for this code at this gate (``used``: the grants already)."""
    allowed = QR_ENTRIES_PER_DAY.get(str(payload.get("k")), 0)
    if used >= allowed:
        raise QrRefused(
            f"qr: pass {payload.get('p')} has had its {allowed} entries today at gate {gate}",
            "entries",
        )


def day_bounds(at: float, tz: ZoneInfo) -> tuple[float, float]:
    """The local day around ``at``: its first moment, and the next day's."""
    start = datetime.fromtimestamp(at, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()  # local, wall-clock


# -- what the gate knows (reads, for the callers) -----------------------------------------


def newest_known(conn: sqlite3.Connection) -> float | None:
    """The office's newest change time this gate has pulled (``pull_newest_at``), if any."""
    value = db.get_meta(conn, "pull_newest_at")
    try:
        return None if value is None else float(value)
    except ValueError:
        return None


def entries_used(conn: sqlite3.Connection, pass_id: str, gate: str, at: float, tz: ZoneInfo) -> int:
    """Grants to this pass at this gate on ``at``'s local day, from the gate's own events;
    an exit reader's grants are not entries."""
    start, end = day_bounds(at, tz)
    row = conn.execute(
        "SELECT count(*) FROM access_events WHERE gate = ? AND ts >= ? AND ts < ? "
        "AND pass_id = ? AND decision = 'grant' AND coalesce(direction, 'in') != 'out'",
        (gate, start, end, pass_id),
    ).fetchone()
    return int(row[0])


def admit(conn: sqlite3.Connection, payload: dict[str, Any], now: float) -> None:
    """A verified code: refused (QrRefused) while the gate's clock (``now``) is behind the
    office's, and, a pass, unless it is one a gate takes by QR. Its entries are counted
    where the grant is recorded (check_entries)."""
    check_clock(now, newest_known(conn))
    check_site(payload, db.get_meta(conn, "site"))
    if "s" not in payload:
        check_pass(payload)
