"""Housekeeping off the swipe path: old rows removed in small chunks through the writer.

The writer runs every write in the service (edge.writer), so a job that deleted a month of
acknowledged outbox rows in one statement would hold every swipe queued behind it for as
long as the delete took. Here each chunk is one short writer job that removes at most
``chunk`` rows, found on an index (never a scan of the table), and the driver submits the
next chunk only after the previous one has committed and a pause has passed: swipes that
queued meanwhile are committed in a batch of their own first.

The service starts a :class:`Housekeeper` as a thread of its own; ``alive()`` tells its
readiness check that the thread still turns.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edge import audit, db
from edge.writer import Writer

if TYPE_CHECKING:
    from edge.photos import PhotoStore

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0
DAY_S = 86400.0
OUTBOX_KEEP_S = 30 * DAY_S  # acknowledged rows kept this long: an office restored from a
# backup up to this old gets them again (docs/sync.md)
CHUNK = 100  # rows per writer job: a swipe queued behind one waits about a millisecond
PAUSE_S = 0.05  # between chunks: what queued behind a chunk is committed before the next
BEAT_S = 1.0  # the thread turns at least this often (``alive``)


def prune_outbox(
    conn: sqlite3.Connection, now: float, keep_s: float = OUTBOX_KEEP_S, limit: int = CHUNK
) -> int:
    """Delete at most ``limit`` acknowledged outbox rows older than ``keep_s``; how many.

    The rows are found on ``ix_outbox_acked`` (partial, ``acked_at IS NOT NULL``), so the
    cost is the rows deleted, not the size of the outbox. EXPLAIN QUERY PLAN of the inner
    select (tests/test_housekeeping.py checks it):
    ``SEARCH outbox USING COVERING INDEX ix_outbox_acked (acked_at>? AND acked_at<?)``
    """
    return conn.execute(
        "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox "
        "WHERE acked_at IS NOT NULL AND acked_at < ? ORDER BY acked_at LIMIT ?)",
        (now - keep_s, limit),
    ).rowcount


def purge_visitors(conn: sqlite3.Connection, now: float, keep_s: float, limit: int = CHUNK) -> int:
    """Delete at most ``limit`` visitor records (names, ID last 4, plates, whom they
    visited) registered more than ``keep_s`` ago, oldest first, on ``ix_visitors_registered_at``;
    how many. Each chunk that removes any is written to the audit log: what was purged, when,
    is itself a record (PIPL: personal data kept no longer than its purpose needs)."""
    cutoff = now - keep_s
    n = conn.execute(
        "DELETE FROM visitors WHERE id IN (SELECT id FROM visitors "
        "WHERE registered_at < ? ORDER BY registered_at LIMIT ?)",
        (cutoff, limit),
    ).rowcount
    if n:
        audit.record(conn, "housekeeping", "purge:visitors",
                     f"{n} registered before {cutoff:.0f}", now)  # fmt: skip
    return n


def purge_notifications(
    conn: sqlite3.Connection, now: float, keep_s: float, limit: int = CHUNK
) -> int:
    """Delete at most ``limit`` notifications done with (sent, summarised, dropped) and
    queued more than ``keep_s`` ago; how many. A visitor's carries the host's unit."""
    return conn.execute(
        "DELETE FROM notifications WHERE id IN (SELECT id FROM notifications "
        "WHERE queued_at < ? AND state != 'queued' ORDER BY queued_at LIMIT ?)",
        (now - keep_s, limit),
    ).rowcount


def forget_holders(
    conn: sqlite3.Connection, now: float, keep_s: float, office: bool, limit: int = CHUNK
) -> int:
    """Remove the holder's name from at most ``limit`` access events older than ``keep_s``,
    oldest first; how many. With an ``office``, only events the office has: one still
    waiting in the outbox keeps its name until it is sent (the office's copy is the record
    that keeps it). The gate keeps the decision, the card and the pass it was made on.
    The events are found on ``ix_access_events_named`` (partial: a name still there), so
    the cost is the events changed, not the years of events already without names."""
    waiting = (
        " AND event_id NOT IN (SELECT ref FROM outbox "
        "WHERE acked_at IS NULL AND kind = 'access_event')"
        if office
        else ""
    )
    cutoff = now - keep_s
    n = conn.execute(
        "UPDATE access_events SET holder = NULL WHERE id IN (SELECT id FROM access_events "
        f"WHERE holder IS NOT NULL AND ts < ?{waiting} ORDER BY ts LIMIT ?)",
        (cutoff, limit),
    ).rowcount
    if n:
        audit.record(conn, "housekeeping", "purge:holder_names",
                     f"{n} access events before {cutoff:.0f}", now)  # fmt: skip
    return n


def forget_photos(
    conn: sqlite3.Connection, now: float, store: PhotoStore, grace_s: float, limit: int = CHUNK
) -> int:
    """Drop the photo of at most ``limit`` passes that ended more than ``grace_s`` ago
    (revoked or confiscated then, or valid until then); how many. A picture no other pass
    names is deleted from the store. (It is unlinked before the transaction commits: were
    the commit to fail, the pass would name a picture that is gone, which is what was
    being done anyway.)"""
    cutoff = now - grace_s
    ended = db.rows(
        conn,
        "SELECT id, photo_sha256 FROM passes WHERE photo_sha256 IS NOT NULL AND ("
        "(status != 'active' AND updated_at < ?) OR (valid_until IS NOT NULL AND valid_until < ?)"
        ") LIMIT ?",
        (cutoff, cutoff, limit),
    )
    if not ended:
        return 0
    ids = [p["id"] for p in ended]
    conn.execute(
        f"UPDATE passes SET photo_sha256 = NULL WHERE id IN ({','.join('?' * len(ids))})", ids
    )
    _unlink_unnamed(conn, store, {p["photo_sha256"] for p in ended})
    audit.record(conn, "housekeeping", "purge:photos",
                 f"{len(ended)} passes ended before {cutoff:.0f}", now)  # fmt: skip
    return len(ended)


def purge_key_loans(
    conn: sqlite3.Connection, now: float, store: PhotoStore, keep_s: float, limit: int = CHUNK
) -> int:
    """Delete at most ``limit`` key loans closed more than ``keep_s`` ago (borrowers' names,
    phones and signatures: the register is kept for its period, then goes), and the
    signature pictures nothing else names; how many. Found on ix_key_loans_lent_at: a loan
    closed before the cutoff was lent before it too, and the loans lent since are not read."""
    cutoff = now - keep_s
    gone = db.rows(
        conn,
        "SELECT id, signature_sha256 FROM key_loans WHERE lent_at < ? AND closed_at < ? "
        "ORDER BY lent_at LIMIT ?",
        (cutoff, cutoff, limit),
    )
    if not gone:
        return 0
    ids = [g["id"] for g in gone]
    conn.execute(f"DELETE FROM key_loans WHERE id IN ({','.join('?' * len(ids))})", ids)
    _unlink_unnamed(conn, store, {g["signature_sha256"] for g in gone})
    audit.record(conn, "housekeeping", "purge:key_loans",
                 f"{len(ids)} closed before {cutoff:.0f}", now)  # fmt: skip
    return len(ids)


def _unlink_unnamed(conn: sqlite3.Connection, store: PhotoStore, shas: set[str]) -> None:
    """Delete each of these pictures from the store unless a pass (its photo), a key loan
    (its signature) or a fault notice (its picture) still names it: the store holds them
    all, by content."""
    for sha in shas:
        named = conn.execute(
            "SELECT 1 FROM passes WHERE photo_sha256 = ? UNION ALL "
            "SELECT 1 FROM key_loans WHERE signature_sha256 = ? UNION ALL "
            "SELECT 1 FROM fault_notices WHERE photo_sha256 = ? LIMIT 1", (sha, sha, sha)
        ).fetchone()  # fmt: skip
        if named is None:
            store.path(sha).unlink(missing_ok=True)


@dataclass(frozen=True)
class Task:
    """A chunked clean-up: ``run(conn, now, limit)`` removes at most ``limit`` rows and says
    how many; fewer than ``limit`` means it is done for now. Run every ``every_s``."""

    name: str
    run: Callable[[sqlite3.Connection, float, int], int]
    every_s: float = PRUNE_EVERY_S


def task(name: str, purge: Callable[..., int], *args: Any, every_s: float = PRUNE_EVERY_S) -> Task:
    """The :class:`Task` ``name`` running ``purge(conn, now, *args, limit=...)``: one of the
    chunked clean-ups above with its settings bound."""
    return Task(name, lambda conn, now, limit: purge(conn, now, *args, limit=limit), every_s)


class Housekeeper:
    """Runs each :class:`Task` when it falls due, chunk by chunk through the writer.

    ``clock`` is the wall clock the rows' times are on (``time.time`` in the service);
    ``monotonic`` paces the tasks and the heartbeat. Either use it as a thread
    (``start``/``stop``/``alive``), or call ``due(now)`` and ``run_due()`` from a loop of
    one's own. The first run of each task is ``every_s`` after start, except with
    ``run_at_start``."""

    def __init__(
        self,
        writer: Writer,
        clock: Callable[[], float],
        tasks: list[Task] | None = None,
        *,
        chunk: int = CHUNK,
        pause_s: float = PAUSE_S,
        monotonic: Callable[[], float] = time.monotonic,
        run_at_start: bool = False,
    ) -> None:
        self.writer = writer
        self.clock = clock
        self.tasks = tasks if tasks is not None else [task("outbox", prune_outbox)]
        self.chunk = chunk
        self.pause_s = pause_s
        self.monotonic = monotonic
        started = monotonic()
        self._next = {t.name: started if run_at_start else started + t.every_s for t in self.tasks}
        self.last_beat = started
        self.removed: dict[str, int] = {t.name: 0 for t in self.tasks}  # since start
        self.chunks = 0  # writer jobs submitted
        self.failures = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="housekeeping", daemon=True)

    # -- as a thread --------------------------------------------------------------------

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    def start(self) -> Housekeeper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stops after the chunk in progress, if any (the rest waits for the next start)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def alive(self, within_s: float = 3 * BEAT_S + 30.0) -> bool:
        """The thread runs and has turned within ``within_s`` (a chunk waits at most the
        writer call's timeout, so a beat can be that late without anything being wrong)."""
        return self._thread.is_alive() and self.monotonic() - self.last_beat < within_s

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.last_beat = self.monotonic()
            try:
                self.run_due()
            except Exception as e:  # never: but a dead housekeeper lets the outbox grow
                self._failed(e)
            self._stop.wait(BEAT_S)

    # -- as steps of someone else's loop ------------------------------------------------

    def due(self, now: float | None = None) -> bool:
        """Whether any task is due at ``now`` (monotonic; the housekeeper's own by default)."""
        now = self.monotonic() if now is None else now
        return any(now >= at for at in self._next.values())

    def run_due(self) -> dict[str, int]:
        """Run every task that is due, each until it is done; the rows each removed."""
        done: dict[str, int] = {}
        for task in self.tasks:
            if self._stop.is_set() or self.monotonic() < self._next[task.name]:
                continue
            try:
                done[task.name] = self.run_task(task)
            except Exception as e:
                self._failed(e)  # tried again at its next time
            self._next[task.name] = self.monotonic() + task.every_s
        return done

    def run_task(self, task: Task) -> int:
        """Chunks of ``task`` through the writer until a chunk removes fewer than
        ``chunk`` rows. Each waits for its commit; then a pause, so that whatever queued
        behind it (swipes) is committed in a batch of its own before the next."""
        total = 0
        while not self._stop.is_set():
            now = self.clock()
            n = self.writer.call(lambda c, now=now: task.run(c, now, self.chunk))
            self.chunks += 1
            total += n
            self.removed[task.name] += n
            self.last_beat = self.monotonic()
            if n < self.chunk:
                break
            self._stop.wait(self.pause_s)
        if total:
            log.info("housekeeping: %s: %d rows removed", task.name, total)
        return total

    def _failed(self, e: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(e).__name__}: {e}"
        log.warning("housekeeping failed: %s", self.last_error)
