"""How long a command takes from the IT person's Enter to its answer (issue 13: <= 0.3 s for
`gatehouse pass list` on this machine).

Each command runs 15 times as a new process against a node's config and a database of 1,000
passes already at the newest schema (as on an installed machine); the median counts.
Baseline, same run: `python -c pass` with the same interpreter, the cost of any Python
program starting. RATIO: command / baseline.

Run: .venv/bin/python bench/cli_startup.py   (about 20 s; no broker, no network)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import GATEHOUSE, free_port, write_config

RUNS = 15
TARGET_S = 0.3


def timed(cmd: list[str]) -> float:
    """Median wall time of ``cmd`` run RUNS times (after one warm-up: the page cache)."""
    subprocess.run(cmd, check=True, capture_output=True)
    took = []
    for _ in range(RUNS):
        began = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        took.append(time.perf_counter() - began)
    return statistics.median(took)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "g.toml", broker_port=None, readers=[],
                              api_port=free_port())  # fmt: skip
        csv = Path(tmp) / "p.csv"
        csv.write_text("kind,card,name,unit,valid_from,valid_until\n" + "".join(
            f"resident,{0x1000000 + i:010X},住户{i},1-{i % 30}-{i % 900},," + "\n"
            for i in range(1000)), encoding="utf-8")  # fmt: skip
        cli = [GATEHOUSE, "--config", str(config)]
        subprocess.run([*cli, "pass", "import", str(csv)], check=True, capture_output=True)
        base = timed([sys.executable, "-c", "pass"])
        print(f"cli_startup: median of {RUNS} runs each, a node with 1,000 passes")
        print(f"  python -c pass (baseline)          {base * 1000:7.1f} ms")
        for name, args in (("pass list", ["pass", "list"]),
                           ("pass list --json", ["pass", "list", "--json"]),
                           ("check CARD", ["check", "0001000001"]),
                           ("user list", ["user", "list"])):  # fmt: skip
            took = timed([*cli, *args])
            verdict = ""
            if name == "pass list":
                verdict = f"   target <= {TARGET_S * 1000:.0f} ms: " + (
                    "meets target" if took <= TARGET_S else "MISSES target"
                )
            print(f"  gatehouse {name:<24} {took * 1000:7.1f} ms   RATIO {took / base:5.1f}"
                  f"{verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
