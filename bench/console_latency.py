"""Console latency: how long a swipe takes to be painted on the guard's screen, and how long
the guard's screen takes to come up.

A node with 200 imported resident passes reads an RDM6300 reader on a pty. A guard logs in
(``/login``, a user made with ``gatehouse user add`` and ``user passwd``) in headless
Chromium (Debian's, driven by Playwright) and the guard's screen ``/guard`` stays open.

1. Swipe -> painted. 100 distinct cards with passes (grants), ~300 ms apart, after 5
   uncounted warm-up swipes. Each is timed from writing the last byte of its 14-byte frame
   to the pty (``time.time()`` right after the write) until the decision is painted in the
   page: a probe injected before the page's own script (``add_init_script``; the context
   is made with ``bypass_csp=True`` as the page allows only its own scripts) watches the
   DOM with a MutationObserver and, for each ``li`` added to ``#recent``, takes
   ``performance.timeOrigin + performance.now()`` in the next ``requestAnimationFrame``
   callback (the frame that shows it), keyed by its ``data-event-id``. Both are the
   machine's wall clock in ms; the script checks that the page's clock agrees with
   Python's and prints the offset. The same swipes are also timed to their decision at a
   QoS 1 subscriber on ``gatehouse/<node>/gate/+/decision`` (matched by the masked card;
   the decision's ``event_id`` then names the page's ``li``). Headless Chromium begins a
   frame as soon as one is asked for after idleness (a continuous rAF loop runs at 60 Hz),
   so "painted" is the next frame's start, with no wait for a display's vsync (on a real
   60 Hz screen up to ~17 ms more, for the bare push as much as for the guard's screen).
2. Baseline, same run, same machine and browser: (a) that MQTT decision (pty -> paho
   subscriber), the part of the path the screen cannot be faster than; (b) a bare server
   push: a tiny Starlette app on uvicorn (as the node's API) in a thread, serving a tiny
   page and its script that open an EventSource and prepend an ``li`` per event. The bench
   hands it one small event (``time.time()`` just before) and the same probe times the
   paint; 100 pushes ~100 ms apart after 5 warm-up ones. It prints p50/p95/p99 of the
   three and RATIO = painted p95 / (MQTT decision p95 + bare push p95); target <= 1.5.
3. First load of the guard's screen: after login, 5 loads of ``/guard`` (after one
   uncounted), each in a fresh browser context given the session cookie (Playwright's
   ``storage_state``): an empty HTTP cache and new connections, as a guard-room PC just
   switched on. It times navigation start (the page's ``timeOrigin``) to the frame after
   ``body[data-live='1']`` appears (the stream's first ``state`` arrived and is shown), and
   sums the response body sizes (``request.sizes()``, i.e. bytes on the wire) of the
   requests to the node until then, the never-ending ``/console/stream`` excluded.
   Targets: <= 1 s and <= 300 KB. Baseline: the same for the bare server's page (load to
   its stream's first event).

Run: .venv/bin/python bench/console_latency.py   (about a minute; needs mosquitto and
Debian's Chromium at /usr/bin/chromium)
"""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from common import (
    GATEHOUSE,
    NODE_ID,
    Stats,
    Subscriber,
    free_port,
    import_passes,
    main_guard,
    make_cards,
    wait_for,
    workspace,
    write_passes_csv,
)
from playwright.sync_api import (
    Browser,
    Page,
    Response,
    StorageState,
    ViewportSize,
    sync_playwright,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from drivers.rdm6300 import Rdm6300
from edge.cards import mask_key, parse_card
from tests.helpers import Pty, cli

CHROMIUM = "/usr/bin/chromium"
PASSES = 200
SWIPES = 100
SPACING_S = 0.3  # a swipe every 300 ms: each is painted well before the next
PUSHES = 100
PUSH_SPACING_S = 0.1
WARMUP = 5  # first swipes and pushes, not counted: connections, caches and JIT warm up
LOADS = 5  # first loads counted, after one uncounted of each page
TIMEOUT_S = 10.0
GUARD, PASSWORD = "bench-guard", "bench-night-shift"
VIEWPORT: ViewportSize = {"width": 1366, "height": 768}  # a guard-room PC's screen
LOAD_TARGET_MS, BYTES_TARGET = 1000.0, 300 * 1024

# Injected before any of the page's own scripts run, so it sees every change (the guard's
# script can get its first state before DOMContentLoaded). window.__painted: event id ->
# wall-clock ms of the first frame after its li was added to #recent; window.__live: ms
# from navigation start to the first frame after body[data-live='1'] appeared.
PROBE = """
(() => {
  const painted = (window.__painted = {});
  window.__live = null;
  let live = false;
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "attributes") {
        if (!live && document.body && document.body.dataset.live === "1") {
          live = true;
          requestAnimationFrame(() => { window.__live = performance.now(); });
        }
        continue;
      }
      for (const n of r.addedNodes) {
        if (!(n instanceof HTMLLIElement) || !n.parentElement || n.parentElement.id !== "recent")
          continue;
        const id = n.dataset.eventId;
        if (!id || id in painted) continue;
        painted[id] = null;
        requestAnimationFrame(() => { painted[id] = performance.timeOrigin + performance.now(); });
      }
    }
  }).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-live"],
  });
})();
"""

# The bare server's page: what the guard's screen does to show a pushed record, and no more.
BARE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>bare push</title></head>
<body><ul id="recent"></ul><script src="/bare.js"></script></body></html>
"""
BARE_SCRIPT = """"use strict";
const source = new EventSource("/stream");
source.addEventListener("state", () => { document.body.dataset.live = "1"; });
source.addEventListener("push", (m) => {
  const li = document.createElement("li");
  li.dataset.eventId = JSON.parse(m.data).id;
  li.textContent = "pushed";
  document.getElementById("recent").prepend(li);
});
"""


class BarePush:
    """A minimal server push on the node's own stack (Starlette on uvicorn) in a thread:
    ``/`` a tiny page, ``/bare.js`` its script, ``/stream`` server-sent events that start
    with ``state`` (as the node's do) and then carry whatever :meth:`push` hands over."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._streams: set[asyncio.Queue[str | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        app = Starlette(
            routes=[
                Route("/", lambda _r: HTMLResponse(BARE_PAGE)),
                Route(
                    "/bare.js",
                    lambda _r: PlainTextResponse(BARE_SCRIPT, media_type="text/javascript"),
                ),
                Route("/stream", self._stream),
            ]
        )
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off",
            access_log=False, timeout_graceful_shutdown=2,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        # uvicorn installs no signal handlers off the main thread: main_guard keeps them
        self._thread = threading.Thread(target=self._server.run, name="bare-push", daemon=True)

    def start(self) -> BarePush:
        self._thread.start()
        wait_for(lambda: self._server.started, 10, "the bare push server")
        return self

    async def _stream(self, _request: Request) -> StreamingResponse:
        self._loop = asyncio.get_running_loop()
        q: asyncio.Queue[str | None] = asyncio.Queue()
        self._streams.add(q)

        async def events() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                yield "event: state\ndata: {}\n\n"
                while (data := await q.get()) is not None:
                    yield f"event: push\ndata: {data}\n\n"
            finally:
                self._streams.discard(q)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    def _fan_out(self, data: str | None) -> None:
        for q in self._streams:
            q.put_nowait(data)

    def push(self, event_id: str) -> None:
        """Any thread: send one small event to every open stream."""
        if self._loop is None:
            raise RuntimeError("no page has opened the bare stream")
        data = json.dumps({"id": event_id, "kind": "bench"})
        self._loop.call_soon_threadsafe(self._fan_out, data)

    def stop(self) -> None:
        if self._loop is not None:  # end the open streams, or shutdown waits for them
            self._loop.call_soon_threadsafe(self._fan_out, None)
        self._server.should_exit = True
        self._thread.join(10)


@dataclass(frozen=True)
class Swipe:
    card: str
    wall: float  # time.time() right after the frame's last byte was written
    sent: float  # perf_counter at the same moment
    decided: float  # perf_counter when the MQTT decision arrived
    event_id: str


def add_guard(config: Path) -> None:
    """A guard with a password, as an administrator makes one (tests/test_console.py)."""
    if cli(config, "user", "add", GUARD, "--role", "guard").returncode != 0:
        raise RuntimeError(f"gatehouse user add {GUARD} failed")
    proc = subprocess.run(
        [GATEHOUSE, "--config", str(config), "user", "passwd", GUARD],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"gatehouse user passwd failed: {proc.stderr}")


def painted_at(page: Page, ids: list[str]) -> dict[str, float]:
    """Wait until the page painted every one of ``ids``; their wall-clock paint times, s."""
    wanted = json.dumps(ids)
    page.wait_for_function(
        f"{wanted}.every((id) => typeof window.__painted[id] === 'number')",
        timeout=TIMEOUT_S * 1000,
    )
    got: dict[str, float] = page.evaluate(f"Object.fromEntries({wanted}.map((id) => "
                                          "[id, window.__painted[id]]))")  # fmt: skip
    return {k: v / 1000 for k, v in got.items()}


def clock_offset_ms(page: Page) -> tuple[float, float]:
    """(page clock - Python clock, +- bound) in ms, from the tightest of 20 round trips:
    the paint times are the page's wall clock, the swipes' Python's."""
    best: tuple[float, float] | None = None
    for _ in range(20):
        before = time.time()
        page_ms: float = page.evaluate("performance.timeOrigin + performance.now()")
        after = time.time()
        offset, bound = page_ms - (before + after) * 500, (after - before) * 500
        if best is None or bound < best[1]:
            best = (offset, bound)
    assert best is not None
    return best


def new_page(browser: Browser, storage_state: StorageState | None = None) -> Page:
    """A page with the probe in a context of its own (closed with the page's context)."""
    context = browser.new_context(
        bypass_csp=True,
        viewport=VIEWPORT,
        storage_state=storage_state,
    )
    context.add_init_script(PROBE)
    return context.new_page()


def login(browser: Browser, base: str) -> Page:
    page = new_page(browser)
    page.goto(base + "/login")
    page.fill("input[name=username]", GUARD)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/guard")
    page.wait_for_selector("body[data-live='1']", state="attached")  # the stream sent its state
    return page


def swipe_all(pty: Pty, sub: Subscriber, cards: list[str]) -> list[Swipe]:
    """Swipe each card, wait for its MQTT decision, keep the cadence. The page is not
    touched while the swipes run (its paint times are read afterwards): each Playwright
    call would be work in the browser beside the one being timed."""
    out = []
    for card in cards:
        frame = Rdm6300.encode(parse_card(card))
        pty.write(frame[:-1])
        pty.write(frame[-1:])  # the last byte: the reader has the whole frame now
        wall, sent = time.time(), time.perf_counter()
        try:
            decided, _topic, data = sub.next(TIMEOUT_S)
        except queue.Empty:
            raise RuntimeError(f"no decision for card {card} within {TIMEOUT_S} s") from None
        decision = json.loads(data)
        if decision["card"] != mask_key(parse_card(card).key):
            raise RuntimeError(f"decision for {decision['card']}, expected card {card}")
        if decision["decision"] != "grant":
            raise RuntimeError(f"card {card}: {decision['decision']} ({decision['reason']})")
        out.append(Swipe(card, wall, sent, decided, decision["event_id"]))
        time.sleep(max(0.0, SPACING_S - (time.perf_counter() - sent)))
    return out


def bare_pushes(page: Page, bare: BarePush) -> list[float]:
    """Push WARMUP + PUSHES small events to the bare page; each one's push -> paint, s."""
    sent: dict[str, float] = {}
    for i in range(WARMUP + PUSHES):
        event_id = f"bare-{i:04d}"
        sent[event_id] = time.time()
        bare.push(event_id)
        time.sleep(PUSH_SPACING_S)
    painted = painted_at(page, list(sent))
    return [painted[k] - sent[k] for k in list(sent)[WARMUP:]]


@dataclass(frozen=True)
class Load:
    live_s: float  # navigation start -> first frame with body[data-live='1']
    body_bytes: int  # response bodies from the server, the stream excluded
    requests: int


def first_load(
    browser: Browser, url: str, stream: str, storage_state: StorageState | None = None
) -> Load:
    """Open ``url`` in a fresh context (empty cache) and time it to its live state."""
    page = new_page(browser, storage_state)
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
    responses: list[Response] = []
    page.on("response", lambda r: responses.append(r))  # a builtin cannot be a handler
    try:
        page.goto(url)
        page.wait_for_function("window.__live !== null", timeout=TIMEOUT_S * 1000)
        live_ms: float = page.evaluate("window.__live")
        # only what the page needed to come up: later requests (if any) are not its load
        mine = [
            r for r in list(responses)
            if r.url.startswith(origin) and urlsplit(r.url).path != stream
        ]  # fmt: skip
        body = sum(r.request.sizes()["responseBodySize"] for r in mine)
        return Load(live_ms / 1000, body, len(mine))
    finally:
        page.context.close()


def loads(
    browser: Browser, url: str, stream: str, storage_state: StorageState | None = None
) -> list[Load]:
    first_load(browser, url, stream, storage_state)  # uncounted: the first context's cost
    return [first_load(browser, url, stream, storage_state) for _ in range(LOADS)]


def load_line(label: str, got: list[Load]) -> str:
    s = Stats.of_seconds([g.live_s for g in got])
    kb = [g.body_bytes / 1024 for g in got]
    return (
        f"  {label:<34} n={s.n:<5} p50={s.p50:8.3f}  max={s.max:8.3f} ms; "
        f"max {max(kb):6.1f} KB body in {max(g.requests for g in got)} responses"
    )


@dataclass(frozen=True)
class Figures:
    """What one run measured, in seconds (but the clock check, in ms)."""

    painted: list[float]  # swipe -> painted on the guard's screen
    decision: list[float]  # swipe -> MQTT decision, the same swipes
    after_decision: list[float]  # MQTT decision -> painted: the screen's own share
    pushed: list[float]  # bare push -> painted
    guard_loads: list[Load]
    bare_loads: list[Load]
    clock_offset_ms: tuple[float, float]  # page clock - Python clock, +- bound
    chromium: str


def measure(base: str, pty: Pty, sub: Subscriber, bare: BarePush, cards: list[str]) -> Figures:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = login(browser, base)
            offset = clock_offset_ms(page)
            swiped = swipe_all(pty, sub, cards)
            painted = painted_at(page, [s.event_id for s in swiped])
            storage_state = page.context.storage_state()
            page.context.close()  # one page at a time: the screen's stream ends here

            bare_page = new_page(browser)
            bare_page.goto(bare.url + "/")
            bare_page.wait_for_selector("body[data-live='1']", state="attached")
            pushed = bare_pushes(bare_page, bare)
            bare_page.context.close()

            guard_loads = loads(browser, base + "/guard", "/console/stream", storage_state)
            bare_loads = loads(browser, bare.url + "/", "/stream")
            version = browser.version
        finally:
            browser.close()
    counted = swiped[WARMUP:]
    return Figures(
        painted=[painted[s.event_id] - s.wall for s in counted],
        decision=[s.decided - s.sent for s in counted],
        # the MQTT arrival on the wall clock: the swipe's wall time plus its MQTT latency
        after_decision=[painted[s.event_id] - (s.wall + s.decided - s.sent) for s in counted],
        pushed=pushed,
        guard_loads=guard_loads,
        bare_loads=bare_loads,
        clock_offset_ms=offset,
        chromium=version,
    )


def main() -> None:
    with workspace("gatehouse-bench-console-") as ws:
        pty = Pty()
        ws.callback(pty.close)
        config, api = ws.configure(
            [{"id": "main-in", "gate": "main", "port": pty.path, "protocol": "rdm6300"}]
        )
        cards = make_cards(PASSES, salt=5)
        imported, took = import_passes(config, write_passes_csv(ws.dir / "passes.csv", cards))
        add_guard(config)
        sub = Subscriber(ws.broker.port, f"gatehouse/{NODE_ID}/gate/+/decision", "decisions")
        ws.callback(sub.close)
        node = ws.node(api)
        node.start(wait_ready=True)
        wait_for(lambda: node.reader("main-in").get("state") == "open", 20, "the pty reader")
        bare = BarePush().start()
        ws.callback(bare.stop)
        print(
            f"console_latency: {imported} passes (imported in {took:.1f} s), {SWIPES} swipes "
            f"{SPACING_S * 1000:.0f} ms apart, {PUSHES} bare pushes "
            f"{PUSH_SPACING_S * 1000:.0f} ms apart ({WARMUP} warm-up each)"
        )
        got = measure(f"http://127.0.0.1:{api}", pty, sub, bare, cards[: WARMUP + SWIPES])

        painted = Stats.of_seconds(got.painted)
        decision = Stats.of_seconds(got.decision)
        pushed = Stats.of_seconds(got.pushed)
        offset_ms, bound_ms = got.clock_offset_ms
        print(f"  headless Chromium {got.chromium}; page clock - Python clock: "
              f"{offset_ms:+.2f} ms (+- {bound_ms:.2f})")  # fmt: skip
        print("gatehouse (the same swipes):")
        print(painted.row("swipe -> painted on guard screen"))
        print(decision.row("swipe -> MQTT decision"))
        print(Stats.of_seconds(got.after_decision).row("MQTT decision -> painted"))
        print("baseline (same run, same machine, broker and browser):")
        print(decision.row("(a) MQTT decision (above)"))
        print(pushed.row("(b) bare push -> painted (uvicorn)"))
        base = decision.p95 + pushed.p95
        print(f"  baseline p95 sum (a+b): {base:.3f} ms")
        print("first load (fresh context per load, session cookie copied, empty cache):")
        print(load_line("guard screen: nav start -> live", got.guard_loads))
        print(load_line("bare page: nav start -> live", got.bare_loads))
        worst_ms = max(g.live_s for g in got.guard_loads) * 1000
        worst_kb = max(g.body_bytes for g in got.guard_loads) / 1024
        print(f"  guard screen worst: {worst_ms:.0f} ms (target <= {LOAD_TARGET_MS:.0f}), "
              f"{worst_kb:.1f} KB (target <= {BYTES_TARGET // 1024})")  # fmt: skip
        print(f"RATIO painted p95 / (MQTT decision p95 + bare push p95) = {painted.p95:.3f} / "
              f"({decision.p95:.3f} + {pushed.p95:.3f}) = {painted.p95 / base:.2f} "
              "(target <= 1.5)")  # fmt: skip


if __name__ == "__main__":
    main_guard(main)
