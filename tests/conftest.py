from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from edge import db
from edge.writer import Writer
from tests.helpers import Broker, Listener, Pty

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def listener(broker: Broker) -> Iterator[Listener]:
    sub = Listener(broker.port)
    yield sub
    sub.close()


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty()
    yield p
    p.close()


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A scratch database of this test's own on the machine's PostgreSQL server."""
    name = f"gh_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(dbname="postgres")
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql:///{name}"
    admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """A migrated node database of this test's own."""
    p = tmp_path / "e.db"
    db.migrate(p)
    return p


@pytest.fixture
def writer(path: Path) -> Iterator[Writer]:
    """The one writer, running, on ``path``."""
    w = Writer(db.connect(path))
    w.start()
    yield w
    w.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright (make test installs it where missing)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()
