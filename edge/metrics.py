"""Prometheus metrics: ``GET /metrics`` on the gate and the office.

Most figures are read at scrape time from what the service already keeps for its readiness
report (edge.health): one source of truth, nothing counted twice. Only durations need
observing as they happen: a swipe's read to its decision being published, and a writer
transaction's commit. Each service has its own registry (a test runs several in one
process; a global registry would mix them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from edge.service import Service

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# the swipe-to-decision target is well under a second; the buckets resolve around it
SWIPE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


class EdgeMetrics:
    """A gate's registry: the two histograms, and a collector that reads the rest."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.swipe = Histogram(
            "gatehouse_swipe_to_decision_seconds",
            "From a card read (or QR scan) to its decision being published",
            buckets=SWIPE_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.commit = Histogram(
            "gatehouse_writer_commit_seconds", "One writer transaction, begin to commit",
            buckets=COMMIT_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def attach(self, svc: Service) -> None:
        self.registry.register(_EdgeCollector(svc))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _EdgeCollector(Collector):
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Metric]:
        from edge import health

        ok, report = health.report(self.svc)
        yield _gauge("gatehouse_ready", "1 while every part the gate depends on works", ok)
        yield _gauge("gatehouse_uptime_seconds", "Since the service started",
                     report["uptime_s"])  # fmt: skip
        yield from _database(report["database"])
        yield from _broker(report["broker"])
        yield from _labelled("gatehouse_thread_alive", "1 while the thread runs", "thread",
                             report["threads"])  # fmt: skip
        yield from _readers(report["readers"])
        yield from _cameras(report["cameras"])
        yield from _sync(report["sync"])
        yield from _notify(report["notify"]["channels"])
        yield from _counts(report["counts"])
        yield from _alarms(self.svc)


def _gauge(name: str, doc: str, value: Any) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value or 0))


def _labelled(name: str, doc: str, label: str, values: dict[str, Any]) -> Iterator[Metric]:
    g = GaugeMetricFamily(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        g.add_metric([key], float(bool(value)) if isinstance(value, bool) else float(value))
    yield g


def _database(d: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("gatehouse_database_ok", "1 while the database takes writes", d["ok"])
    yield _gauge("gatehouse_writer_queue_depth", "Jobs waiting for the writer", d["queued"])
    yield _gauge("gatehouse_database_failing_seconds", "How long writes have been failing",
                 d["failing_for_s"])  # fmt: skip
    yield _gauge("gatehouse_database_last_commit_age_seconds", "Since the last write",
                 d["last_commit_age_s"])  # fmt: skip
    for key, doc in (("commits", "Writer transactions committed"),
                     ("errors", "Writer transactions the database failed"),
                     ("refused", "Writes refused by a rule (a second release, …)")):  # fmt: skip
        yield CounterMetricFamily(f"gatehouse_writer_{key}", doc, value=d[key])


def _broker(b: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("gatehouse_mqtt_configured", "1 when the gate uses a broker", b["configured"])
    yield _gauge("gatehouse_mqtt_connected", "1 while connected to the broker",
                 b.get("connected", False))  # fmt: skip
    yield _gauge("gatehouse_mqtt_awaiting_ack", "Messages sent and not yet acknowledged",
                 b.get("awaiting_ack", 0))  # fmt: skip


def _readers(readers: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    up = GaugeMetricFamily("gatehouse_reader_up", "1 while the reader is open and not silent",
                           labels=["reader", "transport"])  # fmt: skip
    age = GaugeMetricFamily("gatehouse_reader_last_frame_age_seconds",
                            "Since the reader's last frame", labels=["reader"])  # fmt: skip
    frames = CounterMetricFamily("gatehouse_reader_frames", "Frames a serial reader sent that "
                                 "were read whole", labels=["reader"])  # fmt: skip
    rejected = CounterMetricFamily("gatehouse_reader_rejected_frames", "Frames refused (a "
                                   "bad checksum, noise…)", labels=["reader", "why"])  # fmt: skip
    for rid, r in sorted(readers.items()):
        up.add_metric([rid, r["transport"]], float(r["ok"]))
        if r["last_frame_age_s"] is not None:
            age.add_metric([rid], float(r["last_frame_age_s"]))
        if "frames" in r:  # (serial readers: an MQTT reader's refusals are in the counts)
            frames.add_metric([rid], r["frames"])
            for why, n in sorted(r["rejected"].items()):
                rejected.add_metric([rid, why], n)
    yield from (up, age, frames, rejected)


def _cameras(cameras: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    up = GaugeMetricFamily("gatehouse_camera_up", "1 while the camera gives live pictures",
                           labels=["camera", "gate"])  # fmt: skip
    state = GaugeMetricFamily("gatehouse_camera_condition", "1 while the condition holds",
                              labels=["camera", "condition"])  # fmt: skip
    for cid, c in sorted(cameras.items()):
        up.add_metric([cid, c["gate"]], float(c["ok"]))
        for condition in ("offline", "frozen", "covered"):
            state.add_metric([cid, condition], float(bool(c[condition])))
    yield up
    yield state


def _sync(s: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("gatehouse_sync_configured", "1 when the gate syncs with an office",
                 s.get("configured", True))  # fmt: skip
    if s.get("configured", True) is False:
        return
    yield _gauge("gatehouse_sync_connected", "1 while the office answers", s["connected"])
    yield _gauge("gatehouse_sync_backlog", "Records not yet acknowledged by the office",
                 s["backlog"])  # fmt: skip
    yield _gauge("gatehouse_sync_push_lag_seconds", "Age of the oldest record not yet at the "
                 "office (0: none)", s["push_lag_s"])  # fmt: skip


def _notify(channels: dict[str, dict[str, Any]]) -> Iterator[Metric]:
    yield from _labelled("gatehouse_notify_up", "1 while the channel off the box takes news",
                         "channel", {k: c["ok"] for k, c in channels.items()})  # fmt: skip
    yield from _labelled("gatehouse_notify_queued", "Messages waiting for the channel",
                         "channel", {k: c["queued"] for k, c in channels.items()})  # fmt: skip


def _counts(counts: dict[str, int]) -> Iterator[Metric]:
    """The service's counters by kind: a decision ("grant:ok", "deny:revoked"), a refused
    input ("refused:swipe:…"), or anything else it counts."""
    decisions = CounterMetricFamily("gatehouse_decisions", "Gate decisions by outcome and "
                                    "reason", labels=["decision", "reason"])  # fmt: skip
    refused = CounterMetricFamily(
        "gatehouse_refused_inputs", "Inputs refused (a bad frame, a malformed payload, a QR "
        "rule…)", labels=["input"],
    )  # fmt: skip
    other = CounterMetricFamily("gatehouse_events", "Everything else the service counts",
                                labels=["what"])  # fmt: skip
    for key, n in sorted(counts.items()):
        verdict, _, reason = key.partition(":")
        if verdict in ("grant", "deny") and reason:
            decisions.add_metric([verdict, reason], n)
        elif verdict == "refused" and reason:
            refused.add_metric([reason], n)
        else:
            other.add_metric([key], n)
    yield decisions
    yield refused
    yield other


def _alarms(svc: Service) -> Iterator[Metric]:
    g = GaugeMetricFamily("gatehouse_alarms", "Alarms not closed, by state and priority",
                          labels=["state", "priority"])  # fmt: skip
    rows = svc.read(lambda c: c.execute(
        "SELECT state, priority, count(*) FROM alarms WHERE state != 'closed' "
        "GROUP BY state, priority").fetchall())  # fmt: skip
    for state, priority, n in rows:
        g.add_metric([state, f"P{priority}"], n)
    yield g


# -- the office ------------------------------------------------------------------------------

# a long poll waits up to 25 s: the buckets reach past it
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OfficeMetrics:
    """An office process's registry: each request by route and status, its duration, and a
    collector for readiness and the long polls (read at scrape time)."""

    def __init__(self, readiness: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = PromCounter(
            "gatehouse_office_requests", "Requests answered, by route and status",
            ["route", "status"], registry=self.registry,
        )  # fmt: skip
        self.seconds = Histogram(
            "gatehouse_office_request_seconds", "Requests, arrival to answer (a long poll "
            "waits)", ["route"], buckets=REQUEST_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.registry.register(_OfficeCollector(readiness))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _OfficeCollector(Collector):
    def __init__(self, readiness: Callable[[], tuple[bool, dict[str, Any]]]) -> None:
        self.readiness = readiness

    def collect(self) -> Iterator[Metric]:
        ok, report = self.readiness()
        yield _gauge("gatehouse_office_ready", "1 while the database answers and the change "
                     "listener listens", ok)  # fmt: skip
        yield _gauge("gatehouse_office_database_ok", "1 while the database answers",
                     report["database"]["ok"])  # fmt: skip
        yield _gauge("gatehouse_office_listener_listening", "1 while the change listener "
                     "listens (gates' polls wake at each commit)",
                     report["listener"]["listening"])  # fmt: skip
        yield _gauge("gatehouse_office_polls_waiting", "Gates' long polls waiting now",
                     report["polls_waiting"])  # fmt: skip
        yield from _counts(report["counts"])
