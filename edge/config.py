"""The config file (TOML, CONTRACT.md): loaded once, checked whole, every error names its key."""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from drivers.registry import PARSERS
from edge.errors import DomainError
from edge.privacy import NAME_MASKS

DEFAULT_CONFIG = "config/gatehouse.example.toml"
PROTOCOLS = tuple(PARSERS)


class ConfigError(ValueError):
    """A bad config; the message names the key and the problem."""


@dataclass(frozen=True)
class ReaderCfg:
    id: str
    gate: str
    direction: str = "in"
    transport: str = "serial"
    port: str | None = None
    baudrate: int = 9600
    protocol: str = "rdm6300"
    card_format: str = "auto"  # how a `line` reader renders cards: auto | hex | dec
    debounce_ms: int = 1500  # same card on the same reader: one decision per sighting
    inter_byte_timeout_ms: int = 100  # a partial frame older than this is dropped
    silent_after_s: float | None = None  # readiness flags a reader quiet for this long


@dataclass(frozen=True)
class MqttCfg:
    url: str = "mqtt://127.0.0.1:1883"
    prefix: str = "gatehouse"
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 15

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        u = urlparse(self.url)
        return u.port or (8883 if u.scheme == "mqtts" else 1883)

    @property
    def tls(self) -> bool:
        return urlparse(self.url).scheme == "mqtts"


@dataclass(frozen=True)
class RulesCfg:
    worker_hours: tuple[time, time] = (time(7, 0), time(19, 0))
    stale_after_s: float = 3.0  # a read older than this is recorded but never opens
    open_pulse_ms: int = 1000
    name_mask: str = "surname"


@dataclass(frozen=True)
class CameraCfg:
    id: str
    gate: str
    source: str  # anything OpenCV opens: a URL, a device index, a file
    offline_after_s: float = 5.0  # no frames this long: camera_offline
    frozen_after_s: float = 10.0  # identical frames this long: camera_frozen
    covered_after_s: float = 3.0  # black or uniform this long: camera_covered
    stale_after_ms: int = 2000  # a snapshot farther than this from its event is stale
    open_timeout_ms: int = 5000
    read_timeout_ms: int = 5000
    decode: str = "every_frame"  # every_frame | on_demand (less CPU, snapshots wait a frame)


@dataclass(frozen=True)
class SnapshotsCfg:
    retention_days: float = 30.0
    quota_mb: float = 2048.0
    jpeg_quality: int = 85


@dataclass(frozen=True)
class SyncCfg:
    office_url: str
    token: str
    push_batch: int = 2000
    retry_max_s: float = 60.0  # backoff cap while the office is away
    ca_file: str | None = None  # the office's CA, for https:// with a private certificate
    insecure: bool = False  # cleartext http:// to an office beyond loopback, by choice

    @property
    def cleartext(self) -> bool:
        """Whether the link to the office is cleartext beyond this machine (only ever by
        ``insecure = true``: the config refuses it otherwise)."""
        u = urlparse(self.office_url)
        return u.scheme == "http" and not is_loopback(u.hostname or "")


@dataclass(frozen=True)
class ShiftCfg:
    name: str
    start: time
    end: time


DEFAULT_SHIFTS = (
    ShiftCfg("day", time(8, 0), time(16, 30)),
    ShiftCfg("evening", time(15, 30), time(0, 0)),
    ShiftCfg("night", time(23, 30), time(8, 0)),
)


@dataclass(frozen=True)
class AlarmsCfg:
    # an unacknowledged alarm escalates after this long, and again after as long again
    escalate_after_s: dict[int, float] = field(
        default_factory=lambda: {1: 30.0, 2: 120.0, 3: 600.0}
    )
    priorities: dict[str, int] = field(default_factory=dict)  # type → priority overrides
    checklists: dict[str, tuple[str, ...]] = field(default_factory=dict)  # type → steps
    # alarm-input source id → (gate, location), so a door alarm knows its gate
    sources: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    repeated_denials: int = 3  # denies of one card at one gate within the window → alarm
    repeated_denials_window_s: float = 60.0


@dataclass(frozen=True)
class Config:
    node_id: str
    tz: ZoneInfo
    data_dir: Path
    db_path: Path
    api_host: str
    api_port: int
    mqtt: MqttCfg | None
    gates: tuple[str, ...]
    readers: tuple[ReaderCfg, ...]
    rules: RulesCfg = field(default_factory=RulesCfg)
    cameras: tuple[CameraCfg, ...] = ()
    snapshots: SnapshotsCfg = field(default_factory=SnapshotsCfg)
    sync: SyncCfg | None = None
    qr_keys: tuple[str, ...] = ()  # the office's Ed25519 public keys, base64
    alarms: AlarmsCfg = field(default_factory=AlarmsCfg)
    shifts: tuple[ShiftCfg, ...] = DEFAULT_SHIFTS
    post_items: dict[str, int] = field(default_factory=dict)  # the post's items to count
    source: str = ""

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def known_gate(self, gate: str) -> str:
        """``gate`` if it is one of this node's gates; else DomainError naming it."""
        if gate not in self.gates:
            raise DomainError(f"gate: {gate!r} is not one of this node's gates")
        return gate


def hide_url_password(url: str) -> str:
    """``scheme://user:***@host/…``: a URL as it may be printed (a camera's RTSP login, the
    office's database password)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def config_path(arg: str | None) -> str:
    return arg or os.environ.get("GATEHOUSE_CONFIG") or DEFAULT_CONFIG


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _key(key: str) -> str:
    """A key as an error names it: quoted when it is not a plain word (a key may hold a line
    break or anything else in TOML, and the error must stay one line)."""
    return key if _PLAIN_KEY.match(key) else repr(key)


def _take(table: Any, where: str, known: set[str]) -> None:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table ([{where}] or {{ key = value }})")
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}.{_key(unknown[0])}: unknown key")


def _table(raw: dict[str, Any], key: str, where: str = "") -> dict[str, Any]:
    """The table at ``key`` (an empty one when it is absent), or ConfigError."""
    value = raw.get(key, {})
    if not isinstance(value, dict):
        name = f"{where}.{key}" if where else key
        raise ConfigError(f"{name}: must be a table ([{name}] or {{ key = value }})")
    return value


def _tables(raw: dict[str, Any], key: str) -> list[dict[str, Any]]:
    """The array of tables at ``key`` (``[[key]]``; empty when absent), or ConfigError."""
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key}: must be an array of tables ([[{key}]])")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ConfigError(f"{key}[{i}]: must be a table ([[{key}]] with its keys)")
    return value


def _str(table: dict[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = table.get(key, default)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}.{key}: must be a non-empty string")
    if "\x00" in value:  # no file, zone or device name holds one; the OS refuses it later
        raise ConfigError(f"{where}.{key}: must not contain a NUL character")
    return value


def _opt_str(table: dict[str, Any], key: str, where: str) -> str | None:
    """An optional string: absent is None, anything else must be a string."""
    return None if table.get(key) is None else _str(table, key, where)


def _listen(value: str, where: str) -> tuple[str, int]:
    """HOST:PORT, the port in ASCII digits from 0 to 65535 (``int`` would take "٨٠" and
    throw on "8²" or 5,000 digits)."""
    m = re.fullmatch(r"(.+):([0-9]{1,5})", value)
    if not m or int(m.group(2)) > 65535:
        raise ConfigError(f"{where}: {value!r} is not HOST:PORT")
    return m.group(1), int(m.group(2))


def is_loopback(host: str) -> bool:
    """Whether a host names this machine only: localhost, 127.0.0.0/8 or ::1 (0.0.0.0 and
    :: are every address, not loopback)."""
    name = host.strip().removeprefix("[").removesuffix("]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _flag(table: dict[str, Any], key: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: must be true or false")
    return value


def _url(value: str, where: str, schemes: tuple[str, ...], example: str) -> None:
    """A URL of one of ``schemes`` with a host and, if any, a port from 1 to 65535."""
    try:
        u = urlparse(value)
        u.port  # noqa: B018 -- raises ValueError for a port that is not one
    except ValueError as e:
        raise ConfigError(f"{where}: {value!r} is not a URL ({e})") from None
    if u.scheme not in schemes:
        raise ConfigError(f"{where}: {value!r} must start with {example}")
    if not u.hostname and schemes != ("postgresql",):  # postgresql:///db is a local socket
        raise ConfigError(f"{where}: {value!r} names no host")


def _at(base: Path | None, value: str) -> Path:
    """A path the config names. A relative one is relative to the config file's directory,
    not to wherever a command happens to run: `gatehouse pass list` from a home directory
    must reach the service's database, never create an empty one there."""
    path = Path(value)
    return path if base is None or path.is_absolute() else Path(os.path.normpath(base / path))


def _dir_path(value: str, where: str, base: Path | None) -> Path:
    """A directory the program may create: not a file, and not under one."""
    path = _at(base, value)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ConfigError(f"{where}: {str(p)!r} is a file, not a directory")
            break
    return path


def _num(table: dict[str, Any], key: str, where: str, default: float, lo: float, hi: float) -> Any:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{where}.{key}: must be a number from {lo:g} to {hi:g}")
    return value


_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _credential(value: str, base: Path | None) -> Path:
    """A secret's file. ``%d/NAME`` is a systemd credential: the service reads the copy
    systemd gives it (``LoadCredential=NAME:…``, in ``$CREDENTIALS_DIRECTORY``); a command
    run by hand, which has none, reads the source, in ``credentials/`` beside the config."""
    if not value.startswith("%d/"):
        return _at(base, value)
    name = value.removeprefix("%d/")
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(creds, name) if creds else _at(base, f"credentials/{name}")


def _secret(table: dict[str, Any], key: str, where: str, base: Path | None) -> Any:
    """``key`` itself, or the contents of ``key_file`` (keeps secrets out of the config)."""
    if f"{key}_file" not in table:
        return table.get(key)
    try:
        path = _credential(_str(table, f"{key}_file", where), base)
        return path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"{where}.{key}_file: cannot be read: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}.{key}_file: is not UTF-8 text") from None


def _ident(table: dict[str, Any], key: str, where: str) -> str:
    value = _str(table, key, where)
    if not _ID_RE.match(value):
        raise ConfigError(f"{where}.{key}: {value!r} may hold only letters, digits, _ . -")
    return value


def parse_hours(text: str, where: str) -> tuple[time, time]:
    """A daily window "HH:MM-HH:MM" as (start, end), local times of day.

    The window runs from its start up to the next time its end comes round: an end at or
    before the start crosses midnight (22:00-06:00), and an end equal to the start is the
    whole day. "24:00" is allowed as an end only and means midnight at the end of the day,
    so it comes back as 00:00: "19:00-24:00" is the evening, "00:00-24:00" all day.
    """
    m = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", text.strip())
    if not m:
        raise ConfigError(f"{where}: {text!r} is not a window like '07:00-19:00'")
    h1, m1, h2, m2 = map(int, m.groups())
    if m1 > 59 or m2 > 59:
        raise ConfigError(f"{where}: {text!r}: minutes run from 00 to 59")
    if h1 > 23:
        raise ConfigError(f"{where}: {text!r}: a window starts at 00:00-23:59 (24:00 is an end)")
    if h2 > 24 or (h2 == 24 and m2 != 0):
        raise ConfigError(f"{where}: {text!r}: a window ends at 00:00-24:00")
    return time(h1, m1), time(h2 % 24, m2)


def _read(p: Path) -> dict[str, Any]:
    """A config file's TOML, or ConfigError saying in one line why not."""
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} cannot be read: {e}") from None


def load(path: str | Path) -> Config:
    p = Path(path)
    return parse(_read(p), str(p), p.absolute().parent)


def parse(raw: dict[str, Any], source: str = "", base: Path | None = None) -> Config:
    """``base``: the directory relative paths are taken from (the config file's); None for
    a config that is no file (tests), whose paths are then relative to the current one."""
    _take(
        raw,
        "config",
        {
            "node",
            "database",
            "api",
            "mqtt",
            "gates",
            "readers",
            "cameras",
            "sync",
            "rules",
            "alarms",
            "alarm_sources",
            "shifts",
            "handover",
            "snapshots",
            "qr",
        },
    )
    node = raw.get("node")
    if not isinstance(node, dict):
        raise ConfigError("node: the [node] table is required")
    _take(node, "node", {"id", "timezone", "data_dir"})
    node_id = _ident(node, "id", "node")
    tz = _zone(_str(node, "timezone", "node", "Asia/Shanghai"), "node.timezone")
    data_dir = _dir_path(_str(node, "data_dir", "node", "./var"), "node.data_dir", base)

    db = _table(raw, "database")
    _take(db, "database", {"url"})
    url = _str(db, "url", "database", f"sqlite:///{data_dir / 'edge.db'}")
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise ConfigError("database.url: the edge keeps its records in SQLite (sqlite:///PATH)")
    db_path = _at(base, url.removeprefix("sqlite:///"))
    if db_path.is_dir():
        raise ConfigError(f"database.url: {str(db_path)!r} is a directory, not a database file")
    _dir_path(str(db_path.parent), "database.url", None)

    api = _table(raw, "api")
    _take(api, "api", {"listen"})
    host, api_port = _listen(_str(api, "listen", "api", "127.0.0.1:8080"), "api.listen")

    mqtt = None
    if "mqtt" in raw:
        m = _table(raw, "mqtt")
        _take(m, "mqtt", {"url", "prefix", "username", "password", "password_file", "keepalive_s"})
        murl = _str(m, "url", "mqtt", MqttCfg.url)
        _url(murl, "mqtt.url", ("mqtt", "mqtts"), "mqtt:// or mqtts://")
        password = _secret(m, "password", "mqtt", base)
        if password is not None and not isinstance(password, str):
            raise ConfigError("mqtt.password: must be a string (or use password_file)")
        prefix = _str(m, "prefix", "mqtt", "gatehouse").strip("/")
        # every topic is <prefix>/<node>/...: a wildcard or an empty level there would make
        # the node publish where it cannot, or subscribe to what it must not
        if not prefix or any(c in prefix for c in "#+") or "//" in prefix:
            raise ConfigError(f"mqtt.prefix: {prefix!r} must be topic levels without + or #")
        mqtt = MqttCfg(
            url=murl,
            prefix=prefix,
            username=_opt_str(m, "username", "mqtt"),
            password=password,
            keepalive_s=int(_num(m, "keepalive_s", "mqtt", 15, 5, 600)),
        )

    gates_raw = _tables(raw, "gates")
    if not gates_raw:
        raise ConfigError("gates: at least one [[gates]] entry is required")
    gates: list[str] = []
    for i, g in enumerate(gates_raw):
        _take(g, f"gates[{i}]", {"id", "name"})
        gid = _ident(g, "id", f"gates[{i}]")
        if gid in gates:
            raise ConfigError(f"gates[{i}].id: {gid!r} appears twice")
        _opt_str(g, "name", f"gates[{i}]")
        gates.append(gid)

    readers: list[ReaderCfg] = []
    for i, r in enumerate(_tables(raw, "readers")):
        where = f"readers[{i}]"
        _take(r, where, set(ReaderCfg.__dataclass_fields__))
        rid = _ident(r, "id", where)
        if any(x.id == rid for x in readers):
            raise ConfigError(f"{where}.id: {rid!r} appears twice")
        gate = _str(r, "gate", where)
        if gate not in gates:
            raise ConfigError(f"{where}.gate: {gate!r} is not one of the [[gates]]")
        direction = r.get("direction", "in")
        if direction not in ("in", "out"):
            raise ConfigError(f"{where}.direction: must be 'in' or 'out'")
        transport = r.get("transport", "serial")
        if transport not in ("serial", "mqtt"):
            raise ConfigError(f"{where}.transport: must be 'serial' or 'mqtt'")
        protocol = r.get("protocol", "rdm6300")
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"{where}.protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}"
            )
        card_format = r.get("card_format", "auto")
        if card_format not in ("auto", "hex", "dec"):
            raise ConfigError(f"{where}.card_format: must be auto, hex or dec")
        port = None
        if transport == "serial":
            port = str(_at(base, _str(r, "port", where)))
        elif mqtt is None:
            raise ConfigError(f"{where}.transport: 'mqtt' needs an [mqtt] table")
        silent = r.get("silent_after_s")
        readers.append(
            ReaderCfg(
                id=rid,
                gate=gate,
                direction=direction,
                transport=transport,
                port=port,
                baudrate=int(_num(r, "baudrate", where, 9600, 300, 4_000_000)),
                protocol=protocol,
                card_format=card_format,
                debounce_ms=int(_num(r, "debounce_ms", where, 1500, 0, 60_000)),
                inter_byte_timeout_ms=int(_num(r, "inter_byte_timeout_ms", where, 100, 1, 10_000)),
                silent_after_s=None
                if silent is None
                else _num(r, "silent_after_s", where, 0, 1, 1e7),
            )
        )

    rules_raw = _table(raw, "rules")
    _take(rules_raw, "rules", {"worker_hours", "stale_after_s", "open_pulse_ms", "name_mask"})
    name_mask = rules_raw.get("name_mask", "surname")
    if name_mask not in NAME_MASKS:
        raise ConfigError(f"rules.name_mask: must be one of {', '.join(NAME_MASKS)}")
    rules = RulesCfg(
        worker_hours=parse_hours(
            _str(rules_raw, "worker_hours", "rules", "07:00-19:00"), "rules.worker_hours"
        ),
        stale_after_s=float(_num(rules_raw, "stale_after_s", "rules", 3.0, 0.1, 3600)),
        open_pulse_ms=int(_num(rules_raw, "open_pulse_ms", "rules", 1000, 50, 60_000)),
        name_mask=name_mask,
    )

    cameras: list[CameraCfg] = []
    for i, c in enumerate(_tables(raw, "cameras")):
        where = f"cameras[{i}]"
        _take(c, where, set(CameraCfg.__dataclass_fields__))
        cid = _ident(c, "id", where)
        if any(x.id == cid for x in cameras):
            raise ConfigError(f"{where}.id: {cid!r} appears twice")
        if c.get("gate") not in gates:
            raise ConfigError(f"{where}.gate: {c.get('gate')!r} is not one of the [[gates]]")
        if any(x.gate == c["gate"] for x in cameras):
            raise ConfigError(f"{where}.gate: {c['gate']!r} has a camera already (one per gate)")
        decode = c.get("decode", "every_frame")
        if decode not in ("every_frame", "on_demand"):
            raise ConfigError(f"{where}.decode: must be every_frame or on_demand")
        source = c.get("source")
        if isinstance(source, int) and not isinstance(source, bool):
            source = str(source)
        if not isinstance(source, str) or not source:
            raise ConfigError(f"{where}.source: a URL, a file or a device index")
        if "://" not in source and not source.isdigit():
            source = str(_at(base, source))
        cameras.append(
            CameraCfg(
                id=cid, gate=c["gate"], source=source,
                offline_after_s=float(_num(c, "offline_after_s", where, 5, 1, 3600)),
                frozen_after_s=float(_num(c, "frozen_after_s", where, 10, 1, 3600)),
                covered_after_s=float(_num(c, "covered_after_s", where, 3, 0, 3600)),
                stale_after_ms=int(_num(c, "stale_after_ms", where, 2000, 10, 600_000)),
                open_timeout_ms=int(_num(c, "open_timeout_ms", where, 5000, 100, 120_000)),
                read_timeout_ms=int(_num(c, "read_timeout_ms", where, 5000, 100, 120_000)),
                decode=decode,
            )
        )  # fmt: skip
    snaps = _table(raw, "snapshots")
    _take(snaps, "snapshots", {"retention_days", "quota_mb", "jpeg_quality"})
    snapshots_cfg = SnapshotsCfg(
        retention_days=float(_num(snaps, "retention_days", "snapshots", 30, 0.01, 3650)),
        quota_mb=float(_num(snaps, "quota_mb", "snapshots", 2048, 0.001, 10_000_000)),
        jpeg_quality=int(_num(snaps, "jpeg_quality", "snapshots", 85, 10, 100)),
    )
    sync = None
    if "sync" in raw:
        sync = _sync(_table(raw, "sync"), base)

    alarms = _alarms(raw, gates)
    qr_raw = _table(raw, "qr")
    _take(qr_raw, "qr", {"office_public_keys"})
    qr_keys = qr_raw.get("office_public_keys", [])
    if not isinstance(qr_keys, list) or not all(_is_key(k) for k in qr_keys):
        raise ConfigError("qr.office_public_keys: a list of keys from `gatehouse office key`")
    shifts = DEFAULT_SHIFTS
    if "shifts" in raw:
        shifts_raw = _tables(raw, "shifts")
        if not shifts_raw:
            raise ConfigError("shifts: give at least one [[shifts]] entry")
        parsed: list[ShiftCfg] = []
        for i, sh in enumerate(shifts_raw):
            _take(sh, f"shifts[{i}]", {"name", "hours"})
            start, end = parse_hours(_str(sh, "hours", f"shifts[{i}]"), f"shifts[{i}].hours")
            name = _ident(sh, "name", f"shifts[{i}]")
            if any(x.name == name for x in parsed):  # a handover names its shift by name
                raise ConfigError(f"shifts[{i}].name: {name!r} appears twice")
            parsed.append(ShiftCfg(name, start, end))
        shifts = tuple(parsed)
    handover = _table(raw, "handover")
    _take(handover, "handover", {"items"})
    items = handover.get("items", {})
    if not isinstance(items, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items.values()
    ):
        raise ConfigError("handover.items: a table of item name = count, e.g. radios = 4")

    return Config(
        qr_keys=tuple(qr_keys),
        alarms=alarms,
        shifts=shifts,
        post_items=dict(items),
        node_id=node_id,
        tz=tz,
        data_dir=data_dir,
        db_path=db_path,
        api_host=host.strip("[]"),
        api_port=api_port,
        mqtt=mqtt,
        gates=tuple(gates),
        readers=tuple(readers),
        rules=rules,
        cameras=tuple(cameras),
        snapshots=snapshots_cfg,
        sync=sync,
        source=source,
    )


def _alarms(raw: dict[str, Any], gates: list[str]) -> AlarmsCfg:
    a = _table(raw, "alarms")
    _take(a, "alarms", {"escalate_after_s", "priorities", "checklists", "repeated_denials",
                        "repeated_denials_window_s"})  # fmt: skip
    escalate = dict(AlarmsCfg().escalate_after_s)
    for key, value in _table(a, "escalate_after_s", "alarms").items():
        if (
            key not in ("1", "2", "3")
            or isinstance(value, bool)
            or not isinstance(value, int | float)
            or value <= 0
        ):
            raise ConfigError(f"alarms.escalate_after_s.{_key(key)}: priorities 1-3, seconds > 0")
        escalate[int(key)] = float(value)
    priorities = {}
    for key, value in _table(a, "priorities", "alarms").items():
        if isinstance(value, bool) or value not in (1, 2, 3):
            raise ConfigError(f"alarms.priorities.{_key(key)}: must be 1, 2 or 3")
        priorities[key] = value
    checklists = {}
    for key, steps in _table(a, "checklists", "alarms").items():
        if not isinstance(steps, list) or not all(isinstance(x, str) and x for x in steps):
            raise ConfigError(f"alarms.checklists.{_key(key)}: a list of steps (text)")
        checklists[key] = tuple(steps)
    sources: dict[str, tuple[str | None, str | None]] = {}
    for i, src in enumerate(_tables(raw, "alarm_sources")):
        where = f"alarm_sources[{i}]"
        _take(src, where, {"id", "gate", "location"})
        gate = src.get("gate")
        if gate is not None and gate not in gates:
            raise ConfigError(f"{where}.gate: {gate!r} is not one of the [[gates]]")
        source_id = _ident(src, "id", where)
        if source_id in sources:
            raise ConfigError(f"{where}.id: {source_id!r} appears twice")
        sources[source_id] = (gate, _opt_str(src, "location", where))
    return AlarmsCfg(
        escalate_after_s=escalate,
        priorities=priorities,
        checklists=checklists,
        sources=sources,
        repeated_denials=int(_num(a, "repeated_denials", "alarms", 3, 2, 100)),
        repeated_denials_window_s=float(
            _num(a, "repeated_denials_window_s", "alarms", 60, 1, 3600)
        ),
    )


@dataclass(frozen=True)
class OfficeCfg:
    """The office server's config: the ``[office]`` table of its TOML file."""

    database_url: str
    host: str
    port: int
    data_dir: Path
    tz: ZoneInfo
    source: str = ""
    tls_cert: str | None = None  # serve HTTPS with this certificate and key
    tls_key: str | None = None
    insecure: bool = False  # serve cleartext beyond loopback, by choice (logged at start)


OFFICE_KEYS = {"database_url", "listen", "data_dir", "timezone", "tls_cert", "tls_key", "insecure"}


def is_office(path: str | Path) -> bool:
    """Whether a config file is an office's (it has [office] and no [node])."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return "office" in raw and "node" not in raw


def load_office(path: str | Path) -> OfficeCfg:
    p = Path(path)
    base = p.absolute().parent
    raw = _read(p)
    office = raw.get("office")
    if not isinstance(office, dict):
        raise ConfigError("office: the [office] table is required for the office server")
    _take(raw, "config", {"office"})  # a typo'd table is an error here too, not ignored
    _take(office, "office", OFFICE_KEYS)
    tls = [office.get("tls_cert"), office.get("tls_key")]
    if any(tls):
        if not all(isinstance(x, str) and _at(base, x).is_file() for x in tls):
            raise ConfigError("office.tls_cert, office.tls_key: both, as readable files")
        tls = [str(_at(base, x)) for x in tls]
    url = _str(office, "database_url", "office")
    if not url.startswith("postgresql://"):
        raise ConfigError("office.database_url: must be postgresql://...")
    _url(url, "office.database_url", ("postgresql",), "postgresql://")
    listen = _str(office, "listen", "office", "127.0.0.1:9090")
    host, port = _listen(listen, "office.listen")
    tz = _zone(_str(office, "timezone", "office", "Asia/Shanghai"), "office.timezone")
    data_dir = _dir_path(
        _str(office, "data_dir", "office", "./var/office"), "office.data_dir", base
    )
    insecure = _flag(office, "insecure", "office")
    if not all(tls) and not insecure and not is_loopback(host):
        raise ConfigError(
            f"office.listen: {listen!r} is beyond loopback and would serve cleartext; set "
            "tls_cert and tls_key, or insecure = true in [office] to accept cleartext on a "
            "trusted LAN"
        )
    return OfficeCfg(url, host, port, data_dir, tz, str(p), tls[0], tls[1], insecure)


def _zone(name: str, where: str) -> ZoneInfo:
    """A time zone of the system's database, by its name (never a path: ZoneInfo refuses
    those, and a name too long for the file system is as unknown)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(f"{where}: unknown time zone {name!r}") from None


def _sync(s: dict[str, Any], base: Path | None) -> SyncCfg:
    _take(s, "sync", {"office_url", "token", "token_file", "push_batch", "retry_max_s", "ca_file",
                      "insecure"})  # fmt: skip
    ca_file = s.get("ca_file")
    if ca_file is not None:
        if not (isinstance(ca_file, str) and _at(base, ca_file).is_file()):
            raise ConfigError("sync.ca_file: must be a readable file")
        ca_file = str(_at(base, ca_file))
    url = _str(s, "office_url", "sync")
    _url(url, "sync.office_url", ("http", "https"), "http:// or https://")
    token = _secret(s, "token", "sync", base)
    if not isinstance(token, str) or not token:
        raise ConfigError("sync.token: the node's token from `gatehouse office node add`")
    cfg = SyncCfg(
        office_url=url.rstrip("/"),
        token=token,
        push_batch=int(_num(s, "push_batch", "sync", 2000, 1, 10_000)),
        retry_max_s=float(_num(s, "retry_max_s", "sync", 60, 0.1, 3600)),
        ca_file=ca_file,
        insecure=_flag(s, "insecure", "sync"),
    )
    if cfg.cleartext and not cfg.insecure:  # checked last: a key's own error comes first
        raise ConfigError(
            f"sync.office_url: {url!r} is cleartext http:// to another machine; use https:// "
            "(with ca_file for a private certificate), or set insecure = true in [sync] to "
            "accept cleartext on a trusted LAN"
        )
    return cfg


def _is_key(k: object) -> bool:
    try:
        return isinstance(k, str) and len(base64.b64decode(k, validate=True)) == 32
    except ValueError:
        return False
