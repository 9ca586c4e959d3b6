"""The config file (TOML, CONTRACT.md), declared once as pydantic models: loaded once, checked
whole, every error one line naming its key.

Each table is a model (unknown keys refused); each value type says in its validator what it
accepts, in the words the error prints. A pydantic error becomes one ConfigError line: the key
as the file spells it (``readers[0].port``) and what is wrong.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from drivers.registry import PARSERS
from edge.errors import DomainError
from edge.privacy import NAME_MASKS

DEFAULT_CONFIG = "config/gatehouse.example.toml"
PROTOCOLS = tuple(PARSERS)


class ConfigError(ValueError):
    """A bad config; the message names the key and the problem."""


class Bad(ValueError):
    """A value refused by a validator: the message says why; ``key`` names the key below
    where pydantic found it (a check of a whole table names the key it is about)."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


# --- the value types: each refuses with the words its error prints ---------------------------


def _base(info: ValidationInfo) -> Path | None:
    """The directory relative paths are taken from: the config file's (None: the current
    directory, for a config that is no file)."""
    return (info.context or {}).get("base")


def _text(value: Any) -> Any:
    if value is None:  # TOML has no null: None is only ever a default
        return None
    if not isinstance(value, str) or not value:
        raise Bad("must be a non-empty string")
    if "\x00" in value:  # no file, zone or device name holds one; the OS refuses it later
        raise Bad("must not contain a NUL character")
    return value


_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _ident(value: Any) -> str:
    value = _text(value)
    if not _ID_RE.match(value):
        raise Bad(f"{value!r} may hold only letters, digits, _ . -")
    return value


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):  # not 1, not "yes": a typo must not turn a switch on
        raise Bad("must be true or false")
    return value


def In(lo: float, hi: float) -> BeforeValidator:  # named as a type: Annotated[int, In(1, 9)]
    """A number from ``lo`` to ``hi`` (not a bool, not a string of digits, not NaN)."""

    def check(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise Bad(f"must be a number from {lo:g} to {hi:g}")
        return value

    return BeforeValidator(check)


def _zone(value: Any) -> ZoneInfo:
    """A time zone of the system's database, by its name (never a path: ZoneInfo refuses
    those, and a name too long for the file system is as unknown)."""
    name = _text(value)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise Bad(f"unknown time zone {name!r}") from None


def _listen(value: Any) -> tuple[str, int]:
    """HOST:PORT, the port in ASCII digits from 0 to 65535 (``int`` would take "٨٠" and
    throw on "8²" or 5,000 digits)."""
    value = _text(value)
    m = re.fullmatch(r"(.+):([0-9]{1,5})", value)
    if not m or int(m.group(2)) > 65535:
        raise Bad(f"{value!r} is not HOST:PORT")
    return m.group(1).strip("[]"), int(m.group(2))


def _listen_text(value: Any) -> str:
    _listen(value)
    return value


def _host(host: str) -> str:
    """A host as HOST:PORT spells it (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def _hours(value: Any) -> tuple[time, time]:
    if isinstance(value, tuple):  # already a window (a default, or a model built in code)
        return value
    text = _text(value)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", text.strip())
    if not m:
        raise Bad(f"{text!r} is not a window like '07:00-19:00'")
    h1, m1, h2, m2 = map(int, m.groups())
    if m1 > 59 or m2 > 59:
        raise Bad(f"{text!r}: minutes run from 00 to 59")
    if h1 > 23:
        raise Bad(f"{text!r}: a window starts at 00:00-23:59 (24:00 is an end)")
    if h2 > 24 or (h2 == 24 and m2 != 0):
        raise Bad(f"{text!r}: a window ends at 00:00-24:00")
    return time(h1, m1), time(h2 % 24, m2)


def _clock_time(value: Any) -> time:
    """A time of day "HH:MM"."""
    if isinstance(value, time):
        return value
    text = _text(value)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        raise Bad(f"{text!r} is not a time of day like '19:00'")
    return time(int(m.group(1)), int(m.group(2)))


def parse_hours(text: str, where: str) -> tuple[time, time]:
    """A daily window "HH:MM-HH:MM" as (start, end), local times of day.

    The window runs from its start up to the next time its end comes round: an end at or
    before the start crosses midnight (22:00-06:00), and an end equal to the start is the
    whole day. "24:00" is allowed as an end only and means midnight at the end of the day,
    so it comes back as 00:00: "19:00-24:00" is the evening, "00:00-24:00" all day.
    """
    try:
        return _hours(text)
    except Bad as e:
        raise ConfigError(f"{where}: {e}") from None


def _url(value: str, schemes: tuple[str, ...], example: str) -> str:
    """A URL of one of ``schemes`` with a host and, if any, a port from 1 to 65535."""
    try:
        u = urlparse(value)
        u.port  # noqa: B018 -- raises ValueError for a port that is not one
    except ValueError as e:
        raise Bad(f"{value!r} is not a URL ({e})") from None
    if u.scheme not in schemes:
        raise Bad(f"{value!r} must start with {example}")
    if not u.hostname and schemes != ("postgresql",):  # postgresql:///db is a local socket
        raise Bad(f"{value!r} names no host")
    return value


def _at(base: Path | None, value: str) -> Path:
    """A path the config names. A relative one is relative to the config file's directory,
    not to wherever a command happens to run: `gatehouse pass list` from a home directory
    must reach the service's database, never create an empty one there."""
    path = Path(value)
    return path if base is None or path.is_absolute() else Path(os.path.normpath(base / path))


def _dir_path(path: Path) -> Path:
    """A directory the program may create: not a file, and not under one."""
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise Bad(f"{str(p)!r} is a file, not a directory")
            break
    return path


def _directory(value: Any, info: ValidationInfo) -> Path:
    return _dir_path(_at(_base(info), _text(value)))


def _file_path(value: Any, info: ValidationInfo) -> str | None:
    """A path, relative to the config file, as a string (None stays None)."""
    value = _text(value)
    return None if value is None else str(_at(_base(info), value))


def _credential(value: str, base: Path | None) -> Path:
    """A secret's file. ``%d/NAME`` is a systemd credential: the service reads the copy
    systemd gives it (``LoadCredential=NAME:…``, in ``$CREDENTIALS_DIRECTORY``); a command
    run by hand, which has none, reads the source, in ``credentials/`` beside the config."""
    if not value.startswith("%d/"):
        return _at(base, value)
    name = value.removeprefix("%d/")
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    return Path(creds, name) if creds else _at(base, f"credentials/{name}")


def _secret(data: Any, key: str, info: ValidationInfo) -> Any:
    """A table with ``key_file`` read into ``key`` (keeps secrets out of the config file)."""
    if not isinstance(data, dict) or f"{key}_file" not in data:
        return data
    if key in data:
        raise Bad(f"give {key} or {key}_file, not both", key=f"{key}_file")
    try:
        path = _credential(_text(data[f"{key}_file"]), _base(info))
        text = path.read_text(encoding="utf-8").strip()
    except Bad as e:
        raise Bad(str(e), key=f"{key}_file") from None
    except OSError as e:
        raise Bad(f"cannot be read: {e}", key=f"{key}_file") from None
    except UnicodeDecodeError:
        raise Bad("is not UTF-8 text", key=f"{key}_file") from None
    if not text:  # the installer's empty credential file, not yet filled in
        raise Bad(f"{str(path)!r} is empty; the {key} goes there", key=f"{key}_file")
    return {k: v for k, v in data.items() if k != f"{key}_file"} | {key: text}


def _public_key(value: Any) -> str:
    try:
        if isinstance(value, str) and len(base64.b64decode(value, validate=True)) == 32:
            return value
    except ValueError:
        pass
    raise Bad("a list of keys from `gatehouse office key`")


def _priority(value: Any) -> int:
    if isinstance(value, bool) or value not in (1, 2, 3):
        raise Bad("must be 1, 2 or 3")
    return value


Text = Annotated[str, BeforeValidator(_text)]
OptText = Annotated[str | None, BeforeValidator(_text)]
Ident = Annotated[str, BeforeValidator(_ident)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Zone = Annotated[ZoneInfo, PlainValidator(_zone)]
Listen = Annotated[str, PlainValidator(_listen_text)]  # kept as written; _listen splits it
Hours = Annotated[tuple[time, time], PlainValidator(_hours)]
Directory = Annotated[Path, PlainValidator(_directory)]
FilePath = Annotated[str | None, PlainValidator(_file_path)]
PublicKey = Annotated[str, PlainValidator(_public_key)]
Priority = Annotated[int, PlainValidator(_priority)]


class _Table(BaseModel):
    """A TOML table: its keys are the fields, any other key is refused; read-only after."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


# --- the tables ------------------------------------------------------------------------------


class ReaderCfg(_Table):
    id: Ident
    gate: Text
    direction: Literal["in", "out"] = "in"
    transport: Literal["serial", "mqtt"] = "serial"
    # the serial device, relative to the config file (a pty a test or the demo makes there)
    port: str | None = Field(default=None, validate_default=True)
    baudrate: Annotated[int, In(300, 4_000_000)] = 9600
    protocol: Literal[PROTOCOLS] = "rdm6300"  # type: ignore[valid-type]
    card_format: Literal["auto", "hex", "dec"] = "auto"  # how a `line` reader renders cards
    debounce_ms: Annotated[int, In(0, 60_000)] = 1500  # same card, same reader: one decision
    inter_byte_timeout_ms: Annotated[int, In(1, 10_000)] = 100  # an older partial frame drops
    silent_after_s: Annotated[float | None, In(1, 1e7)] = None  # readiness flags a quiet reader

    @field_validator("port", mode="plain")
    @classmethod
    def serial_port(cls, value: Any, info: ValidationInfo) -> str | None:
        if info.data.get("transport") != "serial":  # (an MQTT reader has no port)
            return None
        return _file_path(value if value is not None else "", info)


def _mqtt_prefix(value: Any) -> str:
    prefix = _text(value).strip("/")
    # every topic is <prefix>/<node>/...: a wildcard or an empty level there would make
    # the node publish where it cannot, or subscribe to what it must not
    if not prefix or any(c in prefix for c in "#+") or "//" in prefix:
        raise Bad(f"{prefix!r} must be topic levels without + or #")
    return prefix


def _broker_url(value: Any) -> str:
    return _url(_text(value), ("mqtt", "mqtts"), "mqtt:// or mqtts://")


class MqttCfg(_Table):
    url: Annotated[str, PlainValidator(_broker_url)] = "mqtt://127.0.0.1:1883"
    prefix: Annotated[str, PlainValidator(_mqtt_prefix)] = "gatehouse"
    username: OptText = None
    password: OptText = None  # or password_file, which is read into it
    keepalive_s: Annotated[int, In(5, 600)] = 15
    # Home Assistant MQTT discovery (edge.ha): off unless asked for
    ha_discovery: bool = False
    ha_prefix: Annotated[str, PlainValidator(_mqtt_prefix)] = "homeassistant"

    @model_validator(mode="before")
    @classmethod
    def read_password_file(cls, data: Any, info: ValidationInfo) -> Any:
        return _secret(data, "password", info)

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


class RulesCfg(_Table):
    worker_hours: Hours = (time(7, 0), time(19, 0))
    stale_after_s: Annotated[float, In(0.1, 3600)] = 3.0  # an older read never opens
    open_pulse_ms: Annotated[int, In(50, 60_000)] = 1000
    name_mask: Literal[NAME_MASKS] = "surname"  # type: ignore[valid-type]


def _camera_source(value: Any, info: ValidationInfo) -> str:
    """Anything OpenCV opens: a URL, a device index, a file (relative to the config)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise Bad("a URL, a file or a device index")
    return value if "://" in value or value.isdigit() else str(_at(_base(info), value))


class CameraCfg(_Table):
    id: Ident
    gate: Text
    source: Annotated[str, PlainValidator(_camera_source)]
    offline_after_s: Annotated[float, In(1, 3600)] = 5.0  # no frames this long: camera_offline
    frozen_after_s: Annotated[float, In(1, 3600)] = 10.0  # identical frames: camera_frozen
    covered_after_s: Annotated[float, In(0, 3600)] = 3.0  # black or uniform: camera_covered
    stale_after_ms: Annotated[int, In(10, 600_000)] = 2000  # a snapshot this far off is stale
    open_timeout_ms: Annotated[int, In(100, 120_000)] = 5000
    read_timeout_ms: Annotated[int, In(100, 120_000)] = 5000
    decode: Literal["every_frame", "on_demand"] = "every_frame"  # on_demand: less CPU


class SnapshotsCfg(_Table):
    retention_days: Annotated[float, In(0.01, 3650)] = 30.0
    quota_mb: Annotated[float, In(0.001, 10_000_000)] = 2048.0
    jpeg_quality: Annotated[int, In(10, 100)] = 85


def _ca_file(value: Any, info: ValidationInfo) -> str | None:
    path = _file_path(value, info) if isinstance(value, str) else value
    if path is not None and not (isinstance(path, str) and Path(path).is_file()):
        raise Bad("must be a readable file")
    return path


def _token(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise Bad("the node's token from `gatehouse office node add`")
    return value


def _office_url(value: Any) -> str:
    return _url(_text(value), ("http", "https"), "http:// or https://").rstrip("/")


class SyncCfg(_Table):
    office_url: Annotated[str, PlainValidator(_office_url)]
    token: Annotated[str, PlainValidator(_token)]  # or token_file, which is read into it
    push_batch: Annotated[int, In(1, 10_000)] = 2000
    retry_max_s: Annotated[float, In(0.1, 3600)] = 60.0  # backoff cap while the office is away
    ca_file: Annotated[str | None, PlainValidator(_ca_file)] = None  # a private certificate's CA
    insecure: Flag = False  # cleartext http:// to an office beyond loopback, by choice

    @model_validator(mode="before")
    @classmethod
    def read_token_file(cls, data: Any, info: ValidationInfo) -> Any:
        data = _secret(data, "token", info)
        if isinstance(data, dict) and "token" not in data:
            raise Bad("the node's token from `gatehouse office node add`", key="token")
        return data

    @model_validator(mode="after")
    def not_cleartext(self) -> SyncCfg:
        if self.cleartext and not self.insecure:  # checked last: a key's own error comes first
            raise Bad(
                f"{self.office_url!r} is cleartext http:// to another machine; use https:// "
                "(with ca_file for a private certificate), or set insecure = true in [sync] to "
                "accept cleartext on a trusted LAN",
                key="office_url",
            )
        return self

    @property
    def cleartext(self) -> bool:
        """Whether the link to the office is cleartext beyond this machine (only ever by
        ``insecure = true``: the config refuses it otherwise)."""
        u = urlparse(self.office_url)
        return u.scheme == "http" and not is_loopback(u.hostname or "")


class ShiftCfg(_Table):
    name: Ident  # a handover names its shift by name
    hours: Hours

    @property
    def start(self) -> time:
        return self.hours[0]

    @property
    def end(self) -> time:
        return self.hours[1]


DEFAULT_SHIFTS = (
    ShiftCfg(name="day", hours=(time(8, 0), time(16, 30))),
    ShiftCfg(name="evening", hours=(time(15, 30), time(0, 0))),
    ShiftCfg(name="night", hours=(time(23, 30), time(8, 0))),
)
DEFAULT_ESCALATION = {1: 30.0, 2: 120.0, 3: 600.0}
STAGES = ("acknowledged", "dispatched", "resolved")  # a help request's, in order
# minutes from raised to each stage (000 §八.10, §八.15; 002 KF-010): a complaint reported
# to the supervisor within 1 h and answered within 2 h, a collective one (5 households or
# more) before the director within 2 h, an urgent repair on site within 15 min
DEFAULT_DEADLINES: dict[str, dict[str, float]] = {
    "complaint": {"dispatched": 60.0, "resolved": 120.0},
    "collective_complaint": {"dispatched": 120.0},
    "repair": {"dispatched": 15.0},
}


def _deadlines(value: Any) -> dict[str, dict[str, float]]:
    """Minutes by type and stage, over the defaults; a type named here has exactly the
    stages given (``complaint = {}``: none)."""
    if not isinstance(value, dict):
        raise Bad("must be a table ([alarms.deadlines] or { key = value })")
    merged = {k: dict(v) for k, v in DEFAULT_DEADLINES.items()}
    for kind, stages in value.items():
        if not isinstance(stages, dict):
            raise Bad("must be a table of stages and minutes, e.g. { resolved = 120 }",
                      key=_key(str(kind)))  # fmt: skip
        for stage, minutes in stages.items():
            if (
                stage not in STAGES
                or isinstance(minutes, bool)
                or not isinstance(minutes, int | float)
                or not 0 < minutes <= 10080
            ):
                raise Bad(f"stages are {', '.join(STAGES)}; minutes from 0 to 10080 (a week)",
                          key=f"{_key(str(kind))}.{_key(str(stage))}")  # fmt: skip
        merged[str(kind)] = {str(k): float(m) for k, m in stages.items()}
    return merged


def _escalation(value: Any) -> dict[int, float]:
    """Seconds by priority, over the defaults: an unacknowledged alarm escalates after this
    long, and again after as long again."""
    if not isinstance(value, dict):
        raise Bad("must be a table ([alarms.escalate_after_s] or { key = value })")
    merged = dict(DEFAULT_ESCALATION)
    for key, seconds in value.items():
        if (
            str(key) not in ("1", "2", "3")
            or isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not seconds > 0
        ):
            raise Bad("priorities 1-3, seconds > 0", key=_key(str(key)))
        merged[int(key)] = float(seconds)
    return merged


class AlarmsCfg(_Table):
    escalate_after_s: Annotated[dict[int, float], PlainValidator(_escalation)] = Field(
        default_factory=lambda: dict(DEFAULT_ESCALATION)
    )
    # a help request's stages and their due times, in minutes from raised (DEFAULT_DEADLINES)
    deadlines: Annotated[dict[str, dict[str, float]], PlainValidator(_deadlines)] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEFAULT_DEADLINES.items()}
    )
    priorities: dict[str, Priority] = {}  # type → priority overrides
    checklists: dict[str, tuple[Text, ...]] = {}  # type → steps
    # alarm-input source id → (gate, location), so a door alarm knows its gate: from the
    # [[alarm_sources]] tables, not from [alarms]
    sources: dict[str, tuple[str | None, str | None]] = {}
    repeated_denials: Annotated[int, In(2, 100)] = 3  # denies of one card at one gate → alarm
    repeated_denials_window_s: Annotated[float, In(1, 3600)] = 60.0

    @field_validator("checklists")
    @classmethod
    def distinct_steps(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        # a step is addressed by a hash of its text (alarms.step_id): two alike would be one
        for kind, steps in value.items():
            twice = next((s for i, s in enumerate(steps) if s in steps[:i]), None)
            if twice is not None:
                raise Bad(f"the step {twice!r} is given twice", key=kind)
        return value

    @model_validator(mode="before")
    @classmethod
    def no_sources_here(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not None and isinstance(data, dict) and "sources" in data:
            raise Bad("unknown key (alarm inputs are [[alarm_sources]] tables)", key="sources")
        return data


class PrivacyCfg(_Table):
    """How long personal data is kept at the gate (docs/privacy.md)."""

    visitor_days: Annotated[float, In(1, 3650)] = 90.0  # visitor records, then purged
    # holder names in access events, then removed (once the office has the event)
    holder_days: Annotated[float, In(1, 3650)] = 180.0
    photo_days: Annotated[float, In(0, 3650)] = 30.0  # a pass's photo after the pass ended


class KeysCfg(_Table):
    """The key cabinet's loans (钥匙借用, docs/keys.md)."""

    # a loan longer than this is chased (003 §六: "借期超过三天" calls for a phone call)
    loan_days: Annotated[float, In(0.01, 365)] = 3.0
    # closed loans (borrowers' names, phones, signatures) are kept this long, then purged
    keep_days: Annotated[float, In(1, 3650)] = 365.0


class PermitsCfg(_Table):
    """Renovation work at the estate (docs/permits.md)."""

    # the end of the working day (000 §七: renovation 08:00-19:00 by default): then the
    # guard's screen and the duty log name the workers who came in and have not left
    work_ends: Annotated[time, BeforeValidator(_clock_time)] = time(19, 0)


class CheckpointCfg(_Table):
    """A patrol checkpoint (巡更点): a tag (a card or a QR at a place) a guard reads."""

    id: Ident
    name: Text
    tag: Text  # the card number or QR text the tag reads as


class RouteCfg(_Table):
    """A patrol route: its checkpoints, read in any order within ``minutes`` of its start."""

    id: Ident
    name: Text
    checkpoints: tuple[Ident, ...] = Field(min_length=1)
    minutes: Annotated[float, In(1, 1440)] = 60.0


class PlanCfg(_Table):
    """When a route is walked: its start times each day (a round per time), in the months
    given (a season: renovation rounds within 07:00-21:00 in summer, 08:00-22:00 in
    winter, 003 ch.3 §七) or all year."""

    route: Ident
    at: tuple[Annotated[time, BeforeValidator(_clock_time)], ...] = Field(min_length=1)
    months: tuple[Annotated[int, In(1, 12)], ...] = ()  # empty: every month


class PatrolCfg(_Table):
    """Patrol rounds (巡查, docs/patrol.md)."""

    checkpoints: tuple[CheckpointCfg, ...] = ()
    routes: tuple[RouteCfg, ...] = ()
    plans: tuple[PlanCfg, ...] = ()
    # the day's fault notices are handed in to the duty officer at this time (KF-013 §4.2):
    # then the duty log lists them, and names those he has not received
    faults_due: Annotated[time, BeforeValidator(_clock_time)] = time(17, 30)

    @model_validator(mode="after")
    def references(self) -> PatrolCfg:
        _unique([c.id for c in self.checkpoints], "patrol.checkpoints")
        _unique([c.tag for c in self.checkpoints], "patrol.checkpoints", "tag")
        known = {c.id for c in self.checkpoints}
        _unique([r.id for r in self.routes], "patrol.routes")
        for i, r in enumerate(self.routes):
            for cp in r.checkpoints:
                if cp not in known:
                    raise Bad(f"{cp!r} is not one of the [[patrol.checkpoints]]",
                              key=f"patrol.routes[{i}].checkpoints")  # fmt: skip
        routes = {r.id for r in self.routes}
        for i, plan in enumerate(self.plans):
            if plan.route not in routes:
                raise Bad(f"{plan.route!r} is not one of the [[patrol.routes]]",
                          key=f"patrol.plans[{i}].route")  # fmt: skip
        return self


def _notify_url(value: Any) -> str:
    """An Apprise URL (wecombot://, dingtalk://, ntfy://, mailtos://, tgram://, json:// …) that
    Apprise can build a sender from; ``{unit}`` may stand for a host's unit."""
    import apprise  # here, not at the top: only a config with channels pays for it

    url = _text(value)
    try:
        filled = url.format(unit="0")
    except (KeyError, IndexError, ValueError):
        raise Bad("may hold no braces but {unit}") from None
    if apprise.Apprise.instantiate(filled) is None:
        raise Bad(
            f"{hide_notify_url(url)!r} is not a notification URL Apprise knows "
            "(wecombot://, dingtalk://, ntfy://, mailtos://, tgram://, json:// …)"
        )
    return url


class ChannelCfg(_Table):
    """Where news goes off the box (docs/notify.md): one Apprise URL and which news it takes.
    An alarm is taken when its type, priority, routing and escalation level all match."""

    id: Ident
    url: Annotated[str, PlainValidator(_notify_url)]  # or url_file, read into it (a secret)
    # what it takes: an alarm raised, escalated, resolved; a visitor arrived for a unit; a
    # gate's mode changed (held open for a fire, locked for a robbery, normal again)
    events: tuple[Literal["raised", "escalated", "resolved", "visitor", "gate_mode"], ...] = (
        "raised", "escalated")  # fmt: skip
    types: tuple[Ident, ...] = ()  # alarm types; empty: every type
    max_priority: Priority = 3  # alarms of this priority or more urgent (1 is the most)
    min_level: Annotated[int, In(0, 20)] = 0  # an escalation at this level or above
    route_to: tuple[Literal["director", "service_supervisor"], ...] = ()  # help requests
    quiet: Hours | None = None  # in these hours only priority 1 goes through

    @model_validator(mode="before")
    @classmethod
    def read_url_file(cls, data: Any, info: ValidationInfo) -> Any:
        data = _secret(data, "url", info)
        if isinstance(data, dict) and "url" not in data:
            raise Bad("is required (or url_file)", key="url")
        return data

    @model_validator(mode="after")
    def unit_for_visitors(self) -> ChannelCfg:
        if "{unit}" in self.url and set(self.events) != {"visitor"}:
            raise Bad("a URL with {unit} (a host's own) takes events = [\"visitor\"] only",
                      key="events")  # fmt: skip
        return self


class NotifyCfg(_Table):
    """Notifications off the box ([notify] and its [[notify.channels]])."""

    channels: tuple[ChannelCfg, ...] = ()
    # at most this many messages to one channel in flood_window_s: the rest go as one summary
    flood: Annotated[int, In(2, 1000)] = 10
    flood_window_s: Annotated[float, In(1, 3600)] = 60.0
    retry_s: Annotated[float, In(1, 3600)] = 30.0  # a failed channel waits, doubling to 10×
    # a visitor's arrival not told within this long is not told at all
    visitor_stale_s: Annotated[float, In(60, 86400)] = 900.0

    @model_validator(mode="after")
    def distinct(self) -> NotifyCfg:
        _unique([c.id for c in self.channels], "notify.channels")
        return self


class _Node(_Table):
    id: Ident
    timezone: Zone = Field(default="Asia/Shanghai", validate_default=True)
    data_dir: Directory = Field(default="./var", validate_default=True)


class _Database(_Table):
    url: OptText = None  # sqlite:///PATH; default: edge.db in the data_dir


class _Api(_Table):
    listen: Listen = Field(default="127.0.0.1:8080", validate_default=True)


class DoorCfg(_Table):
    """A gate's door or barrier position input (``gate/<id>/contact`` on MQTT) compared
    with its own grants (edge.door): opened with none → door_forced; open too long →
    door_held; grants that never move it → contact_stuck."""

    contact: bool = False  # the gate reports its position; off: nothing is supervised
    held_open_s: Annotated[float, In(3, 3600)] = 30.0  # open longer: door_held
    # an opening this soon after a grant, a manual opening or an exit request is theirs
    window_s: Annotated[float, In(1, 120)] = 10.0
    stuck_after_grants: Annotated[int, In(2, 100)] = 3  # grants with no change: stuck


class _Gate(_Table):
    id: Ident
    name: OptText = None
    door: DoorCfg = DoorCfg()
    # a fire or smoke alarm input holds this gate open (the lane for the fire engines,
    # 000 §八.13) until the control room sets it back to normal
    open_on_fire: bool = False


class _AlarmSource(_Table):
    id: Ident
    gate: OptText = None
    location: OptText = None


class _Qr(_Table):
    office_public_keys: tuple[PublicKey, ...] = ()  # the office's Ed25519 public keys, base64


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Bad("a table of item name = count, e.g. radios = 4")
    return value


class _Handover(_Table):
    items: dict[str, Annotated[int, PlainValidator(_count)]] = {}  # the post's items to count


def _uncovered(windows: list[tuple[time, time]]) -> str:
    """The first stretch of the day no window covers, as "HH:MM-HH:MM" ("" when none).
    A roster with a gap had no shift on duty in it: alarms could not be shelved to its end
    and a handover there was built for the wrong shift. Windows read as shifts do
    (edge.shifts): an end at or before the start is the next day's."""
    day = [False] * 1440
    for start, end in windows:
        a, b = start.hour * 60 + start.minute, end.hour * 60 + end.minute
        for m in range(a, b if b > a else b + 1440):
            day[m % 1440] = True
    if all(day):
        return ""
    # from a covered minute on (a shift covers one at least): a gap across midnight whole
    first = next(m for m in range(day.index(True), day.index(True) + 1440) if not day[m % 1440])
    last = next(m for m in range(first, first + 1440) if day[m % 1440])
    return f"{first // 60 % 24:02d}:{first % 60:02d}-{last // 60 % 24:02d}:{last % 60:02d}"


def _unique(ids: list[str], where: str, key: str = "id") -> None:
    for i, value in enumerate(ids):
        if value in ids[:i]:
            raise Bad(f"{value!r} appears twice", key=f"{where}[{i}].{key}")


class _File(_Table):
    """A gate's config file, whole; the cross-table checks run once each table is good."""

    node: _Node
    database: _Database = _Database()
    api: _Api = Field(default_factory=_Api)
    mqtt: MqttCfg | None = None
    gates: tuple[_Gate, ...] = ()
    readers: tuple[ReaderCfg, ...] = ()
    rules: RulesCfg = RulesCfg()
    cameras: tuple[CameraCfg, ...] = ()
    snapshots: SnapshotsCfg = SnapshotsCfg()
    sync: SyncCfg | None = None
    alarms: AlarmsCfg = Field(default_factory=AlarmsCfg)
    alarm_sources: tuple[_AlarmSource, ...] = ()
    qr: _Qr = _Qr()
    shifts: tuple[ShiftCfg, ...] = DEFAULT_SHIFTS
    handover: _Handover = _Handover()
    privacy: PrivacyCfg = PrivacyCfg()
    keys: KeysCfg = KeysCfg()
    permits: PermitsCfg = PermitsCfg()
    patrol: PatrolCfg = PatrolCfg()
    notify: NotifyCfg = NotifyCfg()

    @model_validator(mode="after")
    def across_tables(self) -> _File:
        if not self.gates:
            raise Bad("at least one [[gates]] entry is required", key="gates")
        gates = [g.id for g in self.gates]
        _unique(gates, "gates")
        _unique([r.id for r in self.readers], "readers")
        for i, r in enumerate(self.readers):
            if r.gate not in gates:
                raise Bad(f"{r.gate!r} is not one of the [[gates]]", key=f"readers[{i}].gate")
            if r.transport == "mqtt" and self.mqtt is None:
                raise Bad("'mqtt' needs an [mqtt] table", key=f"readers[{i}].transport")
        _unique([c.id for c in self.cameras], "cameras")
        for i, c in enumerate(self.cameras):
            if c.gate not in gates:
                raise Bad(f"{c.gate!r} is not one of the [[gates]]", key=f"cameras[{i}].gate")
            if any(x.gate == c.gate for x in self.cameras[:i]):
                raise Bad(f"{c.gate!r} has a camera already (one per gate)",
                          key=f"cameras[{i}].gate")  # fmt: skip
        _unique([s.id for s in self.alarm_sources], "alarm_sources")
        for i, s in enumerate(self.alarm_sources):
            if s.gate is not None and s.gate not in gates:
                raise Bad(f"{s.gate!r} is not one of the [[gates]]",
                          key=f"alarm_sources[{i}].gate")  # fmt: skip
        _channel_types(self)
        if not self.shifts:
            raise Bad("give at least one [[shifts]] entry", key="shifts")
        _unique([s.name for s in self.shifts], "shifts", "name")
        gap = _uncovered([s.hours for s in self.shifts])
        if gap:
            raise Bad(f"{gap} is in no shift; the shifts must cover the whole day (they may "
                      "overlap, for the handover)", key="shifts")  # fmt: skip
        return self


def _channel_types(f: _File) -> None:
    """A channel's ``types`` are alarm types the gate knows (its own, the help requests',
    and those the site named in [alarms]): a misspelt one would never match, in silence."""
    from edge.alarms import DEVICE_TYPES, HELP_TYPES  # here: edge.alarms reads this module

    known = {*DEVICE_TYPES, *HELP_TYPES, *f.alarms.priorities, *f.alarms.checklists}
    for i, ch in enumerate(f.notify.channels):
        for kind in ch.types:
            if kind not in known:
                raise Bad(f"{kind!r} is no alarm type (fire, smoke, door_forced, first_aid, …)",
                          key=f"notify.channels[{i}].types")  # fmt: skip


def _db_path(file: _File, base: Path | None) -> Path:
    """The SQLite file ``database.url`` names (default: edge.db in the data_dir)."""
    url = file.database.url or f"sqlite:///{file.node.data_dir / 'edge.db'}"
    if not url.startswith("sqlite:///") or url == "sqlite:///":
        raise Bad("the edge keeps its records in SQLite (sqlite:///PATH)", key="database.url")
    path = _at(base, url.removeprefix("sqlite:///"))
    if path.is_dir():
        raise Bad(f"{str(path)!r} is a directory, not a database file", key="database.url")
    try:
        _dir_path(path.parent)
    except Bad as e:
        raise Bad(str(e), key="database.url") from None
    return path


@dataclass(frozen=True)
class Config:
    """What a gate runs on: the checked tables of its config file, flattened where the code
    reads them."""

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
    doors: dict[str, DoorCfg] = field(default_factory=dict)  # the gates with a contact
    fire_gates: tuple[str, ...] = ()  # held open by a fire alarm (edge.modes)
    cameras: tuple[CameraCfg, ...] = ()
    snapshots: SnapshotsCfg = field(default_factory=SnapshotsCfg)
    sync: SyncCfg | None = None
    qr_keys: tuple[str, ...] = ()  # the office's Ed25519 public keys, base64
    alarms: AlarmsCfg = field(default_factory=AlarmsCfg)
    shifts: tuple[ShiftCfg, ...] = DEFAULT_SHIFTS
    post_items: dict[str, int] = field(default_factory=dict)  # the post's items to count
    privacy: PrivacyCfg = field(default_factory=PrivacyCfg)
    keys: KeysCfg = field(default_factory=KeysCfg)
    permits: PermitsCfg = field(default_factory=PermitsCfg)
    patrol: PatrolCfg = field(default_factory=PatrolCfg)
    notify: NotifyCfg = field(default_factory=NotifyCfg)
    source: str = ""  # the config file

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def known_gate(self, gate: str) -> str:
        """``gate`` if it is one of this node's gates; else DomainError naming it."""
        if gate not in self.gates:
            raise DomainError(f"gate: {gate!r} is not one of this node's gates")
        return gate


def _tls_file(value: Any, info: ValidationInfo) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or not _at(_base(info), value).is_file():
        raise Bad("give tls_cert and tls_key both, as readable files")
    return str(_at(_base(info), value))


class OfficeCfg(_Table):
    """The office server's config: the ``[office]`` table of its TOML file."""

    database_url: Annotated[str, BeforeValidator(_text)]
    listen: Listen = Field(default="127.0.0.1:9090", validate_default=True)
    data_dir: Directory = Field(default="./var/office", validate_default=True)
    tz: Zone = Field(default="Asia/Shanghai", validate_default=True, alias="timezone")
    tls_cert: Annotated[str | None, PlainValidator(_tls_file)] = None  # serve HTTPS with these
    tls_key: Annotated[str | None, PlainValidator(_tls_file)] = None
    insecure: Flag = False  # serve cleartext beyond loopback, by choice (logged at start)
    # the largest camera picture a gate sends (sync.snapshots); a larger one it reduces first
    snapshot_max_bytes: int = Field(default=256 * 1024, ge=16 * 1024, le=8 * 1024 * 1024)

    @field_validator("database_url")
    @classmethod
    def postgresql(cls, url: str) -> str:
        if not url.startswith("postgresql://"):
            raise Bad("must be postgresql://...")
        return _url(url, ("postgresql",), "postgresql://")

    @model_validator(mode="after")
    def tls_or_loopback(self) -> OfficeCfg:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise Bad("give tls_cert and tls_key both, as readable files",
                      key="tls_key" if self.tls_key is None else "tls_cert")  # fmt: skip
        if self.tls_cert is None and not self.insecure and not is_loopback(self.host):
            raise Bad(
                f"'{_host(self.host)}:{self.port}' is beyond loopback and would serve "
                "cleartext; set tls_cert and tls_key, or insecure = true in [office] to accept "
                "cleartext on a trusted LAN",
                key="listen",
            )
        return self

    @property
    def host(self) -> str:
        return _listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _listen(self.listen)[1]


class _OfficeFile(_Table):
    office: OfficeCfg


# --- errors, and reading a file --------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _key(key: str) -> str:
    """A key as an error names it: quoted when it is not a plain word (a key may hold a line
    break or anything else in TOML, and the error must stay one line)."""
    return key if _PLAIN_KEY.match(key) else repr(key)


def _where(loc: tuple[int | str, ...], key: str = "") -> str:
    """``('readers', 0, 'port')`` as the file spells it: ``readers[0].port``."""
    out = ""
    for part in loc:
        if part == "[key]":  # pydantic's mark for a dict's key; the key itself follows
            continue
        out += f"[{part}]" if isinstance(part, int) else f"{'.' if out else ''}{_key(part)}"
    if key:
        out += key if key.startswith("[") or not out else f".{key}"
    return out


_TABLES_OF_ONE = ("tuple_type", "list_type")
_TABLE_TYPES = ("model_type", "model_attributes_type", "dict_type")


def _one_line(err: ValidationError, file: type[BaseModel], required: str = "") -> ConfigError:
    """The first error as one line naming its key. Unknown keys come first: a misspelt key
    is what makes a value look missing or wrong, after a required table that is not there
    (the file is for something else). ``file``: the model of the whole file (its
    required tables, missing or not tables, are "required")."""

    def table_missing(e: Any) -> bool:
        loc, fields = e["loc"], file.model_fields
        return (len(loc) == 1 and e["type"] in ("missing", *_TABLE_TYPES)
                and loc[0] in fields and fields[loc[0]].is_required())  # fmt: skip

    def rank(e: Any) -> int:
        return 0 if table_missing(e) else 1 if e["type"] == "extra_forbidden" else 2

    e = min(err.errors(), key=rank)  # the first of the best rank: min keeps the order
    loc, kind, ctx = tuple(e["loc"]), e["type"], e.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and isinstance(ctx.get("error"), Bad):
        bad = ctx["error"]
        return ConfigError(f"{_where(loc, bad.key)}: {bad}")
    top = len(loc) == 1
    if kind == "extra_forbidden":
        what = "unknown key"
        if top:
            loc = ("config", *loc)
    elif table_missing(e):
        what = f"the [{loc[0]}] table is required{required}"
    elif kind == "missing":
        what = "is required"
    elif kind in _TABLE_TYPES:
        if isinstance(loc[-1], int):
            what = f"must be a table ([[{_where(loc[:-1])}]] with its keys)"
        else:
            what = f"must be a table ([{_where(loc)}] or {{ key = value }})"
    elif kind in _TABLES_OF_ONE:
        what = f"must be an array of tables ([[{loc[0]}]])" if top else "must be a list"
    elif kind == "literal_error":
        what = f"must be {ctx.get('expected')}"
    elif kind.startswith("int_"):
        what = "must be a whole number"
    elif kind.startswith("string_"):
        what = "must be a non-empty string"
    elif kind.startswith("bool_"):
        what = "must be true or false"
    else:  # a type no table here has; pydantic's words, still one line
        what = " ".join(str(e["msg"]).split())
    return ConfigError(f"{_where(loc)}: {what}")


def hide_url_password(url: str) -> str:
    """``scheme://user:***@host/…``: a URL as it may be printed (a camera's RTSP login, the
    office's database password)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"


def hide_notify_url(url: str) -> str:
    """A channel's URL as it may be shown (readiness, ``config check``): its scheme only. A
    robot's key is in its path (``wecombot://KEY``), not where a password would be."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://… (hidden: {len(rest)} characters)"


def config_path(arg: str | None) -> str:
    return arg or os.environ.get("GATEHOUSE_CONFIG") or DEFAULT_CONFIG


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
    try:
        f = _File.model_validate(raw, context={"base": base})
        db_path = _db_path(f, base)
    except ValidationError as e:
        raise _one_line(e, _File) from None
    except Bad as e:
        raise ConfigError(f"{e.key}: {e}") from None
    sources = {s.id: (s.gate, s.location) for s in f.alarm_sources}
    return Config(
        node_id=f.node.id,
        tz=f.node.timezone,
        data_dir=f.node.data_dir,
        db_path=db_path,
        api_host=_listen(f.api.listen)[0],
        api_port=_listen(f.api.listen)[1],
        mqtt=f.mqtt,
        gates=tuple(g.id for g in f.gates),
        doors={g.id: g.door for g in f.gates if g.door.contact},
        fire_gates=tuple(g.id for g in f.gates if g.open_on_fire),
        readers=f.readers,
        rules=f.rules,
        cameras=f.cameras,
        snapshots=f.snapshots,
        sync=f.sync,
        qr_keys=f.qr.office_public_keys,
        alarms=f.alarms.model_copy(update={"sources": sources}),
        shifts=f.shifts,
        post_items=dict(f.handover.items),
        privacy=f.privacy,
        keys=f.keys,
        permits=f.permits,
        patrol=f.patrol,
        notify=f.notify,
        source=source,
    )


def is_office(path: str | Path) -> bool:
    """Whether a config file is an office's (it has [office] and no [node])."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return "office" in raw and "node" not in raw


def load_office(path: str | Path) -> OfficeCfg:
    p = Path(path)
    try:
        f = _OfficeFile.model_validate(_read(p), context={"base": p.absolute().parent})
    except ValidationError as e:
        raise _one_line(e, _OfficeFile, " for the office server") from None
    return f.office
