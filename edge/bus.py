"""Where domain events go once they are on disk: any number of sinks (MQTT is one).

The core never imports paho: it publishes ``(topic, payload)`` to the bus, and each sink
(edge.mqtt.MqttLink, a test's list) carries it out. Topics are relative to the node's
``<prefix>/<node id>/``.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, Protocol


class Sink(Protocol):
    @property
    def connected(self) -> bool: ...

    def publish(
        self, topic: str, payload: dict[str, Any], retain: bool = False, qos: int = 1
    ) -> bool: ...

    def batch(self) -> contextlib.AbstractContextManager[None]: ...


class Bus:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.sinks: list[Sink] = []
        # in-process listeners to the records (the console's live pages); never commands
        self.watchers: list[Callable[[str, dict[str, Any]], None]] = []
        self.counts: Counter[str] = Counter()
        self.monotonic = monotonic

    def attach(self, sink: Sink) -> None:
        self.sinks.append(sink)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """What is published inside may be sent together when it ends (a sink's choice):
        the writer applies a committed batch's effects inside one."""
        with contextlib.ExitStack() as stack:
            for sink in self.sinks:
                stack.enter_context(sink.batch())
            yield

    def publish(self, topic: str, payload: dict[str, Any], retain: bool = False) -> None:
        """A record of what happened: a sink that is down may deliver it later."""
        for sink in self.sinks:
            sink.publish(topic, payload, retain)
        for watch in self.watchers:
            watch(topic, payload)

    def command(self, topic: str, payload: dict[str, Any], expires: float) -> bool:
        """An actuation (open the barrier): now or never, so never queued while a sink is down
        or stalled, never sent after ``expires`` (monotonic), and sent at QoS 0 so that no
        retransmission after a reconnect can deliver it late. The payload carries its own
        ``expires`` for the relay, which drops an ``open`` it receives after that time.

        A barrier that opened minutes late, when a backlog drained, would let in whoever
        stood there then (research pain point 7).
        """
        if self.monotonic() > expires:
            self.counts["commands_expired"] += 1
            return False
        sent = False
        for sink in self.sinks:
            if sink.connected:
                sent = sink.publish(topic, payload, qos=0) or sent
        self.counts["commands_sent" if sent else "commands_dropped"] += 1
        return sent
