"""The one database writer: a thread that runs jobs in shared transactions (group commit).

Every write in the service is a job: ``run(conn)`` does its SQL inside the batch's
transaction and returns what to do once that transaction is on disk (publish, ack, answer
a caller). A batch of jobs costs one fsync, which is what lets a burst of swipes be
recorded durably at thousands per second; each job sits in its own savepoint, so one job's
error rolls back that job alone.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

log = logging.getLogger(__name__)

MAX_BATCH = 500
AfterCommit = Callable[[], None] | None


class Job(Protocol):
    def run(self, conn: sqlite3.Connection) -> AfterCommit: ...

    def failed(self, error: BaseException) -> None: ...


class CallJob:
    """A function run in the writer; its result reaches the caller after the commit."""

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        after: Callable[[Any], None] | None = None,
    ) -> None:
        self.fn = fn
        self.after = after
        self.future: Future[Any] = Future()

    def run(self, conn: sqlite3.Connection) -> AfterCommit:
        result = self.fn(conn)

        def done() -> None:
            if self.after is not None:
                self.after(result)
            self.future.set_result(result)

        return done

    def failed(self, error: BaseException) -> None:
        self.future.set_exception(error)


class Writer:
    def __init__(self, conn: sqlite3.Connection, checkpoint_every_s: float = 1.0) -> None:
        self.conn = conn
        # A WAL checkpoint inside a commit would hold a swipe up for milliseconds: the
        # writer never checkpoints; a thread of its own does, between commits.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        self.checkpoint_every_s = checkpoint_every_s
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.last_beat = time.monotonic()  # the watchdog checks the writer is turning
        self.commits = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self._checkpointer = threading.Thread(
            target=self._checkpoints, name="checkpoint", daemon=True
        )
        self._stopped = threading.Event()

    def start(self) -> None:
        self._thread.start()
        self._checkpointer.start()

    def alive(self, within_s: float = 5.0) -> bool:
        return self._thread.is_alive() and time.monotonic() - self.last_beat < within_s

    def submit(self, job: Job) -> None:
        self.jobs.put(job)

    def call(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        after: Callable[[Any], None] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """Run ``fn(conn)`` in the writer and wait until its transaction is committed;
        ``after(result)`` runs once it is, before the caller gets the result."""
        job = CallJob(fn, after)
        self.jobs.put(job)
        return job.future.result(timeout)

    def stop(self) -> None:
        """Finish every job already queued, then stop."""
        self.jobs.put(None)
        self._thread.join(timeout=30)
        self._stopped.set()
        self._checkpointer.join(timeout=10)
        with contextlib.suppress(sqlite3.Error):  # a reader may hold it; not worth waiting
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _checkpoints(self) -> None:
        """PASSIVE checkpoints on a connection of their own: they never block a commit."""
        (path,) = (row[2] for row in self.conn.execute("PRAGMA database_list") if row[1] == "main")
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stopped.wait(self.checkpoint_every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as e:
                    log.warning("checkpoint failed: %s", e)
        finally:
            conn.close()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            self.last_beat = time.monotonic()
            try:
                first = self.jobs.get(timeout=0.5)
            except queue.Empty:
                continue
            batch: list[Job] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < MAX_BATCH:
                try:
                    job = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[Job]) -> None:
        conn = self.conn
        effects: list[Callable[[], None]] = []
        ran: list[Job] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    after = job.run(conn)
                except Exception as e:  # one bad job must not sink the others
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    self.errors += 1
                    log.exception("writer job failed")
                    job.failed(e)
                    continue
                conn.execute("RELEASE job")
                ran.append(job)
                if after is not None:
                    effects.append(after)
            conn.execute("COMMIT")
            self.commits += 1
        except sqlite3.Error as e:
            # the whole transaction is lost (disk full, I/O error): nobody may act on it
            log.error("writer: commit failed: %s", e)
            self.errors += 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in ran:
                job.failed(e)
            return
        for effect in effects:
            try:
                effect()
            except Exception:
                log.exception("writer: after-commit effect failed")
