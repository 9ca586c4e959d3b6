from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.helpers import Broker, Listener, Pty


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
