"""The office process's ear on the change log: one ``LISTEN`` connection, read on the
event loop.

``sync.office.log_change`` calls ``pg_notify('gatehouse_changes', change_id)`` in the
transaction that appends a change; PostgreSQL delivers it at commit, in commit order, to
every session listening on the channel. So one connection per office process hears every
change, whichever process (or ``gatehouse`` command) committed it, and a waiting gate costs
no query until something changed.

The connection is an ordinary blocking psycopg2 one in autocommit mode: opened in a thread,
then only read when its socket is readable (``loop.add_reader``), so ``conn.poll()`` never
waits. When it drops (the database restarted, the backend was terminated) it is opened
again with backoff; meanwhile the caller falls back to looking at the log itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg2
import psycopg2.extensions

log = logging.getLogger(__name__)

CHANNEL = "gatehouse_changes"
APPLICATION_NAME = "gatehouse-office-listen"  # how pg_stat_activity shows the connection
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
# Unless the database's URL says otherwise. Over TCP, a peer that vanished without a word
# (a cut cable) is found within about a minute instead of never: an idle LISTEN connection
# sends nothing to fail on (libpq ignores keepalives on a Unix socket, which a dead server
# closes). And an attempt gives up: libpq would wait for ever, holding a thread that the
# process's shutdown then waits for.
DEFAULTS = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 30,
            "keepalives_interval": 10, "keepalives_count": 3}  # fmt: skip

Connect = Callable[[], psycopg2.extensions.connection]


def connector(connect_args: dict[str, Any]) -> Connect:
    """A function that opens the listening connection (blocking: a thread's job) with
    ``connect_args`` as psycopg2 takes them, e.g. from SQLAlchemy's
    ``dialect.create_connect_args(url)``."""

    def connect() -> psycopg2.extensions.connection:
        conn = psycopg2.connect(
            **(DEFAULTS | connect_args | {"application_name": APPLICATION_NAME})
        )
        try:
            conn.autocommit = True  # LISTEN takes effect at once; nothing else is ever sent
            with conn.cursor() as cur:
                cur.execute(f"LISTEN {CHANNEL}")
        except BaseException:
            conn.close()
            raise
        return conn

    return connect


class ChangeListener:
    """Keeps one connection listening on ``CHANNEL`` for as long as it runs.

    ``heard(change_id)`` is called on the event loop for each notification's batch with
    the last id (the newest commit); ``up()`` once the connection listens, before the
    listener counts as listening (the caller looks at the log there: a change committed
    while nobody listened sent its notification to no one), and ``down()`` when it dropped.
    ``ended(node_id)`` is called for ``node:<id>``: that node's token was revoked or
    replaced (sync.office), so its waiting poll is to be answered at once.
    """

    def __init__(
        self,
        connect: Connect,
        heard: Callable[[int], None],
        up: Callable[[], Awaitable[None]],
        down: Callable[[], None],
        ended: Callable[[str], None] | None = None,
    ) -> None:
        self._connect, self._heard, self._up, self._down = connect, heard, up, down
        self._ended = ended
        self.listening = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.listening = False

    async def _run(self) -> None:
        retry = RETRY_FIRST_S
        away = False  # the log said nothing listens: said once, and once when back
        while True:
            try:
                conn = await asyncio.to_thread(self._connect)
            except Exception as e:
                gone: BaseException = e
            else:
                gone = await self._serve(conn, away)
            was = self.listening
            self.listening = False
            if was:
                self._down()
                retry = RETRY_FIRST_S
            if not away:
                what = "connection lost" if was else "cannot listen"
                log.warning("change listener: %s (%s); looking at the change log instead "
                            "until it is back", what, _first_line(gone))  # fmt: skip
            away = True
            # jittered: the office processes of one database do not all return at once
            await asyncio.sleep(random.uniform(retry / 2, retry))
            retry = min(retry * 2, RETRY_MAX_S)

    async def _serve(self, conn: psycopg2.extensions.connection, away: bool) -> BaseException:
        """Read ``conn`` until it drops; what ended it."""
        loop = asyncio.get_running_loop()
        fd = conn.fileno()
        lost: asyncio.Future[BaseException] = loop.create_future()
        loop.add_reader(fd, self._read, conn, lost)
        try:
            self._read(conn, lost)  # what libpq read along with LISTEN's answer
            await self._up()
            self.listening = True
            if away:
                log.warning("change listener: listening again")
            return await lost
        except Exception as e:  # up() could not look at the log: the database is away
            return e
        finally:
            loop.remove_reader(fd)
            with contextlib.suppress(Exception):
                conn.close()

    def _read(self, conn: psycopg2.extensions.connection, lost: asyncio.Future[Any]) -> None:
        """The socket is readable: take what arrived (never waits: libpq's socket is
        non-blocking), or find the connection gone."""
        if lost.done():
            return
        try:
            conn.poll()
        except psycopg2.Error as e:  # the server closed it, or the socket failed
            lost.set_result(e)
            return
        ids = [int(n.payload) for n in conn.notifies if n.payload.isascii() and n.payload.isdigit()]
        # (a forged one only makes the poll check its token again: see office_api.pull)
        nodes = [n.payload[5:] for n in conn.notifies if n.payload.startswith("node:")]
        conn.notifies.clear()  # (any other payload is not ours: anyone may NOTIFY, even "²")
        if ids:
            self._heard(ids[-1])  # commit order: the last is the newest
        for node_id in nodes if self._ended else ():
            self._ended(node_id)


def _first_line(e: BaseException) -> str:
    """libpq's messages run over several lines; the log wants the first."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
