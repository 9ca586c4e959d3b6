"""`make install` from the source tree into a scratch root (DESTDIR), as an estate's IT
person runs it without DESTDIR: the files and their modes, a venv with the service and no
test tools, the units as systemd reads them (verify; an exposure of 3.0 or less), the
user and directories that sysusers.d and tmpfiles.d make, and the installed configs as the
installed code reads them, secrets from credentials/ included."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import ConfigError, load, load_office

ROOT = Path(__file__).parent.parent
VENV = "opt/gatehouse/.venv"
UNITS = ("gatehouse-edge.service", "gatehouse-office.service")
TEST_TOOLS = ("pytest", "ruff", "playwright", "schemathesis", "hypothesis")


def _python() -> str:
    """Debian's interpreter, the service's (the Makefile's default), when it can make a venv."""
    system = "/usr/bin/python3"
    probe = [system, "-c", "import ensurepip, venv"]
    if Path(system).exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return system
    return sys.executable


def _install(dest: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["make", "-s", "install", f"DESTDIR={dest}", f"INSTALL_PYTHON={_python()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("destdir")
    done = _install(root)
    assert "laid out under" in done.stdout
    return root


def _mode(p: Path) -> int:
    return p.stat().st_mode & 0o7777


def test_layout_and_modes(dest: Path) -> None:
    etc = dest / "etc/gatehouse"
    expected = {
        etc: 0o750,
        etc / "credentials": 0o750,
        etc / "credentials/sync-token": 0o640,
        etc / "credentials/mqtt-password": 0o640,
        etc / "credentials/notify-duty": 0o640,
        etc / "credentials/notify-director": 0o640,
        etc / "gatehouse.toml": 0o640,
        etc / "office.toml": 0o640,
        dest / "etc/mosquitto/conf.d/gatehouse.conf": 0o644,
        dest / "usr/lib/systemd/system/gatehouse-edge.service": 0o644,
        dest / "usr/lib/systemd/system/gatehouse-office.service": 0o644,
        dest / "usr/lib/sysusers.d/gatehouse.conf": 0o644,
        dest / "usr/lib/tmpfiles.d/gatehouse.conf": 0o644,
        dest / "usr/bin/gatehouse": 0o755,
        dest / "usr/bin/gatehouse-office": 0o755,
    }
    for path, mode in expected.items():
        assert path.exists(), path
        assert _mode(path) == mode, f"{path}: {oct(_mode(path))}, wanted {oct(mode)}"
    # empty until the IT person puts the secret in: LoadCredential= needs the file to exist
    assert (etc / "credentials/sync-token").read_bytes() == b""
    # the package's files are the source tree's, byte for byte
    for src, dst in [
        ("systemd/gatehouse-edge.service", "usr/lib/systemd/system/gatehouse-edge.service"),
        ("systemd/gatehouse-office.service", "usr/lib/systemd/system/gatehouse-office.service"),
        ("systemd/gatehouse.sysusers", "usr/lib/sysusers.d/gatehouse.conf"),
        ("systemd/gatehouse.tmpfiles", "usr/lib/tmpfiles.d/gatehouse.conf"),
        ("config/mosquitto/gatehouse.conf", "etc/mosquitto/conf.d/gatehouse.conf"),
    ]:
        assert (dest / dst).read_bytes() == (ROOT / src).read_bytes(), dst


def test_venv_holds_the_service_and_no_test_tools(dest: Path) -> None:
    python = dest / VENV / "bin/python"
    assert (dest / VENV / "bin/gatehouse").exists()
    probe = (
        "import importlib.util as u, json, sys; "
        "print(json.dumps({m: u.find_spec(m) is not None for m in sys.argv[1:]}))"
    )
    done = subprocess.run(
        [str(python), "-I", "-c", probe, "edge.cli", "sync.office", "cv2", *TEST_TOOLS],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    found = json.loads(done.stdout)
    assert found["edge.cli"] and found["sync.office"] and found["cv2"]
    assert not [m for m in TEST_TOOLS if found[m]], found
    # a plain install, not an editable one pointing back at the source tree (-I: the
    # current folder, the source tree here, is not on the path)
    site = subprocess.run(
        [str(python), "-I", "-c", "import edge; print(edge.__file__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert site.startswith(str(dest / VENV)), site
    # the wheel carries what an installation needs beside the code
    share = dest / VENV / "share/gatehouse"
    for name in [
        "config/gatehouse.example.toml",
        "config/office.example.toml",
        "mosquitto/gatehouse.conf",
        "mosquitto/auth.conf",
        "mosquitto/gatehouse.acl",
        "systemd/gatehouse-edge.service",
        "systemd/gatehouse-office.service",
        "systemd/gatehouse.sysusers",
        "systemd/gatehouse.tmpfiles",
    ]:
        assert (share / name).is_file(), name


def _systemd_analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if not exe:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    return exe


def test_units_verify(dest: Path) -> None:
    """`systemd-analyze verify --root=DESTDIR`: systemd not running is fine; ExecStart's
    binary is looked for under DESTDIR, and so are the units ours depend on, so the
    machine's own units are lent to DESTDIR's /run/systemd/system for the check."""
    exe = _systemd_analyze()
    host = next((Path(d) for d in ("/usr/lib/systemd/system", "/lib/systemd/system")
                 if Path(d, "sysinit.target").exists()), None)  # fmt: skip
    if host is None:
        pytest.skip("no systemd units on this machine to verify against (sysinit.target)")
    lent = dest / "run/systemd/system"
    lent.mkdir(parents=True)
    try:
        for unit in host.iterdir():
            if unit.is_file() and not unit.is_symlink():
                shutil.copy(unit, lent / unit.name)
        done = subprocess.run(
            [exe, "verify", f"--root={dest}", *UNITS], capture_output=True, text=True
        )
    finally:
        shutil.rmtree(dest / "run")
    # verify exits 0 on an unknown key or a bad value too: what it says must be nothing
    said = (done.stdout + done.stderr).strip()
    assert done.returncode == 0 and not said, said


@pytest.mark.parametrize("unit", UNITS)
def test_units_exposure_is_ok(dest: Path, unit: str) -> None:
    exe = _systemd_analyze()
    path = dest / "usr/lib/systemd/system" / unit
    done = subprocess.run(
        [exe, "security", "--offline=yes", "--threshold=30", "--no-pager", str(path)],
        capture_output=True, text=True,
    )  # fmt: skip
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+) (\w+)", done.stdout)
    assert m, done.stdout + done.stderr
    assert float(m[1]) <= 3.0 and m[2] == "OK", m[0]
    assert done.returncode == 0, done.stdout + done.stderr


def test_sysusers_and_tmpfiles_make_the_user_and_directories(dest: Path, tmp_path: Path) -> None:
    """The installed sysusers.d and tmpfiles.d files, applied to a machine of their own
    (--root) that has Debian's dialout group, as systemd applies them at boot."""
    sysusers, tmpfiles = shutil.which("systemd-sysusers"), shutil.which("systemd-tmpfiles")
    if not (sysusers and tmpfiles):
        pytest.skip("systemd-sysusers / systemd-tmpfiles are not installed (Debian: systemd)")
    if os.geteuid() != 0:
        pytest.skip("systemd-tmpfiles sets owners: that needs root (as make test runs in CI)")
    box = tmp_path / "box"
    for d in ("usr/lib/sysusers.d", "usr/lib/tmpfiles.d"):
        shutil.copytree(dest / d, box / d)
    shutil.copytree(dest / "etc/gatehouse", box / "etc/gatehouse")
    (box / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    (box / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    subprocess.run([sysusers, f"--root={box}"], check=True, capture_output=True)
    users = {
        ln.split(":")[0]: ln.split(":") for ln in (box / "etc/passwd").read_text().splitlines()
    }
    groups = {
        ln.split(":")[0]: ln.split(":") for ln in (box / "etc/group").read_text().splitlines()
    }
    uid, gid = int(users["gatehouse"][2]), int(groups["gatehouse"][2])
    assert uid < 1000 and users["gatehouse"][5] == "/var/lib/gatehouse"  # a system user
    assert users["gatehouse"][6].endswith("nologin")
    assert groups["dialout"] == ["dialout", "x", "20", "gatehouse"]

    subprocess.run([tmpfiles, f"--root={box}", "--create"], check=True, capture_output=True)
    for rel, mode, owner, group in [
        ("var/lib/gatehouse", 0o700, uid, gid),
        ("var/lib/gatehouse/office", 0o700, uid, gid),
        ("var/backups/gatehouse", 0o700, uid, gid),
        ("etc/gatehouse", 0o750, 0, gid),
        ("etc/gatehouse/credentials", 0o750, 0, gid),
        ("etc/gatehouse/credentials/sync-token", 0o640, 0, gid),
    ]:
        st = (box / rel).stat()
        assert (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (mode, owner, group), rel


def _uncomment(text: str, table: str, keys: tuple[str, ...]) -> str:
    """The installed config with a commented-out table switched on, as the IT person does."""
    out, inside = [], False
    for line in text.splitlines():
        if line == f"# [{table}]":
            inside = True
            out.append(line[2:])
        elif inside and line.startswith("# ") and line[2:].split(" =")[0] in keys:
            out.append(line[2:])
        else:
            inside = inside and line.startswith("#")
            out.append(line)
    return "\n".join(out) + "\n"


def test_installed_configs_load(dest: Path, tmp_path: Path, monkeypatch) -> None:
    """The installed configs, their /var/lib/gatehouse moved into the test's folder, read by
    the code and by the installed command; secrets named "%d/…" come from credentials/
    beside the config (a command run by hand) or $CREDENTIALS_DIRECTORY (the service)."""
    etc = tmp_path / "etc"
    shutil.copytree(dest / "etc/gatehouse", etc)
    state = tmp_path / "state"
    state.mkdir()
    edge_toml = etc / "gatehouse.toml"
    text = edge_toml.read_text().replace("/var/lib/gatehouse", str(state))
    assert f'data_dir = "{state}"' in text
    edge_toml.write_text(text)
    cfg = load(edge_toml)
    assert cfg.data_dir == state and cfg.mqtt is None and cfg.sync is None

    text = _uncomment(text, "mqtt", ("url", "prefix", "username", "password_file"))
    text = _uncomment(text, "sync", ("office_url", "token_file"))
    edge_toml.write_text(text)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    # the installer's empty files: each named, in turn, until it is filled in
    with pytest.raises(ConfigError, match=r"^mqtt\.password_file: .*mqtt-password' is empty"):
        load(edge_toml)
    (etc / "credentials/mqtt-password").write_text("broker-password\n")
    with pytest.raises(ConfigError, match=r"^sync\.token_file: .*sync-token' is empty"):
        load(edge_toml)
    (etc / "credentials/sync-token").write_text("token-from-the-office\n")
    cfg = load(edge_toml)
    assert cfg.sync is not None and cfg.sync.token == "token-from-the-office"
    assert cfg.mqtt is not None and cfg.mqtt.password == "broker-password"
    assert cfg.mqtt.username == "gatehouse-gate-east"
    given = tmp_path / "run-credentials"  # what LoadCredential= hands the service
    given.mkdir()
    (given / "sync-token").write_text("token-systemd-handed-over")
    (given / "mqtt-password").write_text("password-systemd-handed-over")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(given))
    cfg = load(edge_toml)
    assert cfg.sync is not None and cfg.sync.token == "token-systemd-handed-over"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")

    office_toml = etc / "office.toml"
    office_toml.write_text(office_toml.read_text().replace("/var/lib/gatehouse", str(state)))
    assert load_office(office_toml).data_dir == state / "office"

    # the installed command (not the source tree's) on the installed config
    gatehouse = str(dest / VENV / "bin/gatehouse")
    env = {k: v for k, v in os.environ.items() if k != "CREDENTIALS_DIRECTORY"}
    add = [gatehouse, "--config", str(edge_toml), "pass", "add", "--kind", "resident",
           "--card", "0040856634", "--name", "张三丰", "--unit", "3-1-502"]  # fmt: skip
    subprocess.run(add, check=True, capture_output=True, env=env, cwd=tmp_path)
    listed = subprocess.run(
        [gatehouse, "--config", str(edge_toml), "pass", "list", "--json"],
        check=True, capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert "****6C3A" in listed.stdout
    assert (state / "edge.db").is_file()


def test_wrapper_always_uses_the_installed_config(dest: Path) -> None:
    for name, config in [("gatehouse", "gatehouse.toml"), ("gatehouse-office", "office.toml")]:
        wrapper = dest / "usr/bin" / name
        subprocess.run(["sh", "-n", str(wrapper)], check=True)
        text = wrapper.read_text()
        assert f"config=/etc/gatehouse/{config}\n" in text
        assert "runuser -u gatehouse --" in text and "sudo -u gatehouse --" in text
        assert 'if [ "$cmd" = broker ]' in text  # Mosquitto's files are root's
        for arg in ("--config", "--config=/tmp/other.toml"):
            done = subprocess.run(
                [str(wrapper), "pass", "list", arg], capture_output=True, text=True
            )
            assert done.returncode == 2 and "always uses" in done.stderr, done.stderr


def test_reinstall_keeps_configs_and_secrets(dest: Path) -> None:
    """A second `make install` (an upgrade) leaves what the IT person changed alone."""
    etc = dest / "etc/gatehouse"
    edited = etc / "gatehouse.toml"
    before = edited.read_text()
    token = etc / "credentials/sync-token"
    try:
        edited.write_text(before.replace('id = "gate-east"', 'id = "gate-north"'))
        token.write_text("a-real-token\n")
        done = _install(dest)
        assert 'id = "gate-north"' in edited.read_text()
        assert token.read_text() == "a-real-token\n"
        assert (etc / "gatehouse.toml.new").read_text() == before
        assert "gatehouse.toml.new" in done.stdout
        assert not (etc / "office.toml.new").exists()  # unchanged: nothing beside it
    finally:
        edited.write_text(before)
        token.write_bytes(b"")
        (etc / "gatehouse.toml.new").unlink(missing_ok=True)
