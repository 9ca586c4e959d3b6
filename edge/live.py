"""The console's server push: what the bus publishes, handed to each open page.

The bus calls ``LiveFeed.on_record`` on the writer's thread once a record is committed;
each page's stream is an asyncio queue on the API's event loop. A page that falls behind
(its queue full) is not waited for: it is told to fetch the whole state again, which is
what a page that reconnects does anyway. Nothing here needs a broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any

QUEUE = 256  # records a page may be behind before it is told to start over
Item = tuple[str, dict[str, Any]] | None  # None: start over (or the service is stopping)


class Listener:
    def __init__(self, loop: asyncio.AbstractEventLoop, wants: Callable[[str], bool]) -> None:
        self.loop = loop
        self.wants = wants
        self.queue: asyncio.Queue[Item] = asyncio.Queue(QUEUE)
        self.behind = False  # set on the loop's thread only
        self.closed = False

    def offer(self, item: Item) -> None:
        """Any thread: hand ``item`` to the page's loop."""
        with contextlib.suppress(RuntimeError):  # the loop has closed (service stopping)
            self.loop.call_soon_threadsafe(self._put, item)

    def _put(self, item: Item) -> None:
        if item is None:
            self.closed = True
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.behind = True


class LiveFeed:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.counts = {"pages": 0, "fell_behind": 0}

    def on_record(self, topic: str, payload: dict[str, Any]) -> None:
        """A bus watcher: called for every record once it is committed."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            if listener.wants(topic):
                listener.offer((topic, payload))

    def listen(self, loop: asyncio.AbstractEventLoop, wants: Callable[[str], bool]) -> Listener:
        listener = Listener(loop, wants)
        with self._lock:
            self._listeners.append(listener)
            self.counts["pages"] = len(self._listeners)
        return listener

    def leave(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
            self.counts["pages"] = len(self._listeners)
            if listener.behind:
                self.counts["fell_behind"] += 1

    def close(self) -> None:
        """Every open stream ends (the service is stopping; pages reconnect to the next)."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener.offer(None)
