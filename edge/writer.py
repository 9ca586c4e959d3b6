"""The one database writer: a thread that runs jobs in shared transactions (group commit).

Every write in the service is a job: ``run(conn)`` does its SQL inside the batch's
transaction and returns an :class:`Outcome` — plain values saying what may happen once that
transaction is on disk (messages to publish, a barrier command with its expiry, MQTT
acknowledgements, snapshot requests, counters, the caller's reply). A batch of jobs costs
one fsync, which is what lets a burst of swipes be recorded durably at thousands per
second; each job sits in its own savepoint, so one job's error rolls back that job alone.

Each job ends exactly once: ``done(outcome)`` after its commit, or ``failed(error)``. When
the whole transaction fails (the database locked by another process, a full disk, an I/O
error), nothing of it happened: in-memory changes are undone, a locked database is waited
for and the batch tried again, and otherwise each job is tried alone, so one job's disk
error cannot take its neighbours with it and none is left hanging.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, MutableMapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from edge.errors import DomainError

log = logging.getLogger(__name__)

MAX_BATCH = 500
LOCKED_RETRY_S = 30.0  # how long a locked database is waited for before jobs are failed
# A failing database is well again only after a real write with no failure for this long:
# on a nearly full disk small writes pass while swipes fail, and that is not health.
RECOVERED_AFTER_S = 5.0
_MISSING = object()


class WriterStopped(RuntimeError):
    """The writer has stopped (the service is shutting down): nothing was recorded. Not the
    job's own fault: an input failed with it must be delivered again, not acknowledged."""


@dataclass(frozen=True, slots=True)
class Command:
    """An actuation (open the barrier): sent at once after the commit or never.

    ``expires`` is on the monotonic clock: a command whose moment has passed (the writer
    was held up) is dropped and counted, not sent late."""

    topic: str
    payload: dict[str, Any]
    expires: float


@dataclass(frozen=True, slots=True)
class Snap:
    """Ask the gate's camera for a picture of this record."""

    gate: str | None
    ref_kind: str
    ref_id: str
    ts: float


@dataclass(slots=True)
class Outcome:
    """What a committed job lets happen, as values the service applies in order: acks,
    state, counters, messages, commands, snapshots; then the caller gets ``reply``."""

    reply: Any = None
    acks: list[Callable[[], None]] = field(default_factory=list)
    messages: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    retained: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # a state
    commands: list[Command] = field(default_factory=list)
    snapshots: list[Snap] = field(default_factory=list)
    counts: list[tuple[Counter[str], str]] = field(default_factory=list)
    # in-memory changes the job made at once (later jobs in its batch must see them), with
    # the values they replaced: put back if the transaction rolls back
    undo: list[tuple[MutableMapping[Any, Any], Any, Any]] = field(default_factory=list)
    # in-memory changes that wait for the commit: (mapping, key, value)
    state: list[tuple[MutableMapping[Any, Any], Any, Any]] = field(default_factory=list)
    sent: list[bool] = field(default_factory=list)  # per command, filled in when applied
    decided: list[float] = field(default_factory=list)  # reads decided: when each was read

    def count(self, counter: Counter[str], key: str) -> None:
        self.counts.append((counter, key))

    def set_now(self, mapping: MutableMapping[Any, Any], key: Any, value: Any) -> None:
        """Change ``mapping[key]`` now; undone if this job's transaction rolls back."""
        self.undo.append((mapping, key, mapping.get(key, _MISSING)))
        mapping[key] = value

    def merge(self, other: Outcome | None) -> Outcome:
        if other is not None:
            self.acks += other.acks
            self.messages += other.messages
            self.retained += other.retained
            self.commands += other.commands
            self.snapshots += other.snapshots
            self.counts += other.counts
            self.decided += other.decided
            self.undo += other.undo
            self.state += other.state
        return self

    def rolled_back(self) -> None:
        for mapping, key, old in reversed(self.undo):
            if old is _MISSING:
                mapping.pop(key, None)
            else:
                mapping[key] = old
        self.undo.clear()


class Job(Protocol):
    def run(self, conn: sqlite3.Connection) -> Outcome | None: ...

    def done(self, outcome: Outcome) -> None: ...

    def failed(self, error: BaseException) -> None: ...


class CallJob:
    """A function run in the writer; its result reaches the caller after the commit.

    ``fn`` returns a plain value (the caller's result) or an :class:`Outcome` (the caller
    gets the outcome once it has been applied: which commands went out, and its reply)."""

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        after: Callable[[Any], None] | None = None,
    ) -> None:
        self.fn = fn
        self.after = after
        self.future: Future[Any] = Future()
        self._started = False
        self._whole = False

    def run(self, conn: sqlite3.Connection) -> Outcome | None:
        if not self._started:
            self._started = True
            # a caller that gave up before the job began gets its 503 truthfully: not run
            if not self.future.set_running_or_notify_cancel():
                return None
        result = self.fn(conn)
        self._whole = isinstance(result, Outcome)
        return result if isinstance(result, Outcome) else Outcome(reply=result)

    def done(self, outcome: Outcome) -> None:
        if self.future.done():
            return
        try:
            if self.after is not None:
                self.after(outcome.reply)
        except Exception:  # the write is committed: the caller still hears so
            log.exception("writer: after-commit step failed")
        self.future.set_result(outcome if self._whole else outcome.reply)

    def failed(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


def job_level(error: BaseException) -> bool:
    """An error that belongs to one job (a rule's refusal, a constraint, a bug in it) rather
    than to the transaction (locked, disk full, I/O error): only its savepoint is undone."""
    if isinstance(error, WriterStopped):
        return False
    if not isinstance(error, sqlite3.Error):
        return True
    return isinstance(error, sqlite3.IntegrityError | sqlite3.ProgrammingError)


def locked(error: BaseException) -> bool:
    name = getattr(error, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(error)


class Writer:
    def __init__(
        self,
        conn: sqlite3.Connection,
        apply: Callable[[Outcome], None] | None = None,
        effects: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
        checkpoint_every_s: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        on_commit: Callable[[float], None] | None = None,
    ) -> None:
        self.conn = conn
        self.on_commit = on_commit  # told each committed transaction's duration (metrics)
        # A WAL checkpoint inside a commit would hold a swipe up for milliseconds: the
        # writer never checkpoints; a thread of its own does, between commits.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        # Waits for another process's lock in short steps, so the writer stays responsive
        # and retries inside LOCKED_RETRY_S rather than blocking for the whole of it.
        conn.execute("PRAGMA busy_timeout=200")
        self.apply = apply or apply_acks_only
        self.effects = effects  # entered around a committed batch's effects (Bus.batch)
        self.checkpoint_every_s = checkpoint_every_s
        self.monotonic = monotonic
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.last_beat = monotonic()  # the loop turned (at least every 0.5 s)
        self.last_commit = monotonic()  # a transaction that wrote something reached the disk
        self.last_failure: float | None = None  # a transaction failed
        self.failing_since: float | None = None  # the first failure not yet recovered from
        self.last_error: str | None = None
        self.commits = 0
        self.errors = 0  # transactions that failed, and jobs that failed for a fault
        self.refused = 0  # jobs a rule refused (409/422): outcomes, not faults
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self._checkpointer = threading.Thread(
            target=self._checkpoints, name="checkpoint", daemon=True
        )
        self._stopped = threading.Event()
        self._closed = False

    def start(self) -> None:
        self._thread.start()
        self._checkpointer.start()

    def alive(self, within_s: float = 5.0) -> bool:
        return self._thread.is_alive() and self.monotonic() - self.last_beat < within_s

    def failing(self) -> bool:
        """Transactions fail, and none has written since failures stopped."""
        return self.failing_since is not None

    def failing_for(self) -> float:
        return 0.0 if self.failing_since is None else self.monotonic() - self.failing_since

    def submit(self, job: Job) -> None:
        if self._closed:  # nothing would ever run it: say so at once
            job.failed(WriterStopped("the writer has stopped"))
            return
        self.jobs.put(job)

    def call(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        after: Callable[[Any], None] | None = None,
        timeout: float = 10.0,
    ) -> Any:
        """Run ``fn(conn)`` in the writer and wait until its transaction is committed;
        ``after(result)`` runs once it is, before the caller gets the result.

        On a timeout the job is withdrawn if it has not begun (TimeoutError: nothing was
        written); one already running is waited for, so a committed write is never
        reported as failed."""
        job = CallJob(fn, after)
        self.submit(job)
        try:
            return job.future.result(timeout)
        except TimeoutError:
            if job.future.cancel():
                raise
            return job.future.result(LOCKED_RETRY_S + 30)

    def stop(self) -> None:
        """Finish every job already queued, then stop."""
        self._closed = True
        self.jobs.put(None)
        self._thread.join(timeout=30)
        while True:  # one that slipped in behind the stop is told, not left waiting
            try:
                late = self.jobs.get_nowait()
            except queue.Empty:
                break
            if late is not None:
                late.failed(WriterStopped("the writer has stopped"))
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
            self.last_beat = self.monotonic()
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
                try:
                    self._run_batch(batch)
                except BaseException as e:  # never: but a writer that dies silences the gate
                    log.exception("writer: batch handling failed")
                    for job in batch:
                        with contextlib.suppress(Exception):
                            job.failed(e)

    # -- one batch ------------------------------------------------------------------------

    def _run_batch(self, batch: list[Job]) -> None:
        """Run the batch in one transaction; if the transaction fails, wait out a lock and
        try again, else try each job alone. Every job ends exactly once."""
        deadline = self.monotonic() + LOCKED_RETRY_S
        error = self._attempt(batch, deadline)
        if error is None:
            return
        if len(batch) > 1:
            log.warning("writer: a batch of %d failed (%s); trying each job alone",
                        len(batch), error)  # fmt: skip
            for job in batch:
                single = self._attempt([job], self.monotonic() + 1.0)
                if single is not None:
                    self._fail(job, single)
        else:
            self._fail(batch[0], error)

    def _attempt(self, jobs: list[Job], deadline: float) -> sqlite3.Error | None:
        """One transaction, retried while the database is locked until ``deadline``; the
        error if it could not be committed (nothing of it is kept, in memory or on disk)."""
        pause = 0.01
        while True:
            wrote = self.conn.total_changes
            began = self.monotonic()
            try:
                ended = self._transaction(jobs)
            except sqlite3.Error as e:
                self.last_error = f"{type(e).__name__}: {e}"
                if locked(e) and self.monotonic() + pause < deadline:
                    time.sleep(pause)  # another process holds the lock: wait it out
                    pause = min(pause * 2, 0.5)
                    self.last_beat = self.monotonic()  # waiting, not hung
                    continue
                self.last_failure = self.monotonic()
                if self.failing_since is None:
                    self.failing_since = self.last_failure
                self.errors += 1
                log.error("writer: transaction failed: %s", e)
                return e
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit(self.monotonic() - began)
            if self.conn.total_changes != wrote:  # only a write proves the disk takes them
                self.last_commit = self.monotonic()
                if (
                    self.failing_since is not None
                    and self.last_failure is not None
                    and self.last_commit - self.last_failure >= RECOVERED_AFTER_S
                ):
                    self.failing_since = None  # fmt: skip
            self._end(ended)
            return None

    def _end(self, ended: list[tuple[Job, Outcome | None, BaseException | None]]) -> None:
        """Finish every job of a committed batch, inside the effects context if it can be
        had. The jobs are on disk: a context that fails (to open or to close) costs the
        batching of their effects, never their completion, and never fails them twice."""
        try:
            with contextlib.ExitStack() as stack:
                try:
                    stack.enter_context(self.effects())
                except Exception:
                    log.exception("writer: no effects context; each effect goes alone")
                for job, outcome, job_error in ended:  # neither step raises
                    if job_error is not None:
                        self._fail(job, job_error)
                    elif outcome is not None:
                        self._finish(job, outcome)
        except Exception:
            log.exception("writer: closing the effects context failed")

    def _transaction(
        self, jobs: list[Job]
    ) -> list[tuple[Job, Outcome | None, BaseException | None]]:
        conn = self.conn
        ended: list[tuple[Job, Outcome | None, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    outcome = job.run(conn) or Outcome()
                except Exception as e:
                    if not job_level(e) or not conn.in_transaction:
                        raise  # the transaction itself failed: handled for the batch
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    ended.append((job, None, e))
                    continue
                conn.execute("RELEASE job")
                ended.append((job, outcome, None))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for _job, outcome, _e in reversed(ended):
                if outcome is not None:
                    outcome.rolled_back()
            raise
        return ended

    def _finish(self, job: Job, outcome: Outcome) -> None:
        try:
            self.apply(outcome)
        except Exception:
            log.exception("writer: applying a committed outcome failed")
        try:
            job.done(outcome)
        except Exception:
            log.exception("writer: a job's completion failed")

    def _fail(self, job: Job, error: BaseException) -> None:
        if isinstance(error, DomainError):
            self.refused += 1  # a rule said no: the caller hears why; not a fault
        else:
            self.errors += 1
            if job_level(error):
                log.error("writer job failed: %s", error, exc_info=error)
        try:
            job.failed(error)
        except Exception:
            log.exception("writer: a job's failure handler failed")


def apply_acks_only(outcome: Outcome) -> None:
    """The default for a writer with no service around it (the CLI, tests)."""
    apply_state(outcome)
    for ack in outcome.acks:
        ack()
    outcome.sent = [False] * len(outcome.commands)


def apply_state(outcome: Outcome) -> None:
    for mapping, key, value in outcome.state:
        mapping[key] = value
    for counter, key in outcome.counts:
        counter[key] += 1
