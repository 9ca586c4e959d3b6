"""Attacks on what a pass gives away: a photo route that served any file the service could
read (finding 10), and a printed QR code that carried the card's number and the holder's
whole name (finding 15)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image

from edge.api import create_app
from edge.privacy import IdHasher
from sync.qr import Signer, pass_payload
from tests.helpers import bearer, cli, in_process, node_for


def test_the_photo_route_serves_pictures_and_nothing_else(tmp_path: Path):
    with in_process(tmp_path) as svc:
        client = TestClient(create_app(svc))
        admin, guard = bearer(svc, "王主任", "admin"), bearer(svc, "老张", "guard")
        IdHasher.from_data_dir(svc.cfg.data_dir)
        key = svc.cfg.data_dir / "keys" / "id_hash.key"
        picture = tmp_path / "old.png"
        Image.new("RGB", (200, 300), (10, 120, 200)).save(picture)
        ids = {}
        for card, path in (("01026F6C3A", key), ("0040856635", picture)):
            body = {"kind": "resident", "card": card, "name": "张三丰", "unit": "3-1-502"}
            pass_id = client.post("/api/v1/passes", json=body, headers=admin).json()["id"]
            # a pass from before photos were data: the CLI kept whatever path it was given
            svc.write(lambda c, p=path, i=pass_id: c.execute(
                "UPDATE passes SET photo_path = ? WHERE id = ?", (str(p), i)))  # fmt: skip
            ids[path] = pass_id
        refused = client.get(f"/api/v1/passes/{ids[key]}/photo", headers=guard)
        assert refused.status_code == 404
        assert key.read_text().strip() not in refused.text
        served = client.get(f"/api/v1/passes/{ids[picture]}/photo", headers=guard)
        assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(served.content)).size == (200, 300)

    # and the CLI no longer takes a path that is not a picture
    (tmp_path / "n").mkdir()
    node = node_for(tmp_path / "n", [])
    out = cli(node.config, "pass", "add", "--kind", "resident", "--card", "01026F6C3A",
              "--name", "张三丰", "--photo", str(key), check=False)  # fmt: skip
    assert out.returncode != 0 and "not a picture" in out.stderr


def test_a_printed_pass_s_code_carries_no_card_number_and_no_whole_name(tmp_path: Path):
    signer = Signer.create(tmp_path)
    record = {
        "id": "p1", "kind": "temporary", "card_key": 0x026F6C3A, "name": "访客乙",
        "unit": "7-3-1201", "valid_from": 1_800_000_000.0, "valid_until": 1_800_200_000.0,
        "gates": None, "daily_window": None, "version": 1,
    }  # fmt: skip
    code = signer.sign(pass_payload(record))
    payload = json.loads(base64.urlsafe_b64decode(code.split(".")[1] + "=="))
    assert "c" not in payload
    text = json.dumps(payload, ensure_ascii=False)
    for card in ("026F6C3A", "26F6C3A", "40856634", "0040856634"):
        assert card not in text.upper()
    assert "访客乙" not in text and payload["n"] == "访**"


def test_a_guard_walking_card_numbers_is_slowed_audited_and_reported(tmp_path: Path):
    """Finding 5: a masked card hides 16 bits; typed in a run, /check walked them and
    answered the holder's name in 19 s, and nobody knew."""
    with in_process(tmp_path) as svc:
        client = TestClient(create_app(svc))
        admin, guard = bearer(svc, "王主任", "admin"), bearer(svc, "老张", "guard")
        body = {"kind": "resident", "card": "0040856634", "name": "张三丰", "unit": "3-1-502"}
        assert client.post("/api/v1/passes", json=body, headers=admin).status_code == 201
        answers = [
            client.post("/api/v1/check", json={"card": f"{0x026F0000 + i:08X}"}, headers=guard)
            for i in range(40)
        ]
        codes = [a.status_code for a in answers]
        assert codes[:30] == [200] * 30 and set(codes[30:]) == {429}
        audited = svc.read(lambda c: c.execute(
            "SELECT subject FROM audit_log WHERE action = 'lookup:card' AND by = '老张'"
        ).fetchall())  # fmt: skip
        assert len(audited) == 30
        assert all(s[0].startswith("****") for s in audited)  # masked in the audit log too
        raised = svc.read(
            lambda c: c.execute(
                "SELECT source, count FROM alarms WHERE type = 'lookup_enumeration'"
            ).fetchall()
        )
        assert [tuple(r) for r in raised] == [("user:老张", 1)]  # once, for the control room

        # a slip number typed is a lookup by hand as well
        other = bearer(svc, "小王", "guard")
        for n in range(10):
            r = client.get(f"/api/v1/slips/FX-2026-{n:05d}", headers=other)
            assert r.status_code == 404
        raised = svc.read(
            lambda c: c.execute(
                "SELECT source FROM alarms WHERE type = 'lookup_enumeration'"
            ).fetchall()
        )
        assert ("user:小王",) in [tuple(r) for r in raised]
