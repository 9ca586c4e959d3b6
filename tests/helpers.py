"""Real parts for tests: a Mosquitto broker, a gatehouse process, a pty, an MQTT listener."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
GATEHOUSE = str(Path(sys.executable).parent / "gatehouse")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class Broker:
    """Mosquitto on a free port with the project's shipped settings (config/mosquitto)."""

    def __init__(self, workdir: Path, extra: str = "") -> None:
        self.workdir = workdir
        self.port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Broker:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        shipped = (ROOT / "config/mosquitto/gatehouse.conf").read_text()
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(
            # run as the test's own user: as root, Mosquitto would switch to "mosquitto"
            # and could not read the test's password file or write its persistence
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence_location {self.workdir}/\n{shipped}\n{self.extra}\n"
        )
        self.proc = subprocess.Popen(
            [exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(self._accepts, 10, "mosquitto to listen")
        return self

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Listener:
    """An MQTT subscriber collecting what the node publishes (what mosquitto_sub would see)."""

    def __init__(self, port: int, topic: str = "gatehouse/#") -> None:
        self.messages: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.seen: list[tuple[str, Any]] = []
        c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"test-{os.getpid()}-{time.time_ns()}"
        )
        c.on_message = self._on_message
        c.on_connect = lambda cl, *_: cl.subscribe(topic, qos=1)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body: Any = json.loads(msg.payload)
        except (ValueError, RecursionError):  # a poisoned payload a test sent on purpose
            body = msg.payload.decode(errors="replace")
        self.messages.put((msg.topic, body))

    def next(self, suffix: str, timeout: float = 10.0) -> Any:
        """The next message whose topic ends with ``suffix``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no message on *{suffix} within {timeout} s")
            try:
                topic, body = self.messages.get(timeout=left)
            except queue.Empty:
                continue
            self.seen.append((topic, body))
            if topic.endswith(suffix):
                return body

    def drain(self, wait: float = 0.5) -> list[tuple[str, Any]]:
        out = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                out.append(self.messages.get(timeout=0.05))
        return out

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Pty:
    """A pseudo-terminal pair: the service opens ``path``; the test writes to the master."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        self.path = os.ttyname(self.slave)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)


def write_config(
    path: Path,
    *,
    broker_port: int | None,
    readers: list[dict[str, Any]],
    api_port: int,
    **rules: Any,
) -> Path:
    lines = [
        "[node]", 'id = "gate-test"', 'timezone = "Asia/Shanghai"',
        f'data_dir = "{path.parent / "var"}"',
        "[database]", f'url = "sqlite:///{path.parent / "var" / "edge.db"}"',
        "[api]", f'listen = "127.0.0.1:{api_port}"',
        "[[gates]]", 'id = "main"', "[[gates]]", 'id = "side"',
    ]  # fmt: skip
    if broker_port is not None:
        lines += ["[mqtt]", f'url = "mqtt://127.0.0.1:{broker_port}"', 'prefix = "gatehouse"']
    if rules:
        lines.append("[rules]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in rules.items()]
    for r in readers:
        lines.append("[[readers]]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in r.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def cli(config: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [GATEHOUSE, "--config", str(config), *args], capture_output=True, text=True, timeout=120
    )
    if check and proc.returncode not in (0, 1):
        raise AssertionError(f"gatehouse {' '.join(args)} failed: {proc.stderr}")
    return proc


def passwd(config: Path, name: str, password: str) -> subprocess.CompletedProcess[str]:
    """``gatehouse user passwd NAME`` with the password on standard input (a gate's user
    or an office's, by the config)."""
    return subprocess.run([GATEHOUSE, "--config", str(config), "user", "passwd", name],
                          input=password + "\n", capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def publish(broker_port: int, topic: str, body: dict[str, Any]) -> None:
    """What a device publishes to the test node ``gate-test`` (``topic`` under its prefix),
    once the broker has it."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"device-{time.time_ns()}")
    c.connect("127.0.0.1", broker_port)
    c.loop_start()
    c.publish(f"gatehouse/gate-test/{topic}", json.dumps(body), qos=1).wait_for_publish(10)
    c.loop_stop()
    c.disconnect()


class Node:
    """``gatehouse run`` as a real process."""

    def __init__(self, config: Path, api_port: int, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.api_port = api_port
        self.env = env
        self.proc: subprocess.Popen[str] | None = None
        self.log = config.parent / "node.log"

    def start(self, wait_ready: bool = False) -> Node:
        with self.log.open("a") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [GATEHOUSE, "--config", str(self.config), "run"],
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                env={**os.environ, **(self.env or {})},
            )
        wait_for(lambda: self.get("/health/live") is not None, 20, "the node to answer")
        if wait_ready:
            wait_for(lambda: self.ready()[0], 20, "the node to be ready")
        return self

    def get(self, path: str) -> tuple[int, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=2) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
        except OSError:
            return None

    def ready(self) -> tuple[bool, dict[str, Any]]:
        got = self.get("/health/ready")
        if got is None:
            return False, {}
        return got[0] == 200, got[1]

    def reader(self, reader_id: str) -> dict[str, Any]:
        return self.ready()[1].get("readers", {}).get(reader_id, {})

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class SocatPair:
    """Two linked ptys made by socat, as `make run` demos use: the service opens ``device``,
    the simulator writes to ``wire``. Stopping socat is unplugging the reader."""

    def __init__(self, workdir: Path) -> None:
        self.device = str(workdir / "ttyREADER")
        self.wire = str(workdir / "ttySIM")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SocatPair:
        exe = shutil.which("socat") or "/usr/bin/socat"
        self.proc = subprocess.Popen(
            [exe, f"pty,raw,echo=0,link={self.device}", f"pty,raw,echo=0,link={self.wire}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: os.path.exists(self.device) and os.path.exists(self.wire), 5, "socat")
        return self

    def write(self, data: bytes) -> None:
        fd = os.open(self.wire, os.O_WRONLY | os.O_NOCTTY)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def node_for(
    workdir: Path,
    readers: list[dict[str, Any]],
    broker_port: int | None = None,
    env: dict[str, str] | None = None,
    **rules: Any,
) -> Node:
    """A node (not started) with its own config and API port under ``workdir``."""
    api = free_port()
    config = write_config(
        workdir / "gatehouse.toml", broker_port=broker_port, readers=readers, api_port=api, **rules
    )
    return Node(config, api, env)


class Stream:
    """ffmpeg serving a camera over HTTP (multipart JPEG), as an IP camera would.

    ``pattern`` is an ffmpeg lavfi source: ``testsrc`` moves, ``smptebars`` never changes
    (a frozen camera), ``color=c=black`` is a covered lens."""

    def __init__(self, pattern: str = "testsrc", size: str = "320x240", rate: int = 25) -> None:
        self.port = free_port()
        self.pattern, self.size, self.rate = pattern, size, rate
        self.url = f"http://127.0.0.1:{self.port}/cam"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Stream:
        exe = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
        sep = ":" if "=" in self.pattern else "="
        source = f"{self.pattern}{sep}size={self.size}:rate={self.rate}"
        self.proc = subprocess.Popen(
            [exe, "-loglevel", "error", "-re", "-f", "lavfi", "-i", source, "-c:v", "mjpeg",
             "-q:v", "5", "-f", "mpjpeg", "-listen", "1", self.url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class Office:
    """``gatehouse office`` as a real process on a scratch PostgreSQL database."""

    def __init__(self, workdir: Path, database_url: str, data_dir: Path | None = None) -> None:
        """``data_dir``: another office process's (its keys), to serve the same database as
        one more process of the same office; by default one of its own under ``workdir``."""
        self.port = free_port()
        self.data_dir = data_dir or workdir / "office"
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "office.toml"
        self.config.write_text(
            f'[office]\ndatabase_url = "{database_url}"\nlisten = "127.0.0.1:{self.port}"\n'
            f'data_dir = "{self.data_dir}"\n'
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.log = workdir / "office.log"
        if not (self.data_dir / "keys" / "office_ed25519.key").exists():
            self.token("office", "key", "init")  # once: an office never makes its key itself

    def token(self, *args: str) -> str:
        out = cli(self.config, *args)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def start(self) -> Office:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [GATEHOUSE, "--config", str(self.config), "office"],
                stdout=log, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
        wait_for(self._live, 20, "the office to answer")
        return self

    def _live(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health/live", timeout=1):
                return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)

    def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        return http_call(self.url, method, path, token, body)


def add_sync(node: Node, office: Office, token: str, push_batch: int = 100) -> None:
    """Small batches by default, so a kill lands in the middle of a drain."""
    with node.config.open("a") as f:
        f.write(f'[sync]\noffice_url = "{office.url}"\ntoken = "{token}"\nretry_max_s = 1.0\n'
                f"push_batch = {push_batch}\n")  # fmt: skip


@dataclass
class Estate:
    """An office with one gate joined to it, neither started: the clerk's and the guard's
    tokens, and the gate's API address."""

    office: Office
    clerk: str
    gate: Node
    guard: str
    url: str

    def __iter__(self) -> Iterator[Any]:  # office, clerk, gate, guard, url = …
        return iter((self.office, self.clerk, self.gate, self.guard, self.url))


def office_with_gate(tmp_path: Path, broker_port: int, pg_url: str, gate_toml: str = "",
                     guard_name: str = "门卫老张") -> Estate:  # fmt: skip
    """``gate_toml``: more of the gate's config, written before it joins the office."""
    office = Office(tmp_path / "office", pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    (tmp_path / "gate").mkdir()
    gate = node_for(tmp_path / "gate", [], broker_port)
    gate.config.write_text(gate.config.read_text() + gate_toml)
    add_sync(gate, office, office.token("office", "node", "add", "gate-test"))
    guard = cli(gate.config, "user", "add", guard_name, "--role", "guard").stdout.strip()
    return Estate(office, clerk, gate, guard, f"http://127.0.0.1:{gate.api_port}")


def http_call(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """What `curl -H "Authorization: Bearer …"` would get: the status and the JSON answer."""
    req = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextlib.contextmanager
def in_process(workdir: Path, **extra: Any) -> Iterator[Any]:
    """A Service in this process (a real writer on a real SQLite), for API tests."""
    from edge.config import parse
    from edge.service import Service

    cfg = parse({
        "node": {"id": "n1", "data_dir": str(workdir)},
        "database": {"url": f"sqlite:///{workdir}/edge.db"},
        "gates": [{"id": "main"}, {"id": "side"}],
    } | extra)  # fmt: skip
    svc = Service(cfg)
    svc.writer.start()
    try:
        yield svc
    finally:
        svc.writer.stop()


def bearer(svc: Any, name: str, role: str) -> dict[str, str]:
    from edge import users

    token = svc.write(lambda c: users.add(c, name, role, svc.clock.now()))
    return {"Authorization": f"Bearer {token}"}


class CuttingProxy:
    """A TCP proxy that drops connections in the middle: the first ``cuts`` connections are
    closed after ``after`` bytes from the client (half a push batch on the wire)."""

    def __init__(self, target_port: int, cuts: int, after: int) -> None:
        self.port = free_port()
        self.target = target_port
        self.cuts, self.after = cuts, after
        self.cut = 0
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(50)
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            cut_this = self.cut < self.cuts
            self.cut += cut_this
            threading.Thread(target=self._serve, args=(client, cut_this), daemon=True).start()

    def _serve(self, client: socket.socket, cut: bool) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target))
        except OSError:
            client.close()
            return

        def pump(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
            sent = 0
            try:
                while data := src.recv(65536):
                    if limit is not None and sent + len(data) >= limit:
                        dst.sendall(data[: max(0, limit - sent)])
                        break  # the line goes dead in the middle of the request
                    dst.sendall(data)
                    sent += len(data)
            except OSError:
                pass
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()

        threading.Thread(target=pump, args=(upstream, client, None), daemon=True).start()
        pump(client, upstream, self.after if cut else None)

    def close(self) -> None:
        self._stop = True
        self._server.close()


def pg_rows(pg_url: str, statement: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run one statement on a test's scratch database, committed; its rows, if any."""
    import psycopg2

    conn = psycopg2.connect(dbname=pg_url.rsplit("/", 1)[1])
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


class Robot:
    """A group robot's webhook: keeps what Apprise's ``json://`` posts to it, per path;
    ``down()`` closes its port (the link is down), ``up()`` opens it again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[str, dict[str, Any]]] = []
        self.server: ThreadingHTTPServer | None = None

    def up(self) -> Robot:
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                robot.got.append((self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def titles(self, path: str) -> list[str]:
        return [m["title"] for p, m in list(self.got) if p == path]
