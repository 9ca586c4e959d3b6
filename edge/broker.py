"""``gatehouse broker add-device``: a device's login on the node's Mosquitto and the ACL block
that lets it touch only its own topics (the layout of config/mosquitto/gatehouse.acl).

The password is made here and shown once; its hash goes into Mosquitto's password file
through ``mosquitto_passwd`` (Mosquitto's own tool, so the hash is always one the installed
broker reads). Mosquitto re-reads both files on SIGHUP (``systemctl reload mosquitto``).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge.errors import DomainError

PASSWD_FILE = Path("/etc/mosquitto/gatehouse.passwd")
ACL_FILE = Path("/etc/mosquitto/gatehouse.acl")
KINDS = ("node", "reader", "relay", "alarm", "intercom", "contact", "exit")
_LOGIN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # no spaces, no ":" (the password file's)


@dataclass(frozen=True)
class Grant:
    """What one login may do: ``read`` or ``write`` (``readwrite`` for the node) one topic."""

    login: str
    access: str
    topic: str
    payload: str  # what the device sends or receives there, for the person wiring it

    def block(self) -> str:
        return f"\nuser {self.login}\ntopic {self.access} {self.topic}\n"


def grant(kind: str, login: str, node: str, prefix: str, device: str | None = None) -> Grant:
    """The ACL grant of a device (pure). ``device``: its id in the node's config (a reader's
    id, a gate's id for a relay, a door contact or an exit button, an alarm source's or
    intercom's id), by default the login;
    two nodes on one broker may have devices of one id, which then need distinct logins."""
    if not _LOGIN.match(login):
        raise DomainError(f"name: {login!r} must be 1 to 64 letters, digits, '_', '.' or '-'")
    what = device or login
    base = f"{prefix}/{node}"
    if kind == "node":
        return Grant(login, "readwrite", f"{base}/#", "the node's service")
    if kind == "reader":
        return Grant(login, "write", f"{base}/reader/{what}/swipe", '{"card": "0040856634"}')
    if kind == "relay":
        return Grant(login, "read", f"{base}/gate/{what}/open",
                     '{"event_id": …, "pulse_ms": 1000, "expires": …}')  # fmt: skip
    if kind == "alarm":
        return Grant(login, "write", f"{base}/alarm-input/{what}",
                     '{"type": "fire", "state": "active", "location": "B1"}')  # fmt: skip
    if kind == "intercom":
        return Grant(login, "write", f"{base}/intercom/{what}/event", '{"event": "call"}')
    # a door's position and its exit button (edge.door), each on its own login: a contact
    # that could also write gate/<id>/open could open the barrier it watches
    if kind == "contact":
        return Grant(login, "write", f"{base}/gate/{what}/contact", '{"state": "open"}')
    if kind == "exit":
        return Grant(login, "write", f"{base}/gate/{what}/exit", "{}")
    raise DomainError(f"kind: {kind!r} is not one of {', '.join(KINDS)}")


def add_device(g: Grant, passwd_file: Path, acl_file: Path) -> str:
    """The login added to both files; its password, made here (shown once, never stored).
    A login the ACL has already is refused before either file is touched."""
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        raise DomainError("mosquitto_passwd is not installed (Debian package mosquitto)")
    acl = acl_file.read_text(encoding="utf-8") if acl_file.exists() else ""
    if any(line.split(None, 1)[1:] == [g.login] for line in acl.splitlines()
           if line.startswith("user ")):  # fmt: skip
        raise DomainError(f"name: the ACL has a login {g.login!r} already ({acl_file})")
    password = secrets.token_urlsafe(18)
    create = [] if passwd_file.exists() else ["-c"]
    passwd_file.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([tool, *create, "-b", str(passwd_file), g.login, password],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["failed"]
        raise DomainError(f"mosquitto_passwd: {said[0]}")
    with acl_file.open("a", encoding="utf-8") as f:
        f.write(g.block())
        f.flush()
        os.fsync(f.fileno())
    _for_the_broker(passwd_file, acl_file)
    return password


def _for_the_broker(*files: Path) -> None:
    """Mosquitto re-reads its files on a reload as its own user, and warns about a password
    file others can read: owned by it, 0600, when this runs as root beside a broker."""
    try:
        import pwd

        broker = pwd.getpwnam("mosquitto")
    except (ImportError, KeyError):
        return
    for f in files:
        f.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(f, broker.pw_uid, broker.pw_gid)
