"""Protocol name → parser class: adding a reader model is one file and one line here."""

from drivers.line import Line
from drivers.protocol import Parser
from drivers.rdm6300 import Rdm6300
from drivers.stxbin import StxBin

PARSERS: dict[str, type[Parser]] = {p.name: p for p in (Rdm6300, Line, StxBin)}
