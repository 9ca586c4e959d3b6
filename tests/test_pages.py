"""Pages in a real browser (Debian's Chromium driven by Playwright), with the outside
world cut off as on an offline guard-room PC: every request not to the node fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers import Broker, node_for


def test_the_api_docs_render_offline(tmp_path: Path, broker: Broker, browser: Any):
    """/docs used to load Swagger UI from a CDN: blank on a PC without internet."""
    node = node_for(tmp_path, [], broker.port).start(wait_ready=True)
    try:
        base = f"http://127.0.0.1:{node.api_port}"
        page = browser.new_page()
        outside: list[str] = []

        def offline(route: Any) -> None:
            if route.request.url.startswith(base):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        page.route("**/*", offline)
        page.goto(f"{base}/docs")
        # Swagger UI built the page from /openapi.json: the operations are listed
        page.wait_for_selector(".opblock", timeout=15_000)
        assert page.locator(".opblock").count() > 20
        assert outside == []
    finally:
        node.stop()
