"""Bad configs and bad command lines end in one line naming the problem and exit 2, never a
traceback (issue 11, finding 16: 20 of 57 bad configs and 6 of 33 bad calls did).

The corpus is data: ``bad_configs/*.toml`` (each file's first line says what the error must
name; an office config is named ``office-*`` and run with ``office key`` unless its second
line gives another ``# command:``) and ``bad_cli.txt``. Each entry runs through
``edge.cli.main`` in this process, which is the executable's whole body, so the corpus
costs milliseconds an entry; a sample of each also runs through the real ``gatehouse``
executable to prove that what it prints and how it exits are the same there.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
import traceback
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.cli import main
from tests.helpers import GATEHOUSE, cli, free_port, write_config

HERE = Path(__file__).parent
CONFIGS = sorted((HERE / "bad_configs").glob("*.toml"))
CHECK = ["check", "01026F6C3A"]
OFFICE_CHECK = ["office", "key"]  # reads the office config and its data_dir; no database


@dataclass(frozen=True)
class Call:
    expect: str
    argv: tuple[str, ...]
    stdin: str = ""


def _calls() -> list[Call]:
    calls = []
    for line in (HERE / "bad_cli.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        expect, args, *stdin = (part.strip() for part in line.split(" :: "))
        calls.append(Call(expect, tuple(shlex.split(args)), stdin[0] if stdin else ""))
    return calls


CALLS = _calls()


@dataclass(frozen=True)
class Outcome:
    code: object
    out: str
    err: str

    def assert_one_line_naming(self, expect: str) -> None:
        """Exit 2, one line on stderr that names the problem, no traceback anywhere."""
        assert "Traceback" not in self.out + self.err, self.err
        lines = self.err.splitlines()
        assert self.code == 2, f"exit {self.code!r}: {self.err!r}"
        assert len(lines) == 1, f"{len(lines)} lines on stderr: {self.err!r}"
        assert lines[0].startswith("gatehouse: "), lines[0]
        assert expect in lines[0], f"{expect!r} not named in {lines[0]!r}"


def run_main(argv: list[str], stdin: str = "") -> Outcome:
    """``gatehouse ARGV`` in this process: what it prints, and its exit status (SystemExit's
    code, or main's answer); an exception that escapes main is printed as the executable
    would print it, a traceback, so the assertion sees it."""
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)  # `user passwd` reads its first line; not a terminal
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code: object = main(argv)
            except SystemExit as e:
                code = e.code
            except Exception:
                traceback.print_exc()
                code = None
    finally:
        sys.stdin = saved
    return Outcome(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The placeholders' values: real files and directories of each awkward kind."""
    tmp = tmp_path_factory.mktemp("corpus")
    (tmp / "a-directory").mkdir()
    (tmp / "text.txt").write_text("hello\n")
    (tmp / "bytes.bin").write_bytes(b"\xff\xfe\x00\x80 not UTF-8\n")
    (tmp / "empty").write_bytes(b"")
    header = "kind,card,name,unit,valid_from,valid_until\n"
    rows = {
        "far.csv": "resident,01026F6C3A,张三,,,9999-12-31T23:59:59-01:00\n",
        "year1.csv": "resident,01026F6C3A,张三,,0001-01-01T00:00:00+14:00,\n",
        "huge.csv": f"resident,01026F6C3A,张三,,,{'9' * 5000}\n",
    }
    for name, row in rows.items():
        (tmp / name).write_text(header + row, encoding="utf-8")
    (tmp / "node").mkdir()
    config = write_config(tmp / "node" / "gatehouse.toml", broker_port=None, readers=[],
                          api_port=free_port())  # fmt: skip
    # a port nobody listens on: the database is down, and says so at once
    office_down = tmp / "office-down.toml"
    office_down.write_text(
        f'[office]\ndatabase_url = "postgresql://gatehouse@127.0.0.1:{free_port()}/gatehouse"\n'
        f'data_dir = "{tmp / "office-data"}"\n'
    )
    yield {
        "@CONFIG@": str(config),
        "@OFFICE_DOWN@": str(office_down),
        "@DIR@": str(tmp / "a-directory"),
        "@TEXTFILE@": str(tmp / "text.txt"),
        "@BINFILE@": str(tmp / "bytes.bin"),
        "@EMPTYFILE@": str(tmp / "empty"),
        "@CSV_FAR@": str(tmp / "far.csv"),
        "@CSV_YEAR1@": str(tmp / "year1.csv"),
        "@CSV_HUGE@": str(tmp / "huge.csv"),
        "@TMP@": str(tmp),
    }


def _fill(text: str, scratch: dict[str, str]) -> str:
    for key, value in scratch.items():
        text = text.replace(key, value)
    return text


def _config_case(source: Path, scratch: dict[str, str], into: Path) -> tuple[str, Path, list[str]]:
    """(what the error must name, the config with its placeholders filled, the command)."""
    data = source.read_bytes()
    first, second, *_ = [*data.split(b"\n", 2), b""]
    expect = first.decode("ascii").removeprefix("# expect: ")
    if second.startswith(b"# command: "):
        command = shlex.split(second.decode("ascii").removeprefix("# command: "))
    else:
        command = OFFICE_CHECK if source.name.startswith("office-") else CHECK
    # bytes, not text: a file that is not UTF-8 must stay exactly as it is
    for key, value in scratch.items():
        data = data.replace(key.encode(), value.encode())
    target = into / source.name
    target.write_bytes(data)
    return expect, target, command


def test_the_corpus_is_as_large_as_the_finding_asks() -> None:
    assert len(CONFIGS) >= 60, len(CONFIGS)
    assert sum(c.name.startswith("office-") for c in CONFIGS) >= 10
    assert len(CALLS) >= 35, len(CALLS)


@pytest.mark.parametrize("source", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_a_bad_config_is_one_line_and_exit_2(
    source: Path, scratch: dict[str, str], tmp_path: Path
) -> None:
    expect, config, command = _config_case(source, scratch, tmp_path)
    run_main(["--config", str(config), *command]).assert_one_line_naming(expect)


@pytest.mark.parametrize("call", CALLS, ids=[" ".join(c.argv[2:])[:60] for c in CALLS])
def test_a_bad_command_line_is_one_line_and_exit_2(call: Call, scratch: dict[str, str]) -> None:
    argv = [_fill(a, scratch) for a in call.argv]
    run_main(argv, call.stdin).assert_one_line_naming(call.expect)


# a few of each through the real executable: its entry point, its stderr, its exit status
THROUGH_THE_EXECUTABLE = [
    "not-utf8", "toml-syntax-error", "api-listen-superscript", "rules-array", "gates-integers",
    "mqtt-password-file-not-utf8", "data-dir-is-a-file", "office-listen-superscript",
]  # fmt: skip
CALLS_THROUGH_THE_EXECUTABLE = [
    ("--config", "@CONFIG@", "check", "01026F6C3A", "--at", "9999-12-31T23:59:59-01:00"),
    ("--config", "@CONFIG@", "pass", "list", "--limit", "99999999999999999999"),
    ("--config", "@CONFIG@", "report", "slips", "--month", "9999-12"),
    ("--config", "@CONFIG@", "simulate", "swipe", "--port", "@TEXTFILE@", "--card", "01026F6C3A"),
    ("--config", "@CONFIG@", "backup", "@TMP@/no-such-dir/edge.db"),
    ("--config", "@CONFIG@", "--bogus", "check", "01026F6C3A"),
]


@pytest.mark.parametrize("name", THROUGH_THE_EXECUTABLE)
def test_a_bad_config_through_the_executable(
    name: str, scratch: dict[str, str], tmp_path: Path
) -> None:
    expect, config, command = _config_case(HERE / "bad_configs" / f"{name}.toml", scratch, tmp_path)
    proc = cli(config, *command, check=False)
    Outcome(proc.returncode, proc.stdout, proc.stderr).assert_one_line_naming(expect)


@pytest.mark.parametrize("argv", CALLS_THROUGH_THE_EXECUTABLE, ids=lambda a: " ".join(a[2:]))
def test_a_bad_command_line_through_the_executable(
    argv: tuple[str, ...], scratch: dict[str, str]
) -> None:
    call = next(c for c in CALLS if c.argv == argv)
    proc = subprocess.run(
        [GATEHOUSE, *(_fill(a, scratch) for a in argv)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    Outcome(proc.returncode, proc.stdout, proc.stderr).assert_one_line_naming(call.expect)
