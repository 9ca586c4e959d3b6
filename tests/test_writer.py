"""The one writer on a real SQLite file: every job ends exactly once, whatever fails."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from edge import db
from edge import writer as writer_mod
from edge.errors import Conflict
from edge.writer import CallJob, Outcome, Writer


def put(key: str):
    return lambda c: db.set_meta(c, key, "1")


def test_a_database_locked_by_another_process_is_waited_for_and_nothing_is_lost(
    path: Path, writer: Writer
):
    """`pass import` held the write lock for 30 s and every job in the writer's batch was
    neither run nor failed: swipes got no decision and no count."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    jobs = [CallJob(put(f"k{i}")) for i in range(20)]
    for job in jobs:
        writer.submit(job)
    threading.Timer(1.0, lambda: other.execute("COMMIT")).start()
    for job in jobs:
        job.future.result(15)  # each committed once the lock was free
    keys = {r[0] for r in other.execute("SELECT key FROM node_meta WHERE key LIKE 'k%'")}
    assert keys == {f"k{i}" for i in range(20)}
    assert writer.errors == 0 and not writer.failing()


def test_a_lock_held_past_the_wait_fails_every_job_once_and_is_seen(
    path: Path, writer: Writer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(writer_mod, "LOCKED_RETRY_S", 0.5)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    ends: Counter[str] = Counter()

    class Counted(CallJob):
        def done(self, outcome: Outcome) -> None:
            ends["done"] += 1
            super().done(outcome)

        def failed(self, error: BaseException) -> None:
            ends["failed"] += 1
            super().failed(error)

    jobs = [Counted(put(f"k{i}")) for i in range(5)]
    for job in jobs:
        writer.submit(job)
    for job in jobs:
        with pytest.raises(sqlite3.OperationalError):
            job.future.result(30)
    assert ends == {"failed": 5} and writer.failing() and "locked" in (writer.last_error or "")
    other.execute("COMMIT")
    assert writer.call(put("after")) is None  # works again once the lock is free


def test_one_job_s_rule_refusal_or_bug_costs_only_that_job(writer: Writer):
    def refused(_c: sqlite3.Connection) -> None:
        raise Conflict("slip FX-2026-00001 was used already")

    def buggy(c: sqlite3.Connection) -> None:
        db.set_meta(c, "half", "written")
        raise KeyError("a bug")

    jobs = [CallJob(put("a")), CallJob(refused), CallJob(buggy), CallJob(put("b"))]
    for job in jobs:
        writer.submit(job)
    assert jobs[0].future.result(10) is None and jobs[3].future.result(10) is None
    with pytest.raises(Conflict):
        jobs[1].future.result(10)
    with pytest.raises(KeyError):
        jobs[2].future.result(10)
    assert writer.call(lambda c: db.get_meta(c, "half")) is None  # its savepoint undone
    assert writer.refused == 1 and writer.errors == 1  # a refusal is not a fault


def test_in_memory_changes_are_undone_when_the_transaction_fails(
    path: Path, writer: Writer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(writer_mod, "LOCKED_RETRY_S", 0.3)
    seen: dict[str, float] = {"old": 1.0}
    later: dict[str, int] = {}

    def job(c: sqlite3.Connection) -> Outcome:
        out = Outcome()
        out.set_now(seen, "card", 2.0)
        out.set_now(seen, "old", 3.0)
        out.state.append((later, "n", 1))
        db.set_meta(c, "x", "1")
        return out

    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError):
        writer.call(job, timeout=30)
    assert seen == {"old": 1.0} and later == {}
    other.execute("COMMIT")
    writer.call(job)
    assert seen == {"old": 3.0, "card": 2.0} and later == {"n": 1}


def test_a_failing_after_step_still_answers_the_caller_with_the_committed_result(
    writer: Writer,
):
    """An exception in CallJob.after left the caller waiting 10 s for a 503 on a write
    that was committed."""

    def after(_result: object) -> None:
        raise RuntimeError("publishing failed")

    assert writer.call(lambda c: db.set_meta(c, "k", "v") or "done", after=after) == "done"


def test_a_caller_that_gives_up_before_its_job_began_withdraws_it(writer: Writer):
    gate = threading.Event()
    writer.submit(CallJob(lambda c: gate.wait(10)))  # the writer is busy
    with pytest.raises(FutureTimeout):
        writer.call(put("late"), timeout=0.2)
    gate.set()
    assert writer.call(lambda c: db.get_meta(c, "late")) is None  # never written


def test_a_job_after_the_writer_stopped_is_failed_as_not_its_own_fault(writer: Writer):
    """A swipe arriving during shutdown was failed with an error the gate took for the
    job's own: the MQTT swipe was acknowledged and never recorded."""
    writer.stop()
    job = CallJob(put("late"))
    writer.submit(job)
    with pytest.raises(writer_mod.WriterStopped) as stopped:
        job.future.result(1)
    assert not writer_mod.job_level(stopped.value)  # so an input is delivered again


def test_a_committed_batch_s_effects_are_applied_inside_one_effects_context(path: Path):
    """The MQTT link sends a batch's acks and publishes together when the context ends."""
    inside: list[bool] = []
    entered: list[str] = []
    depth = 0

    class Effects:
        def __enter__(self) -> None:
            nonlocal depth
            depth += 1
            entered.append("enter")

        def __exit__(self, *_exc: object) -> None:
            nonlocal depth
            depth -= 1

    w = Writer(db.connect(path), apply=lambda _o: inside.append(depth == 1), effects=Effects)
    jobs = [CallJob(put(f"k{i}")) for i in range(50)]
    for job in jobs:
        w.submit(job)  # queued before the writer starts: one batch
    w.start()
    try:
        for job in jobs:
            job.future.result(10)
    finally:
        w.stop()
    assert inside == [True] * 50
    assert entered == ["enter"]


@pytest.mark.parametrize("breaks", ["__enter__", "__exit__"])
def test_an_effects_context_that_fails_costs_no_committed_job_its_completion(
    path: Path, breaks: str
):
    ends: Counter[str] = Counter()

    class Broken:
        def __enter__(self) -> None:
            if breaks == "__enter__":
                raise RuntimeError("no context")

        def __exit__(self, *_exc: object) -> None:
            if breaks == "__exit__":
                raise RuntimeError("cannot close")

    class Counted(CallJob):
        def done(self, outcome: Outcome) -> None:
            ends["done"] += 1
            super().done(outcome)

        def failed(self, error: BaseException) -> None:
            ends["failed"] += 1
            super().failed(error)

    w = Writer(db.connect(path), effects=Broken)
    jobs = [Counted(put(f"k{i}")) for i in range(10)]
    for job in jobs:
        w.submit(job)
    w.start()
    try:
        for job in jobs:
            assert job.future.result(10) is None
        assert w.call(put("after")) is None  # and the writer goes on
    finally:
        w.stop()
    assert ends == {"done": 10}  # each once, none failed
