"""``gatehouse``: the command line of CONTRACT.md. Bad arguments or config: one line, exit 2."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from edge import config as config_mod
from edge.broker import KINDS as BROKER_KINDS
from edge.clock import SystemClock
from edge.config import Config, ConfigError

EXIT_USAGE = 2
CLOCK = SystemClock()  # the program's boundary: the one clock its commands read


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    """Every command and subcommand takes ``--config`` and ``--json``, before or after its
    name: `gatehouse pass list --json` as well as `gatehouse --json pass list`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand that was not given the flag leaves the one given before it
        self.add_argument("--config", default=argparse.SUPPRESS, help="config file "
                          "(default: $GATEHOUSE_CONFIG or the example)")  # fmt: skip
        self.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                          help="print one JSON document")  # fmt: skip

    def error(self, message: str) -> NoReturn:  # one clear line, not a usage dump
        raise UsageError(f"{self.prog}: {message}")

    def parse_args(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        ns = super().parse_args(*args, **kwargs)
        ns.config, ns.json = getattr(ns, "config", None), getattr(ns, "json", False)
        return ns


def _bounded(kind: type[int] | type[float], lo: float, hi: float) -> Callable[[str], Any]:
    """An argument type: a finite number from ``lo`` to ``hi``. Said by argparse as
    "argument --limit: ...", one line, before anything is opened or written."""

    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except (ValueError, OverflowError):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not lo <= value <= hi:  # NaN and infinities compare false: refused too
            span = f"{int(lo)} to {int(hi)}"  # whole bounds, written out: not "4e+06"
            raise argparse.ArgumentTypeError(f"{text!r}: must be from {span}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in "invalid int value"
    return convert


def build_parser() -> Parser:
    p = Parser(prog="gatehouse", description="Gatehouse guard-room service")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    sub.add_parser("run", help="the edge service, in the foreground")

    pp = sub.add_parser("pass", help="passes").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    add = pp.add_parser("add", help="issue a pass")
    add.add_argument("--kind", required=True, choices=["temporary", "worker", "resident", "staff"])
    add.add_argument("--card", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--unit")
    add.add_argument("--id-number")
    add.add_argument("--valid-from")
    add.add_argument("--valid-until")
    add.add_argument("--gates", help="comma-separated gate ids (default: every gate)")
    add.add_argument("--hours", help="daily entry window, e.g. 08:00-18:00")
    add.add_argument("--permit", help="worker: the unit's renovation permit number")
    add.add_argument("--photo", help="the holder's photo (JPEG or PNG), kept as data")
    add.add_argument("--replace", action="store_true",
                     help="revoke the card's live pass of this kind (else refused)")  # fmt: skip
    imp = pp.add_parser("import", help="bulk-issue passes from a CSV (all or none)")
    imp.add_argument("file")
    rev = pp.add_parser("revoke", help="revoke a pass, or every pass that lets a card in")
    rev.add_argument("pass_id", nargs="?")
    rev.add_argument("--card", help="the card instead of a pass id: a lost card stops opening")
    rev.add_argument("--reason")
    lst = pp.add_parser("list", help="list passes, personal data masked")
    lst.add_argument("--status", choices=["active", "expired", "revoked", "confiscated"])
    lst.add_argument("--card")
    lst.add_argument("--limit", type=_bounded(int, 1, 1_000_000), default=50)

    off = sub.add_parser("office", help="the office sync server (with an office config)")
    offsub = off.add_subparsers(dest="action", parser_class=Parser)
    onode = offsub.add_parser("node", help="gate nodes").add_subparsers(
        dest="node_action", required=True, parser_class=Parser
    )
    onode_add = onode.add_parser("add", help="register a gate node; prints its token once")
    onode_add.add_argument("node_id")
    onode_add.add_argument("--site", help="its estate (default: the office's only site)")
    onode_add.add_argument("--gates", type=_ids, help="the site's gates it serves, comma-"
                           "separated (default: all of them)")  # fmt: skip
    onode.add_parser("list", help="the gate nodes, their sites and gates, revoked or not")
    onode_set = onode.add_parser("set", help="change the gates a node serves")
    onode_set.add_argument("node_id")
    onode_set.add_argument("--gates", type=_ids, help="comma-separated; omitted: all its site's")
    for action, what in (("revoke", "revoke a node's token: 401 from its next request"),
                         ("rotate", "a new token for a node; prints it once, the old one "
                          "stops working")):  # fmt: skip
        onode.add_parser(action, help=what).add_argument("node_id")
    osite = offsub.add_parser("site", help="sites (estates)").add_subparsers(
        dest="site_action", required=True, parser_class=Parser
    )
    osite_add = osite.add_parser("add", help="an estate the office serves, with its gates")
    osite_add.add_argument("site_id")
    osite_add.add_argument("--name", required=True, help="its name, as people say it")
    osite_add.add_argument("--gates", type=_ids, required=True, help="its gate ids, comma-"
                           "separated, as in each gate's [[gates]]")  # fmt: skip
    osite_set = osite.add_parser("set", help="which camera pictures a site's gates send here")
    osite_set.add_argument("site_id")
    osite_set.add_argument("--snapshots", choices=["off", "alarms", "all"],
                           help="off: the records only (default); alarms; all")  # fmt: skip
    osite_set.add_argument("--snapshot-days", type=_bounded(int, 1, 3650),
                           help="how long the office keeps them (default 30)")  # fmt: skip
    osite.add_parser("list", help="the sites, their gates, and the pictures they send")
    oevents = offsub.add_parser("events", help="the gates' records, kept by month").add_subparsers(
        dest="events_action", required=True, parser_class=Parser
    )
    oevents.add_parser("months", help="the months kept, with their (estimated) records")
    odetach = oevents.add_parser(
        "detach", help="let go of the months before one: kept aside as archive tables, or dropped"
    )
    odetach.add_argument("--before", required=True, metavar="YYYY-MM")
    odetach.add_argument("--drop", action="store_true", help="drop them instead of keeping them")
    okey = offsub.add_parser("key", help="print the public key gates verify QR passes with")
    okey.add_subparsers(dest="key_action", parser_class=Parser).add_parser(
        "init", help="make the office's QR signing key, once (refused if it has one); prints "
        "its public key"
    )  # fmt: skip

    brk = sub.add_parser("broker", help="the node's Mosquitto").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    dev = brk.add_parser("add-device", help="a device's login and its ACL block; prints its "
                         "password once and what the device needs")  # fmt: skip
    dev.add_argument("name", help="its login on the broker")
    dev.add_argument("--kind", required=True, choices=list(BROKER_KINDS))
    dev.add_argument("--device", help="its id in the config (a reader's; a gate's for a relay, "
                     "a door contact or an exit button; an alarm source's, an intercom's); "
                     "default: the name")  # fmt: skip
    dev.add_argument("--passwd-file", default="/etc/mosquitto/gatehouse.passwd")
    dev.add_argument("--acl-file", default="/etc/mosquitto/gatehouse.acl")

    ntf = sub.add_parser("notify", help="the channels off the box").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    ntest = ntf.add_parser("test", help="send a test message to a channel now (or to each), "
                           "and say whether it took it")  # fmt: skip
    ntest.add_argument("channel", nargs="?", help="a [[notify.channels]] id; default: each")

    cfgp = sub.add_parser("config", help="the config").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    cfgp.add_parser("check", help="check the config; print it as the service reads it "
                    "(defaults filled in, paths made whole, secrets hidden)")  # fmt: skip

    bk = sub.add_parser("backup", help="an online, checked backup in one file: database, "
                        "keys, photos (edge or office config)")  # fmt: skip
    bk.add_argument("file")
    bk.add_argument("--snapshots", action="store_true", help="gate: the camera snapshots too")
    rs = sub.add_parser("restore", help="restore a backup (service stopped; new epoch)")
    rs.add_argument("file")
    rs.add_argument("--replace-key", action="store_true", help="put the backup's keys in "
                    "place of different ones (kept beside them)")  # fmt: skip

    usr = sub.add_parser("user", help="API users").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    uadd = usr.add_parser("add", help="create a user; prints the bearer token once")
    uadd.add_argument("name")
    uadd.add_argument("--role", required=True,
                      choices=["guard", "control", "admin", "clerk", "host"])  # fmt: skip
    uadd.add_argument("--site", help="office, a host: the estate (default: the only one)")
    uadd.add_argument("--unit", help="office, a host: the unit whose visitors they announce")
    urev = usr.add_parser("revoke", help="revoke a user's token and password")
    urev.add_argument("name")
    urot = usr.add_parser("rotate", help="a new token for a user, printed once; the old one "
                          "stops working at once (name, role and password stay)")  # fmt: skip
    urot.add_argument("name")
    usr.add_parser("list", help="the users, their roles, revoked or not")
    upw = usr.add_parser(
        "passwd",
        help="set a person's console password (asked twice on a terminal; else read from "
        "the first line of standard input)",
    )
    upw.add_argument("name")

    aud = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    aud.add_parser("verify", help="check that no entry was changed or removed (exit 1 if so)")
    rep = sub.add_parser("report", help="reports").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    rslips = rep.add_parser("slips", help="a month's goods release slips per unit")
    rslips.add_argument("--month", required=True, help="YYYY-MM")
    rslips.add_argument("--format", choices=["csv", "json"], default="csv")

    chk = sub.add_parser("check", help="the decision the gate would make, not recorded")
    chk.add_argument("card")
    chk.add_argument("--gate")
    chk.add_argument("--at", help="ISO 8601 time (default: now)")

    sim = sub.add_parser("simulate", help="device simulators").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    sw = sim.add_parser("swipe", help="write a card reader's frame to a serial port")
    sw.add_argument("--port", required=True, help="serial port or pty to write to")
    sw.add_argument("--card", required=True)
    sw.add_argument("--protocol", default="rdm6300", choices=sorted(config_mod.PROTOCOLS))
    # the config's range for a reader; --hold is bounded so a typo cannot hold a card forever
    sw.add_argument("--baudrate", type=_bounded(int, 300, 4_000_000), default=9600)
    sw.add_argument("--hold", type=_bounded(float, 0, 600), default=0.0,
                    help="seconds the card stays on the reader (up to 600)")  # fmt: skip
    sw.add_argument("--corrupt", action="store_true", help="send a frame with a bad checksum")
    return p


def cli_user() -> str:
    """Who did it, for writes made from the command line."""
    return f"cli:{getpass.getuser()}"


def _ids(value: str) -> list[str]:
    ids = [v.strip() for v in value.split(",") if v.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("name at least one id")
    return ids


def _print(args: argparse.Namespace, doc: Any, text: str) -> None:
    print(json.dumps(doc, ensure_ascii=False) if args.json else text)


def open_db(cfg: Config) -> sqlite3.Connection:
    """The node's database, migrated; one line naming it when it cannot be opened (a file
    that is not a database, a directory, a disk that refuses), not a traceback."""
    from edge import db

    try:
        db.migrate(cfg.db_path)
        return db.connect(cfg.db_path)
    except Exception as e:
        # SQLAlchemy's errors come from a migration only: its module is loaded then (and
        # not imported here, which would cost every CLI call 0.13 s)
        sa = sys.modules.get("sqlalchemy.exc")
        if not isinstance(e, sqlite3.Error | OSError) and not (
            sa is not None and isinstance(e, sa.SQLAlchemyError)
        ):
            raise
        reason = getattr(e, "orig", None) or e  # SQLAlchemy's own text runs to lines
        raise UsageError(
            f"database {cfg.db_path}: cannot be opened: {str(reason).splitlines()[0]}"
        ) from None


def cmd_run(cfg: Config) -> int:
    from edge.service import Service

    open_db(cfg).close()  # a database that cannot be opened: one line, before any thread
    service = Service(cfg)

    def _stop(_sig: int, _frame: Any) -> None:
        service.stop_event.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    service.run()
    return 0


def cmd_pass(cfg: Config, args: argparse.Namespace) -> int:
    if args.action == "list":
        return _pass_list(cfg, args)
    from edge import audit, pass_ops
    from edge.cards import parse_card
    from edge.pass_reads import get_pass, shown
    from edge.passes import PassError
    from edge.photos import store_for
    from edge.privacy import IdHasher

    conn = open_db(cfg)
    try:
        hasher = IdHasher.from_data_dir(cfg.data_dir)
    except (OSError, ValueError) as e:  # unwritable, or a key file someone edited
        conn.close()
        raise UsageError(f"node.data_dir: the ID number key cannot be kept: {e}") from None
    try:
        if args.action == "add":
            photo = None
            if args.photo:  # kept as data now; a file that is not there is refused now
                try:
                    picture = Path(args.photo).read_bytes()
                except OSError as e:
                    raise PassError(f"photo: {args.photo}: {e.strerror}") from None
                photo = store_for(cfg.data_dir).put(picture)
            req = pass_ops.PassRequest(
                kind=args.kind, card=args.card, name=args.name, unit=args.unit,
                id_number=args.id_number, valid_from=args.valid_from,
                valid_until=args.valid_until, gates=args.gates, daily_window=args.hours,
                permit_no=args.permit, photo=photo,
            )  # fmt: skip
            for g in (req.gates or "").split(","):
                if g.strip():
                    cfg.known_gate(g.strip())
            conn.execute("BEGIN IMMEDIATE")
            now = CLOCK.now()
            pass_id = pass_ops.issue(conn, req, hasher, cfg.tz, cli_user(), now,
                                     replace=args.replace)  # fmt: skip
            audit.record(conn, cli_user(), "pass:issue", pass_id, now)  # as the API does
            conn.execute("COMMIT")
            # the clerk who issued it sees it whole; the id alone without --json
            _print(args, shown(get_pass(conn, pass_id), cfg.tz, "none"), pass_id)
        elif args.action == "import":
            started = time.monotonic()
            bars = _ImportBars() if sys.stderr.isatty() else None  # a person watching
            try:
                n = pass_ops.import_csv(conn, Path(args.file), hasher, cfg.tz, cli_user(),
                                        CLOCK.now(), known_gates=cfg.gates,
                                        progress=bars)  # fmt: skip
            finally:
                if bars is not None:
                    bars.close()
            took = time.monotonic() - started
            conn.execute("BEGIN IMMEDIATE")  # the chain's last entry read under the lock
            audit.record(conn, cli_user(), "pass:import", f"{n} passes", CLOCK.now())
            conn.execute("COMMIT")
            _print(
                args,
                {"imported": n, "seconds": round(took, 2)},
                f"imported {n} passes in {took:.1f} s",
            )
        elif args.action == "revoke":
            if (args.pass_id is None) == (args.card is None):
                raise UsageError("pass revoke: give a pass id or --card CARD (one of them)")
            card = parse_card(args.card) if args.card else None
            conn.execute("BEGIN IMMEDIATE")
            now = CLOCK.now()  # one moment for the revocations and their audit entries
            try:
                if card is None:
                    pass_ops.set_status(conn, args.pass_id, "revoked", args.reason, cli_user(), now)
                    ids = [args.pass_id]
                else:
                    ids = pass_ops.revoke_card(conn, card, args.reason, cli_user(), now)
                for pass_id in ids:
                    audit.record(conn, cli_user(), "pass:revoke", pass_id, now)
            except PassError:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            _print(args, {"revoked": ids}, "\n".join(f"revoked {i}" for i in ids))
    except (PassError, ValueError) as e:
        raise UsageError(str(e)) from None
    finally:
        conn.close()
    return 0


class _ImportBars:
    """`pass import` on a terminal: how many lines are checked, then how many passes are
    written of how many (tqdm, on standard error; a script's output stays as it was)."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        label = {"checked": "检查 checking", "written": "写入 writing"}[phase]
        bar = self.bars.get(phase)
        if bar is None:
            bar = self.bars[phase] = tqdm(total=total, desc=label, unit=" 行 rows",
                                          file=sys.stderr, mininterval=0.2)  # fmt: skip
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _pass_list(cfg: Config, args: argparse.Namespace) -> int:
    """Reads only: no writer's imports (a quick start) and no ID-number key made."""
    from edge.cards import parse_card
    from edge.pass_reads import list_passes, shown

    try:
        card = parse_card(args.card) if args.card else None
    except ValueError as e:
        raise UsageError(str(e)) from None
    conn = open_db(cfg)
    try:
        rows = [shown(r, cfg.tz, cfg.rules.name_mask)
                for r in list_passes(conn, CLOCK.now(), args.limit, args.status, card)]  # fmt: skip
    finally:
        conn.close()
    if args.json:
        print(json.dumps({"items": rows}, ensure_ascii=False))
    for r in [] if args.json else rows:
        until, unit = r["valid_until"] or "-", r["unit"] or "-"
        print(f"{r['id']}  {r['kind']:<9} {r['card']}  {r['name']:<8} {unit:<8} "
              f"{r['valid_from']} → {until}  {r['status']}")  # fmt: skip
    return 0


def cmd_user(cfg: Config, args: argparse.Namespace) -> int:
    conn = open_db(cfg)
    if args.action == "list":
        try:
            found = [dict(zip(("name", "role", "created_at", "revoked_at"), r, strict=True))
                     for r in conn.execute("SELECT name, role, created_at, revoked_at "
                                           "FROM users ORDER BY name")]  # fmt: skip
        finally:
            conn.close()
        lines = [f"{u['name']}\t{u['role']}\t"
                 + (f"revoked {_when(u['revoked_at'])}" if u["revoked_at"] else "active")
                 for u in found]  # fmt: skip
        _print(args, {"items": found}, "\n".join(lines) or "no users")
        return 0
    from edge import users  # (not for a list: argon2 and the models cost a list 0.4 s)
    from edge.errors import DomainError

    try:
        password = _read_password() if args.action == "passwd" else ""
        conn.execute("BEGIN IMMEDIATE")
        if args.action == "add":
            if args.site or args.unit:
                raise DomainError("unit: only an office's host has a unit (--site, --unit)")
            token = users.add(conn, args.name, args.role, CLOCK.now(), cli_user())
        elif args.action == "rotate":
            token = users.rotate(conn, args.name, CLOCK.now(), cli_user())
        elif args.action == "passwd":
            users.set_password(conn, args.name, password, CLOCK.now())
        else:
            users.revoke(conn, args.name, CLOCK.now(), cli_user())
        conn.execute("COMMIT")
    except DomainError as e:
        conn.execute("ROLLBACK")
        raise UsageError(str(e)) from None
    finally:
        conn.close()
    if args.action == "add":
        _print(args, {"name": args.name, "role": args.role, "token": token}, token)
    elif args.action == "rotate":
        _print(args, {"name": args.name, "token": token}, token)
    elif args.action == "passwd":
        _print(args, {"name": args.name, "password_set": True}, f"password set for {args.name}")
    else:
        _print(args, {"name": args.name, "revoked": True}, f"revoked {args.name}")
    return 0


def _read_password() -> str:
    """Asked twice on a terminal (not echoed); else the first line of standard input, so a
    script or a test can set one."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UsageError("password: the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_office(path: str, args: argparse.Namespace) -> int:
    """``gatehouse office`` serves; ``office node add`` and ``user add`` manage its tokens."""
    import uvicorn

    from edge.api.limits import listen_socket, server_config
    from edge.config import load_office
    from edge.errors import DomainError
    from sync import office, officedb
    from sync.office_api import create_office_app

    cfg = load_office(path)
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    if args.command in ("backup", "restore"):
        return cmd_backup(args, office_url=cfg.database_url, office_dir=cfg.data_dir)
    if args.command == "office" and args.action == "key":
        from edge.privacy import IdHasher
        from sync import qr
        from sync.qr import Signer

        # never made silently: a missing key is an error naming `office key init`, which
        # makes the QR signing key and the ID-number key (whichever is missing)
        init = args.key_action == "init"
        made_id = False
        if init:
            signing = (cfg.data_dir / qr.KEY_FILE).exists()
            made_id = not (cfg.data_dir / "keys" / "id_hash.key").exists()
            if signing and not made_id:
                Signer.create(cfg.data_dir)  # refused, in one line naming the key
            # an office from before the ID-number key was its own step gets that key alone
            signer = Signer.from_data_dir(cfg.data_dir) if signing else Signer.create(cfg.data_dir)
            IdHasher.from_data_dir(cfg.data_dir)
        else:
            signer = Signer.from_data_dir(cfg.data_dir)
        _print(args, {"public_key": signer.public_b64, "kid": signer.kid} | (
            {"created": True, "id_key_created": made_id} if init else {}),
            signer.public_b64)  # fmt: skip
        return 0
    try:
        eng = officedb.engine(cfg.database_url)
        officedb.migrate(eng)
    except Exception as e:  # the database is down or unreachable: say so in one line
        raise UsageError(
            f"office.database_url: cannot open the database: {str(e).splitlines()[0]}"
        ) from None
    if args.command == "office" and args.action is None:
        logging.getLogger().setLevel(logging.INFO)  # serving: requests, pushes, refusals
        if cfg.insecure and not cfg.tls_cert and not config_mod.is_loopback(cfg.host):
            logging.getLogger("gatehouse.office").warning(
                "[office] insecure = true: serving cleartext HTTP on %s:%s beyond loopback; "
                "tokens and records cross the network unencrypted", cfg.host, cfg.port,
            )  # fmt: skip
        from edge.privacy import MissingKey

        sock = listen_socket(cfg.host.strip("[]"), cfg.port, "office.listen")
        try:
            app = create_office_app(cfg, eng, CLOCK)
        except MissingKey as e:
            sock.close()
            raise UsageError(str(e)) from None
        # the gate's limits: deadlines, bounded connections, no trusted forwarded headers
        uvicorn.Server(server_config(
            app, ssl_certfile=cfg.tls_cert,
            ssl_keyfile=cfg.tls_key,
        )).run(sockets=[sock])  # fmt: skip
        return 0
    try:
        with eng.begin() as c:
            if args.command == "user" and args.action == "passwd":
                office.set_password(c, args.name, _read_password(), CLOCK.now())
                _print(args, {"name": args.name, "password_set": True},
                       f"password set for {args.name}")  # fmt: skip
            elif args.command == "user":
                _office_user(c, args)
            elif args.action == "site":
                _office_site(c, args)
            elif args.action == "events":
                _office_events(c, args)
            else:
                _office_node(c, args)
    except DomainError as e:
        raise UsageError(str(e)) from None
    return 0


def _who() -> str:
    """Who ran an office command, for its audit log: the operating system's user."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).isoformat(timespec="minutes")


def _office_user(c: Any, args: argparse.Namespace) -> None:
    from sync import office

    if args.action == "add":
        token = office.add_user(c, args.name, args.role, CLOCK.now(), _who(), args.site,
                                args.unit)  # fmt: skip
        _print(args, {"name": args.name, "role": args.role, "token": token}, token)
    elif args.action == "revoke":
        office.revoke_user(c, args.name, _who(), CLOCK.now())
        _print(args, {"name": args.name, "revoked": True}, f"revoked {args.name}")
    elif args.action == "rotate":
        token = office.rotate_user(c, args.name, _who(), CLOCK.now())
        _print(args, {"name": args.name, "token": token}, token)
    else:
        found = office.list_users(c)
        state = {u["name"]: f"revoked {_when(u['revoked_at'])}" if u["revoked_at"] else "active"
                 for u in found}  # fmt: skip
        lines = [f"{u['name']}\t{u['role']}\t{state[u['name']]}" for u in found]
        _print(args, {"items": found}, "\n".join(lines) or "no users")


def _office_site(c: Any, args: argparse.Namespace) -> None:
    from sync import office, snapshots

    if args.site_action == "add":
        site = office.add_site(c, args.site_id, args.name, args.gates, _who(), CLOCK.now())
        _print(args, site, f"site {site['site_id']} ({site['name']}): {', '.join(site['gates'])}")
    elif args.site_action == "set":
        site = snapshots.set_site(c, args.site_id, args.snapshots, args.snapshot_days, _who(),
                                  CLOCK.now())  # fmt: skip
        _print(args, site, f"site {site['site_id']}: pictures {site['snapshots']}, "
                           f"kept {site['snapshot_days']} days")  # fmt: skip
    else:
        found = office.list_sites(c)
        _print(args, {"items": found}, "\n".join(
            f"{s['site_id']}\t{s['name']}\t{', '.join(s['gates']) if s['gates'] else '(any)'}"
            f"\tpictures {s['snapshots']} ({s['snapshot_days']} days)"
            for s in found))  # fmt: skip


def _office_events(c: Any, args: argparse.Namespace) -> None:
    from sync import partitions

    if args.events_action == "months":
        found = partitions.months(c)
        lines = [f"{p['month'] or p['partition']}\t~{p['rows']:,} records" for p in found]
        _print(args, {"items": found}, "\n".join(lines))
    else:
        gone = partitions.detach_before(c, args.before, args.drop)
        what = "dropped" if args.drop else "kept as edge_events_archive_YYYY_MM"
        said = f"{len(gone)} months before {args.before} {what}: {', '.join(gone) or '-'}"
        _print(args, {"detached": gone, "dropped": args.drop}, said)


def _office_node(c: Any, args: argparse.Namespace) -> None:
    from sync import office

    if args.node_action == "add":
        token = office.add_node(c, args.node_id, CLOCK.now(), args.site, args.gates, _who())
        _print(args, {"node": args.node_id, "token": token}, token)
    elif args.node_action == "revoke":
        office.revoke_node(c, args.node_id, _who(), CLOCK.now())
        _print(args, {"node": args.node_id, "revoked": True}, f"revoked {args.node_id}")
    elif args.node_action == "set":
        office.set_node_gates(c, args.node_id, args.gates, _who(), CLOCK.now())
        served = ", ".join(args.gates) if args.gates else "all its site's gates"
        _print(args, {"node": args.node_id, "gates": args.gates}, f"{args.node_id}: {served}")
    elif args.node_action == "rotate":
        token = office.rotate_node(c, args.node_id, _who(), CLOCK.now())
        _print(args, {"node": args.node_id, "token": token}, token)
    else:
        found = office.list_nodes(c)
        _print(args, {"items": found}, "\n".join(
            f"{n['node_id']}\t{n['site']}\t{', '.join(n['gates']) if n['gates'] else '(all)'}"
            f"\tlast seen {_when(n['last_seen_at'])}"
            + (f"\trevoked {_when(n['revoked_at'])}" if n["revoked_at"] else "")
            for n in found) or "no nodes")  # fmt: skip


def cmd_backup(args: argparse.Namespace, db_path: Path | None = None,
               data_dir: Path | None = None, office_url: str | None = None,
               office_dir: Path | None = None) -> int:  # fmt: skip
    from edge import backup
    from edge.errors import DomainError

    target = Path(args.file)
    try:
        if args.command == "backup" and office_url and office_dir:
            kid = backup.backup_office(office_url, target, office_dir)
            held = f"and its QR signing key ({kid})" if kid else "(no QR signing key made yet)"
            _print(args, {"file": str(target), "kid": kid},
                   f"office database {held} backed up to {target}; it holds a private key: "
                   "keep it as one")  # fmt: skip
        elif args.command == "backup" and db_path and data_dir:
            made = backup.backup_edge(db_path, data_dir, target, args.snapshots)
            files = made["files"]
            _print(args, {"file": str(target), "files": len(files), "pages": made["pages"]},
                   f"backed up to {target} (checked): the database, {len(files) - 1} files of "
                   "keys, photos" + (" and snapshots" if args.snapshots else "") + "; it holds"
                   " the ID-number key: keep it as private as the gate")  # fmt: skip
        elif office_url and office_dir:
            from sync import officedb, recovery

            key, kid = backup.restore_office(target, office_url, office_dir, args.replace_key)
            # the restored change log reuses ids the gates have passed: a new identity
            # makes every gate pull it from the start and tell what it holds
            eng = officedb.engine(office_url)
            officedb.migrate(eng)
            with eng.begin() as c:
                log_id = recovery.new_log_id(c)
            eng.dispose()
            said = {"restored": f"QR signing key {kid} restored", "kept": f"QR signing key "
                    f"{kid} already in place", "replaced": f"QR signing key {kid} restored, "
                    "the one it replaced kept beside it", "none": "the backup holds no QR "
                    "signing key"}[key]  # fmt: skip
            _print(args, {"restored": str(target), "log": log_id, "key": key, "kid": kid},
                   f"office restored from {target} ({said}); its change log is now {log_id}: "
                   "the gates will pull it again from the start")  # fmt: skip
        elif db_path and data_dir:
            done = backup.restore_edge(target, db_path, data_dir, args.replace_key)
            key = {"restored": "ID-number key restored", "kept": "ID-number key already in "
                   "place", "replaced": "ID-number key restored, the one it replaced kept "
                   "beside it", "none": "the backup holds no ID-number key"}  # fmt: skip
            _print(args, {"restored": str(target)} | done,
                   f"restored from {target} ({key[done['key']]}, {done['files']} files); new epoch "
                   f"{done['epoch']}")  # fmt: skip
    except DomainError as e:
        raise UsageError(str(e)) from None
    except (sqlite3.Error, OSError) as e:  # a target that cannot be written, a bad source
        raise UsageError(f"{args.command}: {target}: {e}") from None
    return 0


def cmd_audit(cfg: Config, args: argparse.Namespace) -> int:
    """The audit log's chain, walked: whole (0) or where it breaks (1)."""
    from edge import audit

    conn = open_db(cfg)
    try:
        v = audit.verify(conn)
    finally:
        conn.close()
    whole = v.broken_at is None
    said = (f"audit log whole: {v.entries} entries, the newest's hash {v.head or '-'}"
            if whole else f"audit log broken at entry {v.broken_at}: {v.problem}")  # fmt: skip
    if v.before_chain:
        said += f" ({v.before_chain} entries from before the chain are not covered)"
    _print(args, {"whole": whole, "entries": v.entries, "before_chain": v.before_chain,
                  "broken_at": v.broken_at, "problem": v.problem or None, "head": v.head},
           said)  # fmt: skip
    return 0 if whole else 1


def cmd_broker(cfg: Config, args: argparse.Namespace) -> int:
    from edge import broker
    from edge.errors import DomainError

    prefix = cfg.mqtt.prefix if cfg.mqtt else "gatehouse"
    url = cfg.mqtt.url if cfg.mqtt else "mqtt://<this PC's LAN address>:1883"
    try:
        g = broker.grant(args.kind, args.name, cfg.node_id, prefix, args.device)
        password = broker.add_device(g, Path(args.passwd_file), Path(args.acl_file))
    except DomainError as e:
        raise UsageError(str(e)) from None
    doc = {"login": g.login, "password": password, "access": g.access, "topic": g.topic,
           "payload": g.payload, "broker": url}  # fmt: skip
    _print(args, doc, "\n".join((
        f"broker:   {url}  (a device on the LAN uses this PC's address)",
        f"login:    {g.login}",
        f"password: {password}   (shown once; kept only as a hash)",
        f"{g.access}:{' ' * (9 - len(g.access))}{g.topic}   QoS 1",
        f"payload:  {g.payload}",
        "then:     systemctl reload mosquitto   (re-reads the password file and the ACL)",
    )))  # fmt: skip
    return 0


def cmd_notify_test(cfg: Config, args: argparse.Namespace) -> int:
    """A test message to each channel (or one), sent now, outside the queue: the estate's IT
    person sees at install time whether the robot's URL works. Exit 1 if any failed."""
    import logging

    from edge import notify

    # Apprise's own warning would say the failure twice: the line below says it, once
    logging.getLogger("apprise").propagate = False
    channels = [c for c in cfg.notify.channels if args.channel in (None, c.id)]
    if not channels:
        known = ", ".join(c.id for c in cfg.notify.channels) or "none"
        raise UsageError(
            f"channel: {args.channel or 'any'!r} is not configured (channels: {known})"
        )
    results = {}
    for ch in channels:
        url = ch.url.replace("{unit}", "test")
        said = f"门岗 {cfg.node_id} 的通知渠道 {ch.id} 工作正常。"
        results[ch.id] = notify.send(url, "【测试】Gatehouse 通知测试", said)
    _print(args, {k: {"ok": v is None, "error": v} for k, v in results.items()},
           "\n".join(f"{k}: {'sent' if v is None else 'FAILED: ' + v}"
                     for k, v in results.items()))  # fmt: skip
    return 0 if all(v is None for v in results.values()) else 1


def cmd_config_check(path: str) -> int:
    """The effective config as JSON (what the service will use), or one line naming what
    is wrong (exit 2). Passwords, tokens and notification URLs are shown as hidden, with
    their length."""
    import dataclasses

    cfg: Any = config_mod.load_office(path) if config_mod.is_office(path) else config_mod.load(path)

    def plain(value: Any, key: str = "") -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name), f.name)
                    for f in dataclasses.fields(value)}  # fmt: skip
        if hasattr(type(value), "model_fields"):  # a table of the config: keys as in the file
            shown = {(f.alias or name): plain(getattr(value, name), name)
                     for name, f in type(value).model_fields.items()}  # fmt: skip
            if isinstance(value, config_mod.ChannelCfg):  # a robot's key is in its URL's path
                shown["url"] = config_mod.hide_notify_url(value.url)
            return shown
        if isinstance(value, dict):
            return {str(k): plain(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v, key) for v in value]
        if isinstance(value, str) and ("password" in key or "token" in key):
            return f"(hidden: {len(value)} characters)"
        if isinstance(value, str) and "://" in value:
            return config_mod.hide_url_password(value)
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return str(value)  # a path, a time zone

    print(json.dumps({"config": str(Path(path).absolute()), "valid": True} | plain(cfg),
                     ensure_ascii=False, indent=1))  # fmt: skip
    return 0


def cmd_report(cfg: Config, args: argparse.Namespace) -> int:
    from edge import slips
    from edge.errors import DomainError

    conn = open_db(cfg)  # (slips.month_bounds refuses a month outside the years)
    try:
        rows = slips.monthly_report(conn, args.month, cfg.tz, CLOCK.now())
    except DomainError as e:
        raise UsageError(str(e)) from None
    finally:
        conn.close()
    if args.json or args.format == "json":
        print(json.dumps({"month": args.month, "items": rows}, ensure_ascii=False))
    else:
        sys.stdout.write(slips.report_csv(rows))
    return 0


def cmd_check(cfg: Config, args: argparse.Namespace) -> int:
    from edge import gate
    from edge.cards import parse_card
    from edge.passes import PassError, parse_time

    try:
        card = parse_card(args.card)
        at = parse_time(args.at, cfg.tz) if args.at else CLOCK.now()
    except (ValueError, PassError) as e:
        raise UsageError(str(e)) from None
    try:
        gate_id = cfg.known_gate(args.gate or cfg.gates[0])
    except ValueError as e:
        raise UsageError(f"--{e}") from None
    conn = open_db(cfg)
    decision, holder = gate.check(conn, card, at, gate_id, gate.site_rules(cfg))
    conn.close()
    verdict = "grant" if decision.granted else "deny"
    doc = {
        "decision": verdict,
        "reason": decision.reason.value,
        "gate": gate_id,
        "at": datetime.fromtimestamp(at, cfg.tz).isoformat(timespec="seconds"),
        "card": card.masked,
        "pass_id": decision.pass_.id if decision.pass_ else None,
        "pass_kind": decision.pass_.kind if decision.pass_ else None,
        "holder": holder,
    }
    _print(
        args,
        doc,
        f"{verdict} {decision.reason.value}"
        + (f" ({holder}, pass {doc['pass_id']})" if holder else ""),
    )
    return 0 if decision.granted else 1


def cmd_simulate(args: argparse.Namespace) -> int:
    import serial

    from drivers.registry import PARSERS
    from edge.cards import parse_card

    try:
        card = parse_card(args.card)
    except ValueError as e:
        raise UsageError(str(e)) from None
    frame = PARSERS[args.protocol].encode(card)
    if args.corrupt:  # a wrong checksum: still a well-formed frame, so only the sum gives it away
        check = frame[-2]
        wrong = (
            (b"1" if check != ord("1") else b"2")
            if args.protocol == "rdm6300"
            else bytes([check ^ 1])
        )
        frame = frame[:-2] + wrong + frame[-1:]
    try:
        with serial.Serial(args.port, args.baudrate, timeout=1) as port:
            deadline = time.monotonic() + args.hold
            port.write(frame)
            while time.monotonic() < deadline:  # a held card: the reader repeats its frame
                time.sleep(0.1)
                port.write(frame)
            port.flush()
    except (serial.SerialException, OSError) as e:
        raise UsageError(f"--port: {e}") from None
    _print(args, {"port": args.port, "frame": frame.hex()}, f"sent {frame.hex(' ')}")
    return 0


def argv_command(argv: list[str] | None) -> str | None:
    args = sys.argv[1:] if argv is None else argv
    return next(
        (
            a
            for a in args
            if a
            in ("run", "pass", "check", "simulate", "user", "office", "backup", "restore", "config")
        ),
        None,
    )


def main(argv: list[str] | None = None) -> int:
    # Whatever this program makes (database, backups, keys, photos, snapshots) is its
    # owner's alone, under systemd (UMask=0077) or not: a CLI call from a login shell with
    # umask 022 must not leave a world-readable copy of every resident's card.
    os.umask(0o077)
    from edge.logs import configure

    configure(logging.INFO if argv_command(argv) == "run" else logging.WARNING)
    try:
        args = build_parser().parse_args(argv)
        if args.command == "simulate":
            return cmd_simulate(args)
        path = config_mod.config_path(args.config)
        if args.command == "config":
            return cmd_config_check(path)
        office_cmd = args.command in ("user", "backup", "restore") and config_mod.is_office(path)
        if args.command == "office" or office_cmd:
            return cmd_office(path, args)
        cfg = config_mod.load(path)
        if args.command in ("backup", "restore"):
            return cmd_backup(args, db_path=cfg.db_path, data_dir=cfg.data_dir)
        if args.command == "run":
            return cmd_run(cfg)
        if args.command == "pass":
            return cmd_pass(cfg, args)
        if args.command == "user":
            return cmd_user(cfg, args)
        if args.command == "report":
            return cmd_report(cfg, args)
        if args.command == "audit":
            return cmd_audit(cfg, args)
        if args.command == "broker":
            return cmd_broker(cfg, args)
        if args.command == "notify":
            return cmd_notify_test(cfg, args)
        return cmd_check(cfg, args)
    except (UsageError, ConfigError) as e:
        print(f"gatehouse: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
