"""A gate's backup restores a working node on a new machine: one archive with the database,
the keys and the photos, checked whole before anything is touched (real processes)."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
import time
from pathlib import Path

from PIL import Image

from edge.privacy import IdHasher
from sync.qr import Signer, pass_payload
from tests.helpers import Node, cli, free_port, http_call
from tests.test_qr_rules import _record

ID_NUMBER = "110101199003071234"
CARD = "0040856634"


def _config(etc: Path, port: int, key: str) -> Path:
    """A node's config whose paths are relative to it, as on an installed machine."""
    etc.mkdir(parents=True)
    conf = etc / "gatehouse.toml"
    conf.write_text(
        f'[node]\nid = "gate-east"\ndata_dir = "state"\n[api]\nlisten = "127.0.0.1:{port}"\n'
        f'[[gates]]\nid = "main"\n[qr]\noffice_public_keys = ["{key}"]\n'
    )
    return conf


def _photo(path: Path) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", (320, 400), (200, 120, 80)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())
    return path


def test_a_backup_restored_on_a_new_machine_gives_a_working_node(tmp_path: Path):
    office_key = Signer.create(tmp_path / "office")
    port = free_port()
    old = _config(tmp_path / "old" / "etc", port, office_key.public_b64)
    issued = cli(old, "--json", "pass", "add", "--kind", "resident", "--card", CARD, "--name",
                 "张三", "--unit", "1-1-101", "--id-number", ID_NUMBER, "--photo",
                 str(_photo(tmp_path / "face.jpg")))  # fmt: skip
    shown = json.loads(issued.stdout)
    guard = cli(old, "user", "add", "老张", "--role", "guard").stdout.strip()
    node = Node(old, port).start(wait_ready=True)
    archive = tmp_path / "backups" / "gate-east.tar"
    archive.parent.mkdir()
    try:  # online, under the running service
        made = cli(old, "--json", "backup", str(archive))
        assert made.returncode == 0, made.stderr
        status, photo = _get(port, f"/api/v1/passes/{shown['id']}/photo", guard)
        assert status == 200
    finally:
        node.stop()
    assert archive.stat().st_mode & 0o777 == 0o600
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert {"edge.db", "keys/id_hash.key", "gatehouse-edge-backup.json"} <= set(names)
    assert any(n.startswith("photos/") for n in names)

    # a damaged archive: refused before anything is touched, one line, exit 2
    broken = tmp_path / "broken.tar"
    data = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("photos/"))
    data[member.offset_data + 100] ^= 0xFF
    broken.write_bytes(bytes(data))
    new = _config(tmp_path / "new" / "etc", port, office_key.public_b64)
    refused = cli(new, "restore", str(broken), check=False)
    assert refused.returncode == 2 and "is damaged" in refused.stderr, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (new.parent / "state" / "edge.db").exists()

    # the new machine: another path, an empty data_dir
    restored = cli(new, "restore", str(archive))
    assert restored.returncode == 0 and "ID-number key restored" in restored.stdout
    state = new.parent / "state"
    assert (state / "keys" / "id_hash.key").read_bytes() == (
        old.parent / "state" / "keys" / "id_hash.key"
    ).read_bytes()
    with sqlite3.connect(state / "edge.db") as db:
        (stored,) = db.execute("SELECT id_hash FROM passes WHERE id = ?", (shown["id"],)).fetchone()
    assert IdHasher.from_data_dir(state).digest(ID_NUMBER)[0] == stored  # ID numbers match
    assert cli(new, "check", CARD).returncode == 0  # the resident still opens

    node = Node(new, port).start(wait_ready=True)
    try:
        assert _get(port, f"/api/v1/passes/{shown['id']}/photo", guard) == (status, photo)
        now = time.time()
        code = office_key.sign(pass_payload(_record("temporary", now - 60, now + 3600)))
        status, said = http_call(f"http://127.0.0.1:{port}", "POST", "/api/v1/check", guard,
                                 {"qr": code})  # fmt: skip
        assert status == 200 and said["decision"] == "grant", said  # the office's QR codes too
    finally:
        node.stop()

    # a restore over a node with another ID-number key: refused unless asked
    other = _config(tmp_path / "other" / "etc", port, office_key.public_b64)
    IdHasher.from_data_dir(other.parent / "state")  # a key of its own
    refused = cli(other, "restore", str(archive), check=False)
    assert refused.returncode == 2 and "--replace-key" in refused.stderr
    assert cli(other, "restore", str(archive), "--replace-key").returncode == 0
    kept = sorted(p.name for p in (other.parent / "state" / "keys").iterdir())
    assert kept[0] == "id_hash.key" and kept[1].startswith("id_hash.key.replaced-")


def test_an_older_backup_of_the_database_alone_is_still_restored(tmp_path: Path):
    conf = _config(tmp_path / "etc", free_port(), Signer.create(tmp_path / "o").public_b64)
    cli(conf, "pass", "add", "--kind", "resident", "--card", CARD, "--name", "张三")
    bare = tmp_path / "bare.db"
    with sqlite3.connect(conf.parent / "state" / "edge.db") as src, sqlite3.connect(bare) as dst:
        src.backup(dst)
    (conf.parent / "state" / "edge.db").unlink()
    out = cli(conf, "restore", str(bare))
    assert out.returncode == 0 and "holds no ID-number key" in out.stdout, out.stderr
    assert cli(conf, "check", CARD).returncode == 0


def _get(port: int, path: str, token: str) -> tuple[int, bytes]:
    import urllib.request

    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.read()
