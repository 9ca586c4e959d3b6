"""QR passes at the gate: the signature before anything is read, only temporary passes no
longer than the kind's limit, a bounded number of entries a day, no code while the gate's
clock is behind the office's; and the office's signing key, made once and carried by the
office backup (sync.qr, edge.backup)."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import tarfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from edge.errors import DomainError
from edge.messages import zh
from edge.passes import TEMPORARY_MAX
from edge.privacy import IdHasher
from sync import qr
from sync.qr import QR_ENTRIES_PER_DAY, Signer, pass_payload
from tests.helpers import Broker, Listener, Office, Pty, add_sync, cli, node_for, wait_for
from tests.test_desk_e2e import call
from tests.test_sync import SLIP

TZ = ZoneInfo("Asia/Shanghai")
HOUR = 3600.0
VISITOR = {"kind": "temporary", "card": "0040856634", "name": "访客乙"}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _record(kind: str, start: float, end: float | None, pass_id: str = "P-T1") -> dict[str, Any]:
    return {"id": pass_id, "kind": kind, "name": "访客乙", "unit": "7-3-1201",
            "valid_from": start, "valid_until": end, "gates": None, "daily_window": None,
            "version": 1}  # fmt: skip


# -- the signature first (pure) ----------------------------------------------------------


def test_a_bad_signature_over_a_body_that_is_not_json_is_a_forgery_not_damage(tmp_path: Path):
    signer = Signer.create(tmp_path)
    code = f"{qr.PREFIX}{_b64(b'{{{ not json at all')}.{_b64(os.urandom(64))}"
    with pytest.raises(DomainError) as e:
        qr.verify(code, [signer.public_b64])
    assert "forged" in str(e.value) and "damaged" not in str(e.value)


def test_a_body_the_office_signed_is_parsed_only_after_it_verifies(tmp_path: Path):
    signer = Signer.create(tmp_path)
    body = b"not json, but signed"
    with pytest.raises(DomainError, match="damaged"):  # signed by a held key: damaged, not forged
        qr.verify(f"{qr.PREFIX}{_b64(body)}.{_b64(signer.key.sign(body))}", [signer.public_b64])
    # the key id inside must be the key that verified it
    other = Signer.create(tmp_path / "other")
    named = json.dumps({"p": "x", "kid": other.kid}, separators=(",", ":")).encode()
    code = f"{qr.PREFIX}{_b64(named)}.{_b64(signer.key.sign(named))}"
    with pytest.raises(DomainError, match="not the key that signed it"):
        qr.verify(code, [signer.public_b64, other.public_b64])
    # a key the gate does not hold is told apart from a forgery; both keys held: it verifies
    code = other.sign(pass_payload(_record("temporary", 1.8e9, 1.8e9 + HOUR)))
    with pytest.raises(DomainError, match="key this gate does not hold"):
        qr.verify(code, [signer.public_b64])
    assert qr.verify(code, [signer.public_b64, other.public_b64])["kid"] == other.kid
    # the printed format is unchanged: a code signed as before still verifies
    assert code.startswith("GH1.") and code.count(".") == 2


def test_a_pass_code_is_taken_only_for_a_temporary_pass_within_the_kind_s_limit():
    start, limit = 1.8e9, TEMPORARY_MAX.total_seconds()
    qr.check_pass(pass_payload(_record("temporary", start, start + limit)))  # exactly 72 h: ok
    refused = {
        "kind": [_record("worker", start, start + HOUR), _record("resident", start, None)],
        "period": [_record("temporary", start, start + limit + 1),
                   _record("temporary", start, None)],
    }  # fmt: skip
    for what, records in refused.items():
        for r in records:
            with pytest.raises(qr.QrRefused) as e:
                qr.check_pass(pass_payload(r))
            assert e.value.what == what and zh(str(e.value)), str(e.value)


def test_the_gate_s_clock_may_be_a_minute_behind_the_office_s_and_no_more():
    qr.check_clock(1000.0, None)  # never pulled: nothing to compare with
    qr.check_clock(1000.0 - qr.CLOCK_TOLERANCE_S, 1000.0)
    with pytest.raises(qr.QrRefused) as e:
        qr.check_clock(1000.0 - qr.CLOCK_TOLERANCE_S - 1, 1000.0)
    assert e.value.what == "clock_behind" and "behind the office" in str(e.value)
    assert "时钟" in (zh(str(e.value)) or "")


def test_entries_are_counted_per_local_day():
    payload = pass_payload(_record("temporary", 1.8e9, 1.8e9 + HOUR))
    allowed = QR_ENTRIES_PER_DAY["temporary"]
    qr.check_entries(payload, allowed - 1, "main")
    with pytest.raises(qr.QrRefused, match=f"its {allowed} entries today at gate main"):
        qr.check_entries(payload, allowed, "main")
    start, end = qr.day_bounds(1_800_000_000.0, TZ)  # 2027-01-15 16:00 +08:00
    assert end - start == 86400 and start <= 1_800_000_000.0 < end
    assert time.strftime("%H:%M", time.gmtime(start + 8 * HOUR)) == "00:00"


# -- at a running gate, with a real office ---------------------------------------------------


def _gate(tmp_path: Path, broker: Broker, office: Office) -> tuple[Any, Pty, str]:
    scanner = Pty()
    (tmp_path / "gate").mkdir()
    node = node_for(tmp_path / "gate", [{"id": "scan", "gate": "main", "port": scanner.path,
                                         "protocol": "line"}], broker.port)  # fmt: skip
    key = office.token("office", "key")
    with node.config.open("a") as f:
        f.write(f'[qr]\noffice_public_keys = ["{key}"]\n')
    add_sync(node, office, office.token("office", "node", "add", "gate-test"))
    guard = cli(node.config, "user", "add", "老张", "--role", "guard").stdout.strip()
    return node, scanner, guard


def _scan(scanner: Pty, listener: Listener, code: str) -> dict[str, Any]:
    scanner.write(code.encode() + b"\r\n")
    return listener.next("/gate/main/decision")  # type: ignore[no-any-return]


def _scan_refused(
    scanner: Pty, listener: Listener, code: str, what: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A code the gate refuses by a rule: its recorded denial (invalid_qr) and what it said
    on ``gate/main/scan`` (the rule, and why, in Chinese too), whichever comes first."""
    scanner.write(code.encode() + b"\r\n")
    got: dict[str, Any] = {}
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        topic, body = listener.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        for suffix in ("/gate/main/decision", "/gate/main/scan"):
            if topic.endswith(suffix):
                got[suffix] = body
    decision, said = got["/gate/main/decision"], got["/gate/main/scan"]
    assert (decision["decision"], decision["reason"]) == ("deny", "invalid_qr"), decision
    assert said["kind"] == "qr" and said["refused"] == what and said["detail_zh"], said
    return decision, said


def test_a_gate_takes_by_qr_only_temporary_passes_within_limits_and_their_entries(
    tmp_path: Path, broker: Broker, listener: Listener, pg_url: str
):
    office = Office(tmp_path / "office", pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    node, scanner, guard = _gate(tmp_path, broker, office)
    office.start()
    node.start()
    try:
        status, p = office.call("POST", "/api/v1/passes", clerk, VISITOR)
        assert status == 201
        # pulled: the gate knows the office's newest change time, and its clock is right
        wait_for(lambda: node.ready()[1].get("sync", {}).get("pull_cursor", 0) > 0, 15,
                 "the first pull")  # fmt: skip

        # a worker's or a resident's pass, signed with the office's real key: refused
        signer = Signer.from_data_dir(office.data_dir)
        now = time.time()
        for kind in ("worker", "resident"):
            code = signer.sign(pass_payload(_record(kind, now - HOUR, now + 30 * 86400, kind)))
            _, said = _scan_refused(scanner, listener, code, "kind")
            assert "temporary" in said["detail"]
            status, body = call(node, "POST", "/api/v1/check", guard, {"qr": code})
            assert status == 422 and "only a temporary pass" in body["detail"], body
            assert "临时出入证" in body["detail_zh"]

        # a temporary pass longer than the kind's limit, signed by the office's key: refused
        code = signer.sign(pass_payload(_record("temporary", now - HOUR, now + 95 * HOUR, "L")))
        _, said = _scan_refused(scanner, listener, code, "period")
        assert "at most 72 hours" in said["detail"]
        status, body = call(node, "POST", "/api/v1/check", guard, {"qr": code})
        assert status == 422 and "at most 72 hours" in body["detail"]

        # a forged code whose body is not JSON: invalid_qr, as a forgery, not as damage
        forged = f"{qr.PREFIX}{_b64(b'<<not json>>')}.{_b64(os.urandom(64))}"
        assert _scan(scanner, listener, forged)["reason"] == "invalid_qr"
        _, body = call(node, "POST", "/api/v1/check", guard, {"qr": forged})
        assert body["reason"] == "invalid_qr" and "forged" in body["detail"]

        # the office's own temporary code: its entries today at this gate, then refused
        allowed = QR_ENTRIES_PER_DAY["temporary"]
        for _ in range(allowed):
            got = _scan(scanner, listener, p["qr"])
            assert (got["decision"], got["pass_id"]) == ("grant", p["id"]), got
        _, said = _scan_refused(scanner, listener, p["qr"], "entries")
        assert f"its {allowed} entries today" in said["detail"]
        status, body = call(node, "POST", "/api/v1/check", guard, {"qr": p["qr"]})
        assert status == 422 and "entries today" in body["detail"] and body["detail_zh"]
        _, events = call(node, "GET", "/api/v1/events?decision=grant&limit=50", guard)
        assert sum(e["pass_id"] == p["id"] for e in events["items"]) == allowed
        counts = node.ready()[1]["counts"]
        assert counts["refused:qr:kind"] == 2 + 2  # two scans, two checks
        assert counts["refused:qr:entries"] == 2 and counts["refused:qr:period"] == 2
    finally:
        node.stop()
        office.stop()
        scanner.close()


def test_a_gate_whose_clock_is_behind_the_office_s_takes_no_qr_code(
    tmp_path: Path, broker: Broker, listener: Listener, pg_url: str
):
    office = Office(tmp_path / "office", pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    node, scanner, guard = _gate(tmp_path, broker, office)
    office.start()
    try:
        _, p = office.call("POST", "/api/v1/passes", clerk, VISITOR)
        _, slip = office.call("POST", "/api/v1/slips", clerk, SLIP)
        # the gate has pulled a change the office made an hour after this machine's now
        db = sqlite3.connect(tmp_path / "gate" / "var" / "edge.db")  # the service stopped
        with db:
            db.execute("INSERT OR REPLACE INTO node_meta VALUES ('pull_newest_at', ?)",
                       (repr(time.time() + HOUR),))  # fmt: skip
        db.close()
        node.start()

        _, said = _scan_refused(scanner, listener, p["qr"], "clock_behind")
        assert "clock" in said["detail"] and "时钟" in said["detail_zh"]
        status, body = call(node, "POST", "/api/v1/check", guard, {"qr": p["qr"]})
        assert status == 422 and "behind the office" in body["detail"], body
        assert "校准" in body["detail_zh"]
        # a slip's code too: not shown, not released on the strength of a wrong clock
        scanner.write(slip["qr"].encode() + b"\r\n")
        said = listener.next("/gate/main/scan")
        assert said["refused"] == "clock_behind" and "number" not in said, said
        status, body = call(node, "POST", f"/api/v1/slips/{slip['number']}/release", guard,
                            {"qr": slip["qr"]})  # fmt: skip
        assert status == 422 and "behind the office" in body["detail"]
        assert call(node, "POST", "/api/v1/check", guard, {"qr": slip["qr"]})[0] == 422
        assert node.ready()[1]["counts"]["refused:qr:clock_behind"] == 5
        assert "QR refused at gate main" in node.log.read_text()
    finally:
        node.stop()
        office.stop()
        scanner.close()


# -- the office's signing key -------------------------------------------------------------


def _office_config(path: Path, pg_url: str, data_dir: Path) -> Path:
    path.write_text(f'[office]\ndatabase_url = "{pg_url}"\nlisten = "127.0.0.1:1"\n'
                    f'data_dir = "{data_dir}"\n')  # fmt: skip
    return path


def test_an_office_without_its_key_says_which_command_makes_one(tmp_path: Path, pg_url: str):
    config = _office_config(tmp_path / "office.toml", pg_url, tmp_path / "data")
    for argv in (["office"], ["office", "key"]):
        out = cli(config, *argv, check=False)
        assert out.returncode == 2, (argv, out.stderr)
        assert "gatehouse office key init" in out.stderr and len(out.stderr.splitlines()) == 1
        assert "Traceback" not in out.stderr
    made = cli(config, "office", "key", "init", check=False)
    assert made.returncode == 0 and made.stdout.strip()
    key = tmp_path / "data" / "keys" / "office_ed25519.key"
    assert key.stat().st_mode & 0o777 == 0o600
    assert cli(config, "office", "key").stdout == made.stdout  # the same key, printed
    again = cli(config, "office", "key", "init", check=False)
    assert again.returncode == 2 and "exists already" in again.stderr
    assert cli(config, "office", "key").stdout == made.stdout  # never replaced


def test_the_office_backup_carries_its_key_and_a_restore_brings_it_back(
    tmp_path: Path, pg_url: str
):
    office = Office(tmp_path / "office", pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    public = office.token("office", "key")
    id_key = IdHasher.from_data_dir(office.data_dir)  # as the serving office makes it
    backup = tmp_path / "office.backup"
    assert "signing key" in office.token("backup", str(backup))
    assert backup.stat().st_mode & 0o777 == 0o600  # it holds a private key
    with tarfile.open(backup) as tar:
        assert {"gatehouse-office-backup.json", "office.dump", "office_ed25519.key"} <= set(
            tar.getnames()
        )

    # a new machine: an empty data_dir, the same database server
    fresh = _office_config(tmp_path / "fresh.toml", pg_url, tmp_path / "fresh")
    assert cli(fresh, "office", "key", check=False).returncode == 2
    out = cli(fresh, "restore", str(backup))
    assert out.returncode == 0 and "signing key" in out.stdout, out.stderr
    assert cli(fresh, "office", "key").stdout.strip() == public
    key = tmp_path / "fresh" / "keys" / "office_ed25519.key"
    assert key.stat().st_mode & 0o777 == 0o600
    # the ID-number key came back with it: the restored ID hashes still match
    again = IdHasher.from_data_dir(tmp_path / "fresh")
    assert again.digest("110101199003071234") == id_key.digest("110101199003071234")
    assert cli(fresh, "restore", str(backup)).returncode == 0  # the same key there: fine

    # a data_dir with a different key: refused, nothing touched, unless told
    other = _office_config(tmp_path / "other.toml", pg_url, tmp_path / "other")
    theirs = cli(other, "office", "key", "init").stdout.strip()
    refused = cli(other, "restore", str(backup), check=False)
    assert refused.returncode == 2 and "--replace-key" in refused.stderr
    assert cli(other, "office", "key").stdout.strip() == theirs
    assert cli(other, "restore", "--replace-key", str(backup)).returncode == 0
    assert cli(other, "office", "key").stdout.strip() == public
    kept = list((tmp_path / "other" / "keys").glob("office_ed25519.key.*"))
    assert len(kept) == 1  # the key it replaced, kept beside it

    # and the restored office serves, signing with the same key
    office.config.write_text(office.config.read_text().replace(
        str(office.data_dir), str(tmp_path / "fresh")))  # fmt: skip
    office.start()
    try:
        _, p = office.call("POST", "/api/v1/passes", clerk, VISITOR)
        assert qr.verify(p["qr"], [public])["p"] == p["id"]
    finally:
        office.stop()


def test_an_office_never_makes_its_id_number_key_by_itself(tmp_path: Path, pg_url: str):
    """A wrong data_dir must not silently get a new key (every ID number the office holds
    would stop matching): the office refuses to start; `office key init` makes it, and for
    an office from before, makes that key alone beside its signing key."""
    conf = _office_config(tmp_path / "office.toml", pg_url, tmp_path / "office")
    made = json.loads(cli(conf, "--json", "office", "key", "init").stdout)
    assert made["created"] and made["id_key_created"]
    id_key = tmp_path / "office" / "keys" / "id_hash.key"
    before = id_key.read_bytes()
    again = cli(conf, "office", "key", "init", check=False)
    assert again.returncode == 2 and "exists already" in again.stderr
    id_key.unlink()  # an office from before `key init` made it, moved without it
    refused = cli(conf, "office", check=False)
    assert refused.returncode == 2 and "no ID-number key" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not id_key.exists()
    made = json.loads(cli(conf, "--json", "office", "key", "init").stdout)
    assert made["id_key_created"] and id_key.read_bytes() != before
