"""TLS is required beyond loopback: a gate's http:// office_url to another machine and an
office listening beyond loopback without tls_cert/tls_key are refused, unless the config
says ``insecure = true``; readiness shows the choice, the office logs it at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, is_loopback, parse
from tests.helpers import Node, Office, cli, free_port, wait_for, write_config

GOOD = {"node": {"id": "n1"}, "gates": [{"id": "g"}]}
CLEARTEXT_LAN = "http://192.0.2.10:9090"


def _gate(tmp_path: Path, sync: str) -> Path:
    config = write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=free_port())
    with config.open("a") as f:
        f.write(f'[sync]\ntoken = "t"\nretry_max_s = 1.0\n{sync}\n')
    return config


def _office(tmp_path: Path, extra: str) -> Path:
    config = tmp_path / "office.toml"
    config.write_text(
        f'[office]\ndatabase_url = "postgresql:///gatehouse"\ndata_dir = "{tmp_path / "o"}"\n'
        f"{extra}\n"
    )
    return config


def _refused(proc, key: str) -> str:
    """Exit 2 and one line naming the key; the line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    return lines[0]


def test_a_gate_with_cleartext_to_another_machine_is_refused(tmp_path: Path) -> None:
    config = _gate(tmp_path, f'office_url = "{CLEARTEXT_LAN}"')
    line = _refused(cli(config, "check", "01026F6C3A", check=False), "sync.office_url")
    assert "https://" in line and "ca_file" in line and "insecure = true" in line


def test_a_gate_that_says_insecure_may_use_cleartext_on_the_lan(tmp_path: Path) -> None:
    config = _gate(tmp_path, f'office_url = "{CLEARTEXT_LAN}"\ninsecure = true')
    proc = cli(config, "check", "01026F6C3A", check=False)
    assert proc.returncode in (0, 1) and not proc.stderr, proc.stderr


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9090", "http://127.3.4.5:9090", "http://localhost:9090",
            "http://[::1]:9090", "https://192.0.2.10:9090", "https://office.example:9090"],
)  # fmt: skip
def test_loopback_or_https_needs_no_insecure(tmp_path: Path, url: str) -> None:
    config = _gate(tmp_path, f'office_url = "{url}"')
    proc = cli(config, "check", "01026F6C3A", check=False)
    assert proc.returncode in (0, 1) and not proc.stderr, proc.stderr


@pytest.mark.parametrize("url", ["http://office:9090", "http://0.0.0.0:9090", "http://[::]:1"])
def test_a_host_that_is_not_loopback_is_refused_in_process(url: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(GOOD | {"sync": {"office_url": url, "token": "t"}})
    assert str(e.value).startswith("sync.office_url: ") and "\n" not in str(e.value)
    cfg = parse(GOOD | {"sync": {"office_url": url, "token": "t", "insecure": True}})
    assert cfg.sync is not None and cfg.sync.insecure and cfg.sync.cleartext


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_insecure_is_a_bool(value: object) -> None:
    with pytest.raises(ConfigError) as e:
        parse(GOOD | {"sync": {"office_url": "https://o", "token": "t", "insecure": value}})
    assert str(e.value).startswith("sync.insecure: ")


def test_loopback_is_this_machine_only() -> None:
    for host in ("127.0.0.1", "127.255.0.9", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "[::]", "192.0.2.10", "office", "localhost.example", ""):
        assert not is_loopback(host), host


def test_an_office_beyond_loopback_without_tls_is_refused(tmp_path: Path) -> None:
    config = _office(tmp_path, 'listen = "0.0.0.0:9090"')
    line = _refused(cli(config, "office", "key", check=False), "office.listen")
    assert "tls_cert" in line and "tls_key" in line and "insecure = true" in line
    for listen in ("[::]:9090", "192.0.2.10:9090"):
        config = _office(tmp_path, f'listen = "{listen}"')
        _refused(cli(config, "office", "key", check=False), "office.listen")


@pytest.mark.parametrize(
    "extra",
    [
        'listen = "0.0.0.0:9090"\ninsecure = true',
        'listen = "0.0.0.0:9090"\ntls_cert = "@CERT@"\ntls_key = "@KEY@"',
        'listen = "127.0.0.1:9090"',
        'listen = "localhost:9090"',
        'listen = "[::1]:9090"',
        "",  # the default, 127.0.0.1:9090
    ],
)
def test_an_office_on_loopback_with_tls_or_insecure_is_accepted(tmp_path: Path, extra: str) -> None:
    (tmp_path / "cert.pem").write_text("cert\n")  # `office key` reads no certificate
    (tmp_path / "key.pem").write_text("key\n")
    extra = extra.replace("@CERT@", str(tmp_path / "cert.pem"))
    config = _office(tmp_path, extra.replace("@KEY@", str(tmp_path / "key.pem")))
    proc = cli(config, "office", "key", "init", check=False)  # makes the key: the config passed
    assert proc.returncode == 0 and proc.stdout.strip(), proc.stderr


def test_office_insecure_is_a_bool(tmp_path: Path) -> None:
    config = _office(tmp_path, 'listen = "0.0.0.0:9090"\ninsecure = "yes"')
    _refused(cli(config, "office", "key", check=False), "office.insecure")


def _sync_report(tmp_path: Path, sync: str) -> dict:
    api = free_port()
    tmp_path.mkdir()
    config = write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=api)
    with config.open("a") as f:
        f.write(f'[sync]\ntoken = "t"\nretry_max_s = 1.0\n{sync}\n')
    node = Node(config, api).start()
    try:
        return wait_for(lambda: node.ready()[1].get("sync"), 20, "the readiness report")
    finally:
        node.stop()


def test_readiness_shows_cleartext_chosen_by_insecure(tmp_path: Path) -> None:
    sync = _sync_report(tmp_path / "lan", 'office_url = "http://192.0.2.10:9"\ninsecure = true')
    assert sync["insecure"] is True
    # cleartext to this machine: nothing insecure in use
    assert _sync_report(tmp_path / "lo", 'office_url = "http://127.0.0.1:9"')["insecure"] is False
    # insecure = true over https: the report's value, without a third node
    tls = parse(GOOD | {"sync": {"office_url": "https://192.0.2.10:9", "token": "t",
                                 "insecure": True}})  # fmt: skip
    assert tls.sync is not None and tls.sync.cleartext is False


def test_an_insecure_office_beyond_loopback_warns_once_at_start(
    tmp_path: Path, pg_url: str
) -> None:
    office = Office(tmp_path, pg_url)
    text = office.config.read_text()
    office.config.write_text(
        text.replace('listen = "127.0.0.1:', 'insecure = true\nlisten = "0.0.0.0:')
    )
    office.start()
    try:
        warnings = [line for line in office.log.read_text().splitlines() if "WARNING" in line]
        assert len(warnings) == 1 and "cleartext" in warnings[0], warnings
    finally:
        office.stop()
