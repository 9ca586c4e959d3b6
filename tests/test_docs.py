"""The README is the reference for reasons and protocols: it must not drift from the code."""

from pathlib import Path

from drivers.registry import PARSERS
from edge.decision import Reason

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_every_deny_reason_is_documented():
    for reason in Reason:
        assert f"| `{reason.value}` |" in README


def test_every_reader_protocol_is_documented():
    readers = (Path(__file__).parent.parent / "docs" / "readers.md").read_text()
    for name in PARSERS:
        assert f"## {name}" in readers and f"`{name}`" in README
