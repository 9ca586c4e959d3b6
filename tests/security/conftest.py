"""What the office's security tests share: a running office with a clerk's token."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Office


@pytest.fixture
def clerk_office(tmp_path: Path, pg_url: str) -> Iterator[tuple[Office, str]]:
    office = Office(tmp_path, pg_url)
    clerk = office.token("user", "add", "客服小王", "--role", "clerk")
    office.start()
    yield office, clerk
    try:
        office.stop()
    except subprocess.TimeoutExpired:  # a poll still waiting (a failed test): do not leak it
        office.stop(signal.SIGKILL)
