"""Config checks and the command line, run as a user runs them (real processes)."""

from __future__ import annotations

import csv
import json
import os
import socket
import sqlite3
import subprocess
from datetime import datetime, time
from pathlib import Path

import pytest

from edge.config import ConfigError, load, load_office, parse, parse_hours
from edge.decision import PassView, SiteRules, decide
from edge.shifts import instances_at, outgoing
from tests.helpers import GATEHOUSE, Node, Office, cli, free_port, http_call, write_config

GOOD = {"node": {"id": "n1"}, "gates": [{"id": "g"}]}


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"node": {}}, "node.id"),
        ({"node": {"id": "n1", "timezone": "Mars/Olympus"}}, "node.timezone"),
        ({"gates": []}, "gates"),
        ({"readers": [{"id": "r", "gate": "nowhere", "port": "/dev/x"}]}, "readers[0].gate"),
        ({"readers": [{"id": "r", "gate": "g"}]}, "readers[0].port"),
        (
            {"readers": [{"id": "r", "gate": "g", "port": "/dev/x", "protocol": "wiegand9"}]},
            "readers[0].protocol",
        ),
        (
            {"readers": [{"id": "r", "gate": "g", "port": "/dev/x", "baudrate": "fast"}]},
            "readers[0].baudrate",
        ),
        ({"readers": [{"id": "r", "gate": "g", "transport": "mqtt"}]}, "readers[0].transport"),
        ({"api": {"listen": "localhost"}}, "api.listen"),
        ({"mqtt": {"url": "http://x"}}, "mqtt.url"),
        ({"database": {"url": "postgresql://x"}}, "database.url"),
        ({"rules": {"worker_hours": "7 to 7"}}, "rules.worker_hours"),
        ({"rules": {"stale_after_s": -1}}, "rules.stale_after_s"),
        ({"nodes": {}}, "config.nodes"),
    ],
)
def test_a_bad_config_is_refused_naming_the_key(change, names):
    with pytest.raises(ConfigError) as e:
        parse(GOOD | change)
    assert str(e.value).startswith(names)


@pytest.mark.parametrize(
    "hours", ["25:00-26:00", "07:60-19:00", "07:00-19:60", "24:00-06:00", "07:00-24:30",
              "07:00-25:00", "99:00-07:00", "7 to 7"],
)  # fmt: skip
def test_impossible_hours_are_refused_naming_the_key_and_the_value(hours):
    for change, key in (
        ({"rules": {"worker_hours": hours}}, "rules.worker_hours"),
        ({"shifts": [{"name": "day", "hours": hours}]}, "shifts[0].hours"),
    ):
        with pytest.raises(ConfigError) as e:
            parse(GOOD | change)
        assert str(e.value).startswith(f"{key}: {hours!r}")


@pytest.mark.parametrize(
    ("hours", "window"),
    [
        ("07:00-19:00", (time(7), time(19))),
        ("22:00-06:00", (time(22), time(6))),  # across midnight
        ("19:00-24:00", (time(19), time(0))),  # to midnight at the end of the day
        ("00:00-24:00", (time(0), time(0))),  # all day
        ("7:05 - 23:59", (time(7, 5), time(23, 59))),
    ],
)
def test_hours_up_to_24_00_are_read(hours, window):
    assert parse_hours(hours, "x") == window
    assert parse(GOOD | {"rules": {"worker_hours": hours}}).rules.worker_hours == window


def test_a_worker_window_of_00_00_to_24_00_lets_workers_in_all_day():
    cfg = parse(GOOD | {"rules": {"worker_hours": "00:00-24:00"}})
    rules = SiteRules(tz=cfg.tz, kind_hours={"worker": cfg.rules.worker_hours})
    worker = PassView("p", "worker", "active", 0.0, None)
    midnight = datetime(2026, 11, 22, tzinfo=cfg.tz).timestamp()
    for s in (0, 1, 7 * 3600, 12 * 3600, 86400 - 1, 86400):
        assert decide([worker], midnight + s, "g", rules).granted, s


def test_shifts_may_end_at_24_00_and_one_shift_may_cover_the_day():
    cfg = parse(GOOD | {"shifts": [{"name": "early", "hours": "00:00-12:00"},
                                   {"name": "late", "hours": "12:00-24:00"}]})  # fmt: skip
    midnight = datetime(2026, 11, 22, tzinfo=cfg.tz).timestamp()
    late = outgoing(cfg.shifts, midnight - 1, cfg.tz)
    assert (late.name, late.end) == ("late", midnight)
    early = outgoing(cfg.shifts, midnight, cfg.tz)
    assert (early.name, early.start, early.end) == ("early", midnight, midnight + 12 * 3600)
    whole = parse(GOOD | {"shifts": [{"name": "all", "hours": "00:00-24:00"}]})
    (on,) = instances_at(whole.shifts, midnight + 5 * 3600, whole.tz)
    assert (on.start, on.end) == (midnight, midnight + 86400)


@pytest.mark.parametrize(
    ("hours", "gap"),
    [(["08:00-20:00"], "20:00-08:00"), (["00:00-12:00", "13:00-24:00"], "12:00-13:00"),
     (["22:00-06:00", "06:00-21:00"], "21:00-22:00")],
)  # fmt: skip
def test_a_roster_with_a_gap_is_refused_naming_it(hours, gap):
    roster = [{"name": f"s{i}", "hours": h} for i, h in enumerate(hours)]
    with pytest.raises(ConfigError) as e:
        parse(GOOD | {"shifts": roster})
    assert str(e.value).startswith(f"shifts: {gap} is in no shift"), e.value


def test_the_example_config_is_valid():
    cfg = load(Path(__file__).parent.parent / "config" / "gatehouse.example.toml")
    assert cfg.node_id == "gate-east" and cfg.api_port == 8080 and cfg.mqtt is None


def test_the_demo_config_reads_every_value_as_written():
    """A config with readers, MQTT and the listen address: each value where it belongs (a
    reader's port is not the API's, the broker's port is the URL's)."""
    cfg = load(Path(__file__).parent.parent / "config" / "gatehouse.demo.toml")
    assert (cfg.api_host, cfg.api_port) == ("127.0.0.1", 8080)
    assert cfg.mqtt is not None and (cfg.mqtt.host, cfg.mqtt.port) == ("127.0.0.1", 1883)
    ports = {r.id: r.port for r in cfg.readers}
    demo_var = str(Path(__file__).parent.parent / "var")  # beside config/, as the file says
    assert f"{demo_var}/ttyREADER" in ports.values() and None in ports.values()  # serial, mqtt
    assert cfg.data_dir == Path(demo_var) and cfg.db_path == Path(demo_var) / "edge.db"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=free_port())


def test_relative_paths_are_the_config_files_not_the_current_directorys(tmp_path: Path):
    """An IT person runs `gatehouse --config /etc/…/gatehouse.toml pass list` from a home
    directory: it reaches the service's database and keys, never an empty one made there."""
    etc, home = tmp_path / "etc", tmp_path / "home"
    etc.mkdir()
    home.mkdir()
    (etc / "mqtt-password").write_text("s3cret\n")
    conf = etc / "gatehouse.toml"
    conf.write_text(
        '[node]\nid = "n1"\ndata_dir = "state"\n[database]\nurl = "sqlite:///state/e.db"\n'
        f'[api]\nlisten = "127.0.0.1:{free_port()}"\n[[gates]]\nid = "main"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1"\npassword_file = "mqtt-password"\n'
        '[[readers]]\nid = "r1"\ngate = "main"\nport = "ttyREADER"\n'
    )
    cfg = load(conf)
    assert cfg.data_dir == etc / "state" and cfg.db_path == etc / "state" / "e.db"
    assert cfg.readers[0].port == str(etc / "ttyREADER")
    assert cfg.mqtt is not None and cfg.mqtt.password == "s3cret"
    # the same config file named relatively, from two other directories
    for cwd, name in ((home, "../etc/gatehouse.toml"), (etc, "gatehouse.toml")):
        out = subprocess.run(
            [GATEHOUSE, "--config", name, "pass", "add", "--kind", "resident", "--card",
             f"00408566{len(str(cwd))}", "--name", "张三", "--unit", "1-1-101"],
            cwd=cwd, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in home.iterdir()) == []  # nothing made where it ran
    listed = subprocess.run([GATEHOUSE, "--config", str(conf), "--json", "pass", "list"],
                            cwd=home, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert len(json.loads(listed.stdout)["items"]) == 2, listed.stderr


def test_the_office_reads_its_paths_relative_to_its_config(tmp_path: Path):
    conf = tmp_path / "etc" / "office.toml"
    conf.parent.mkdir()
    (conf.parent / "tls").mkdir()
    for name in ("cert.pem", "key.pem"):
        (conf.parent / "tls" / name).write_text("x")
    conf.write_text(
        '[office]\ndatabase_url = "postgresql://u@localhost/x"\ndata_dir = "office"\n'
        'tls_cert = "tls/cert.pem"\ntls_key = "tls/key.pem"\n'
    )
    cfg = load_office(conf)
    assert cfg.data_dir == conf.parent / "office"
    assert cfg.tls_cert == str(conf.parent / "tls" / "cert.pem")
    assert cfg.tls_key == str(conf.parent / "tls" / "key.pem")


def test_bad_config_or_argument_prints_one_line_and_exits_2(tmp_path: Path, config: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[node]\nid = "x"\n[[gates]]\nid = "g"\n[api]\nlisten = "nowhere"\n')
    for args in (
        ["--config", str(bad), "pass", "list"],
        ["--config", str(tmp_path / "missing.toml"), "run"],
        [
            "--config",
            str(config),
            "pass",
            "add",
            "--kind",
            "spaceship",
            "--card",
            "1",
            "--name",
            "x",
        ],
        [
            "--config",
            str(config),
            "pass",
            "add",
            "--kind",
            "temporary",
            "--card",
            "12AB",
            "--name",
            "x",
        ],
        ["--config", str(config), "check", "01026F6C3A", "--at", "yesterday"],
    ):
        out = cli(Path(args[1]), *args[2:], check=False)
        assert out.returncode == 2, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and out.stdout == "", out.stderr


def test_pass_lifecycle_from_the_command_line(config: Path):
    out = cli(config, "--json", "pass", "add", "--kind", "worker", "--card", "0040856634",
              "--name", "李四", "--unit", "5-2-301", "--id-number", "110105199001011234",
              "--permit", "ZX-2026-118")  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["id_last4"] == "1234" and doc["card"] == "****6C3A" and doc["kind"] == "worker"
    listing = cli(config, "--json", "pass", "list").stdout
    assert json.loads(listing)["items"][0]["name"] == "李*" and "110105" not in listing
    check = cli(config, "--json", "check", "01026F6C3A", "--at", "2000-01-01T12:00")
    assert check.returncode == 1 and json.loads(check.stdout)["reason"] == "not_yet_valid"
    assert cli(config, "pass", "revoke", doc["id"]).returncode == 0
    again = cli(config, "pass", "revoke", doc["id"], check=False)
    assert again.returncode == 2 and "already revoked" in again.stderr
    db = sqlite3.connect(config.parent / "var" / "edge.db")
    ((id_hash, id_last4),) = db.execute("SELECT id_hash, id_last4 FROM passes").fetchall()
    assert len(id_hash) == 64 and id_last4 == "1234"  # a keyed hash and the last 4, only
    stored = str(db.execute("SELECT * FROM passes").fetchall())
    assert "110105199001011234" not in stored and "19900101" not in stored


def test_worker_and_temporary_passes_beyond_their_limit_are_refused(config: Path):
    year = datetime.now().year + 1  # a window to come: one that has passed is refused first
    window = ["--valid-from", f"{year}-11-01T08:00", "--valid-until", f"{year}-11-05T08:00"]
    out = cli(config, "pass", "add", "--kind", "temporary", "--card", "0040856634", "--name", "x",
              *window, check=False)  # fmt: skip
    assert out.returncode == 2 and "at most 3 days" in out.stderr
    out = cli(
        config,
        "pass",
        "add",
        "--kind",
        "worker",
        "--card",
        "0040856634",
        "--name",
        "x",
        check=False,
    )
    assert out.returncode == 2 and "unit" in out.stderr


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(
            f, ["kind", "card", "name", "unit", "valid_from", "valid_until", "id_number"]
        )
        w.writeheader()
        w.writerows(rows)
    return path


def test_import_is_all_or_nothing_and_names_the_bad_line(tmp_path: Path, config: Path):
    rows = [
        {"kind": "resident", "card": f"{i:010d}", "name": f"业主{i}", "unit": "1-1-101",
         "valid_from": "", "valid_until": "", "id_number": ""}
        for i in range(1, 2001)
    ]  # fmt: skip
    bad = [*rows[:1500], {**rows[1500], "valid_until": "not a date"}, *rows[1501:]]
    out = cli(config, "pass", "import", str(write_csv(tmp_path / "bad.csv", bad)), check=False)
    assert out.returncode == 2 and "line 1502" in out.stderr
    assert cli(config, "--json", "pass", "list").stdout.count('"id"') == 0
    out = cli(config, "--json", "pass", "import", str(write_csv(tmp_path / "ok.csv", rows)))
    assert json.loads(out.stdout)["imported"] == 2000
    assert cli(config, "check", "0000001234").returncode == 0


def test_global_flags_are_taken_after_the_command_too(config: Path):
    cli(config, "pass", "add", "--kind", "resident", "--card", "0040856634", "--name", "张三")
    for args in (["pass", "list", "--json", "--config", str(config)],
                 ["pass", "--json", "list", "--config", str(config)],
                 ["--json", "pass", "list", "--config", str(config)],
                 ["--config", str(config), "pass", "list", "--json"]):  # fmt: skip
        out = subprocess.run([GATEHOUSE, *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, (args, out.stderr)
        assert len(json.loads(out.stdout)["items"]) == 1, args


def test_a_leaked_token_is_rotated_and_a_revoked_guard_comes_back_under_his_name(
    tmp_path: Path,
):
    """The duty log and handover signatures name one person: a guard whose token leaked gets
    a new one under the same name; the old one is refused by the running node at once."""
    port = free_port()
    config = write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=port)
    old = cli(config, "user", "add", "王保安", "--role", "guard").stdout.strip()
    node = Node(config, port).start(wait_ready=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert http_call(base, "GET", "/api/v1/passes", old)[0] == 200
        new = cli(config, "user", "rotate", "王保安").stdout.strip()
        assert new and new != old
        assert http_call(base, "GET", "/api/v1/passes", old)[0] == 401
        assert http_call(base, "GET", "/api/v1/passes", new)[0] == 200
        assert cli(config, "user", "revoke", "王保安").returncode == 0
        assert http_call(base, "GET", "/api/v1/passes", new)[0] == 401
        refused = cli(config, "user", "rotate", "王保安", check=False)
        assert refused.returncode == 2 and "no active user" in refused.stderr
        again = cli(config, "user", "add", "王保安", "--role", "guard").stdout.strip()
        assert http_call(base, "GET", "/api/v1/passes", again)[0] == 200
        assert http_call(base, "GET", "/api/v1/passes", new)[0] == 401
        twice = cli(config, "user", "add", "王保安", "--role", "guard", check=False)
        assert twice.returncode == 2 and "exists already" in twice.stderr
    finally:
        node.stop()
    listed = json.loads(cli(config, "--json", "user", "list").stdout)["items"]
    assert [(u["name"], u["revoked_at"]) for u in listed] == [("王保安", None)]
    with sqlite3.connect(tmp_path / "var" / "edge.db") as db:
        done = [a for (a,) in db.execute("SELECT action FROM audit_log WHERE subject = '王保安' "
                                         "ORDER BY id")]  # fmt: skip
    assert done == ["user_add", "user_rotate", "user_revoke", "user_add_again"]


def test_a_port_already_in_use_is_one_line_naming_the_key(tmp_path: Path, pg_url: str):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        edge = write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=port)
        office = Office(tmp_path, pg_url)
        office.config.write_text(office.config.read_text().replace(
            f":{office.port}", f":{port}"))  # fmt: skip
        for conf, args, key in ((edge, ["run"], "api.listen"),
                                (office.config, ["office"], "office.listen")):  # fmt: skip
            out = subprocess.run([GATEHOUSE, "--config", str(conf), *args],
                                 capture_output=True, text=True, timeout=60)  # fmt: skip
            assert out.returncode == 2, out.stderr
            assert out.stderr.startswith(f"gatehouse: {key}: cannot listen on 127.0.0.1:{port}")
            assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    finally:
        taken.close()


def test_the_database_and_its_backups_are_private_whatever_the_callers_umask(tmp_path: Path):
    """edge.db holds full names and unmasked cards: 0600 even when the IT person's shell has
    umask 022, and a database left 0644 by an older release is tightened."""
    config = write_config(tmp_path / "g.toml", broker_port=None, readers=[], api_port=free_port())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([GATEHOUSE, "--config", str(config), *args],
                              capture_output=True, text=True, timeout=60,
                              preexec_fn=lambda: os.umask(0o022))  # fmt: skip

    assert run("pass", "add", "--kind", "resident", "--card", "0040856634", "--name",
               "张三", "--id-number", "110101199003071234").returncode == 0  # fmt: skip
    var = tmp_path / "var"
    made = [p for p in var.rglob("*") if p.is_file()]
    assert {p.name for p in made} >= {"edge.db", "id_hash.key"}
    for p in made:
        assert p.stat().st_mode & 0o077 == 0, (p, oct(p.stat().st_mode))
    assert run("backup", str(tmp_path / "b.db")).returncode == 0
    assert (tmp_path / "b.db").stat().st_mode & 0o777 == 0o600
    (var / "edge.db").chmod(0o644)  # as an older release left it
    assert run("pass", "list").returncode == 0
    assert (var / "edge.db").stat().st_mode & 0o777 == 0o600


def test_a_secret_named_percent_d_is_the_services_systemd_credential(tmp_path: Path):
    """`token_file = "%d/sync-token"`: the service reads systemd's copy (LoadCredential=),
    a command run by hand the source beside the config."""
    etc, creds = tmp_path / "etc", tmp_path / "run-creds"
    (etc / "credentials").mkdir(parents=True)
    creds.mkdir()
    (etc / "credentials" / "mqtt-password").write_text("from-etc\n")
    (creds / "mqtt-password").write_text("from-systemd\n")
    conf = etc / "gatehouse.toml"
    conf.write_text(
        '[node]\nid = "n1"\n[[gates]]\nid = "main"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1"\npassword_file = "%d/mqtt-password"\n'
    )
    cfg = load(conf)
    assert cfg.mqtt is not None and cfg.mqtt.password == "from-etc"
    os.environ["CREDENTIALS_DIRECTORY"] = str(creds)
    try:
        cfg = load(conf)
    finally:
        del os.environ["CREDENTIALS_DIRECTORY"]
    assert cfg.mqtt is not None and cfg.mqtt.password == "from-systemd"


def test_config_check_prints_the_effective_config_with_secrets_hidden(tmp_path: Path):
    conf = tmp_path / "gatehouse.toml"
    conf.write_text(
        '[node]\nid = "n1"\ndata_dir = "state"\n[[gates]]\nid = "main"\n'
        '[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nusername = "n1"\npassword = "hunter22"\n'
        '[sync]\noffice_url = "https://office.example:9090"\ntoken = "tok-abcdef-123456"\n'
        '[[cameras]]\nid = "cam"\ngate = "main"\nsource = "rtsp://admin:s3cret@10.0.0.9/s1"\n'
    )
    out = cli(conf, "config", "check")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["valid"] and shown["data_dir"] == str(tmp_path / "state")
    assert shown["api_port"] == 8080 and shown["sync"]["push_batch"] == 2000  # defaults
    assert shown["mqtt"]["password"] == "(hidden: 8 characters)"
    assert shown["sync"]["token"] == "(hidden: 17 characters)"
    assert shown["cameras"][0]["source"] == "rtsp://admin:***@10.0.0.9/s1"
    for secret in ("hunter22", "abcdef", "s3cret"):
        assert secret not in out.stdout
    conf.write_text('[node]\nid = "n1"\n[[gates]]\nid = "main"\nrules = 5\n')
    bad = cli(conf, "config", "check", check=False)
    assert bad.returncode == 2 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1 and "rules" in bad.stderr
