"""Holders' photos as data: what an upload becomes, how it is kept, and the routes that take
and serve it (a real writer on a real SQLite; the office's side is in test_console)."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from edge import photos
from edge.api import create_app
from edge.photos import PhotoError, PhotoStore, normalise
from edge.service import Service
from tests.helpers import bearer, cli, in_process, node_for

GPS_IFD = 0x8825
ORIENTATION = 0x0112


def picture(width: int, height: int, fmt: str = "JPEG", **save: object) -> bytes:
    image = Image.new("RGB", (width, height), (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, width // 2, height // 2))  # which corner is which
    out = io.BytesIO()
    image.save(out, fmt, **save)
    return out.getvalue()


def test_a_phone_photo_is_turned_upright_scaled_and_stripped_of_its_metadata():
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # the phone was held upright: the pixels lie on their side
    exif[0x010F] = "PhoneMaker"
    exif.get_ifd(GPS_IFD)[2] = (31.0, 14.0, 0.0)  # where the picture was taken
    kept = normalise(picture(2000, 1500, exif=exif.tobytes()))
    image = Image.open(io.BytesIO(kept))
    assert image.format == "JPEG"
    assert image.size == (480, 640)  # upright, and no side longer than 640
    assert not image.getexif()  # neither the maker nor the place is passed on
    # and a photo already small enough is not enlarged
    assert Image.open(io.BytesIO(normalise(picture(120, 160, "PNG")))).size == (120, 160)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"hello, this is not a picture", "not a picture"),
        (picture(300, 300)[:600], "damaged"),
        (picture(300, 300, "GIF"), "GIF is not accepted"),
        (picture(40, 300), "too small"),
        (b"\xff" * (photos.MAX_UPLOAD + 1), "allowed"),
    ],
)
def test_what_is_not_a_usable_photo_is_refused_saying_why(data: bytes, problem: str):
    with pytest.raises(PhotoError, match=problem):
        normalise(data)


def test_a_decompression_bomb_is_refused_before_it_is_decoded():
    bomb = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(bomb, "PNG")  # 50 Mpx in a few KB
    assert len(bomb.getvalue()) < 100_000
    with pytest.raises(PhotoError, match="too large"):
        normalise(bomb.getvalue())


def test_photos_are_kept_by_content_private_and_whole(tmp_path: Path):
    store = PhotoStore(tmp_path / "photos")
    sha = store.put(picture(300, 400))
    again = store.put(picture(300, 400))
    assert sha == again and photos.SHA256.match(sha)
    path = store.path(sha)
    assert path == tmp_path / "photos" / sha[:2] / f"{sha}.jpg"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert photos.digest(path.read_bytes()) == sha
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind

    other = PhotoStore(tmp_path / "gate")
    with pytest.raises(PhotoError, match="not photo"):
        other.put_exact(sha, path.read_bytes() + b"x")  # altered on the way
    assert not other.has(sha)
    other.put_exact(sha, path.read_bytes())
    assert other.path(sha).read_bytes() == path.read_bytes()
    with pytest.raises(PhotoError):
        store.path("../../etc/passwd")


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Service]:
    with in_process(tmp_path) as s:
        yield s


def test_an_admin_uploads_a_photo_a_pass_names_it_and_a_guard_sees_it(svc: Service):
    client = TestClient(create_app(svc))
    admin = bearer(svc, "王主任", "admin")
    guard = bearer(svc, "老张", "guard")
    jpeg = {"Content-Type": "image/jpeg"}

    # nobody without a token gets their body read; nobody gets more than the limit read
    assert client.post("/api/v1/photos", content=b"x" * 1000, headers=jpeg).status_code == 401
    big = b"\xff" * (photos.MAX_UPLOAD + 10)
    too_big = client.post("/api/v1/photos", content=big, headers=admin | jpeg)
    assert too_big.status_code == 413  # in JSON like every refusal, in Chinese too
    assert too_big.json() == {
        "detail": f"the body is more than the {photos.MAX_UPLOAD} bytes accepted",
        "detail_zh": f"上传内容超过了允许的 {photos.MAX_UPLOAD} 字节"}  # fmt: skip
    # sent in chunks with no length said: cut off where it passes the limit, the same answer
    chunked = client.post("/api/v1/photos", content=iter([big[:50_000]] * (len(big) // 50_000 + 1)),
                          headers=admin | jpeg)  # fmt: skip
    assert chunked.status_code == 413 and chunked.json() == too_big.json()
    assert client.post("/api/v1/photos", content=b"x", headers=guard | jpeg).status_code == 403
    refused = client.post("/api/v1/photos", content=picture(200, 200, "GIF"), headers=admin)
    assert refused.status_code == 422 and "GIF" in refused.json()["detail"]
    assert refused.json()["detail_zh"].startswith("照片：")  # what the console shows

    r = client.post("/api/v1/photos", content=picture(800, 1000), headers=admin | jpeg)
    assert r.status_code == 201, r.text
    sha = r.json()["photo"]
    body = {"kind": "resident", "card": "01026F6C3A", "name": "张三丰", "unit": "3-1-502"}
    missing = client.post("/api/v1/passes", json=body | {"photo": "0" * 64}, headers=admin)
    assert missing.status_code == 404 and "upload it first" in missing.json()["detail"]
    issued = client.post("/api/v1/passes", json=body | {"photo": sha}, headers=admin)
    assert issued.status_code == 201, issued.text
    url = issued.json()["photo_url"]
    shown = client.get(url, headers=guard)
    assert shown.status_code == 200 and photos.digest(shown.content) == sha
    assert Image.open(io.BytesIO(shown.content)).size == (512, 640)
    entries = svc.read(lambda c: c.execute("SELECT action, subject FROM audit_log").fetchall())
    assert ("photo:upload", sha) in [tuple(e) for e in entries]


def test_pass_add_refuses_a_photo_file_that_is_not_there(tmp_path: Path):
    node = node_for(tmp_path, [])
    nowhere = str(tmp_path / "nowhere.jpg")
    out = cli(node.config, "pass", "add", "--kind", "resident", "--card", "01026F6C3A",
              "--name", "张三丰", "--photo", nowhere, check=False)  # fmt: skip
    assert out.returncode != 0
    assert "photo:" in out.stderr and "nowhere.jpg" in out.stderr
    listed = cli(node.config, "--json", "pass", "list")
    assert "01026F6C3A" not in listed.stdout and "张" not in listed.stdout
