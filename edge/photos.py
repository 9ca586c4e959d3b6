"""Holders' photos as data: checked, re-encoded to a bounded size and stored by content.

An upload is decoded (JPEG or PNG only), turned upright by its EXIF orientation, scaled to
fit ``MAX_SIDE`` and written again as a plain JPEG. Re-encoding bounds the size a gate
keeps per pass and drops the metadata a phone puts in a picture (where it was taken, the
device), which is personal data nobody asked for. The stored name is the SHA-256 of the
stored bytes, so the office and every gate name a photo the same way, a gate can check
what it pulled, and a photo given twice is kept once.

Files are written 0600 under ``<data_dir>/photos/ab/abcdef….jpg``, whole or not at all.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from edge.errors import DomainError

MAX_UPLOAD = 8 * 1024 * 1024  # a phone's full-size JPEG fits; anything larger is refused
MAX_PIXELS = 40_000_000  # the largest picture decoded (a 7,000 × 5,700 camera); more is a bomb
MAX_SIDE = 640  # plenty to tell a face on the guard's screen and on a printed pass
MIN_SIDE = 64  # smaller is not a photo anyone can compare a face with
QUALITY = 85
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PhotoError(DomainError):
    """An upload that is not a usable photo (422)."""


def normalise(data: bytes) -> bytes:
    """The JPEG to keep for an uploaded picture, or PhotoError saying what is wrong."""
    if not data:
        raise PhotoError("photo: the upload is empty")
    if len(data) > MAX_UPLOAD:
        raise PhotoError(f"photo: {len(data)} bytes is more than the {MAX_UPLOAD} allowed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in ("JPEG", "PNG"):
                raise PhotoError(f"photo: {image.format} is not accepted; send a JPEG or PNG")
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise PhotoError(f"photo: {width}×{height} is too large a picture")
            if min(width, height) < MIN_SIDE:
                raise PhotoError(f"photo: {width}×{height} is too small to show a face")
            image.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale
            image = ImageOps.exif_transpose(image).convert("RGB")
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    except PhotoError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):  # fmt: skip
        raise PhotoError("photo: not a picture this service can read (JPEG or PNG)") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt image data
        raise PhotoError(f"photo: the picture is damaged ({e})") from None
    out = io.BytesIO()
    image.save(out, "JPEG", quality=QUALITY, optimize=True)  # no EXIF: none is passed on
    return out.getvalue()


def shrink(jpeg: bytes, max_bytes: int) -> bytes:
    """``jpeg`` made no larger than ``max_bytes``, scaled down a step at a time and encoded
    again (a camera picture sent to an office that bounds their size); PhotoError when even
    the smallest picture worth showing does not fit, or it cannot be read."""
    try:
        image = Image.open(io.BytesIO(jpeg))
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise PhotoError(f"snapshot: the picture cannot be read ({e})") from None
    image = image.convert("RGB")
    side = max(image.size)
    while side >= MIN_SIDE:
        side = side * 3 // 4
        small = image.copy()
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        small.save(out, "JPEG", quality=QUALITY, optimize=True)
        if out.tell() <= max_bytes:
            return out.getvalue()
    raise PhotoError(f"snapshot: no picture worth showing fits in {max_bytes} bytes")


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class PhotoStore:
    """Photos on disk by their SHA-256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        if not SHA256.match(sha):
            raise PhotoError(f"photo: {sha!r} is not a photo's SHA-256")
        return self.root / sha[:2] / f"{sha}.jpg"

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def put(self, data: bytes) -> str:
        """Keep an uploaded picture (normalised); its SHA-256."""
        jpeg = normalise(data)
        sha = digest(jpeg)
        self._write(sha, jpeg)
        return sha

    def put_exact(self, sha: str, jpeg: bytes) -> None:
        """Keep a photo pulled from the office as it came, once it proves to be ``sha``."""
        if digest(jpeg) != sha:
            raise PhotoError(f"photo: the bytes received are not photo {sha}")
        self._write(sha, jpeg)

    def _write(self, sha: str, jpeg: bytes) -> None:
        target = self.path(sha)
        if target.is_file():
            return
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = target.with_name(f".{sha}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(jpeg)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)  # whole or not at all, even if the power goes
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def store_for(data_dir: Path) -> PhotoStore:
    return PhotoStore(data_dir / "photos")
