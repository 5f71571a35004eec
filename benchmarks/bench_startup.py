"""Start-up of the ``treesynth`` command: how long ``--help`` and ``--version`` take as real processes.

The command imports its heavy libraries (litellm, torch, numpy, textual, plotly) only inside the
commands that need them, so answering ``--help`` costs an interpreter and argparse. The tests check
that no heavy module is imported (tests/test_cli.py); this measures the time, which a test on shared
CPUs cannot assert reliably.

    python benchmarks/bench_startup.py              # 10 runs of each
    python benchmarks/bench_startup.py --runs 30

Also measured, for scale: a bare interpreter (``python -c pass``). Target (project issue): ``--help``
well under a second. Results: a table and benchmarks/out/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
TARGET_S = 1.0

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "treesynth --help": [sys.executable, "-m", "treesynth.cli", "--help"],
    "treesynth --version": [sys.executable, "-m", "treesynth.cli", "--version"],
}


def wall_times(cmd: list[str], runs: int) -> list[float]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    subprocess.run(cmd, check=True, capture_output=True, env=env)  # warm the page cache and .pyc files
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    report = {}
    print(f"{'command':24s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    for name, cmd in COMMANDS.items():
        t = wall_times(cmd, args.runs)
        report[name] = {"runs": args.runs, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)}
        print(f"{name:24s} {statistics.median(t):9.3f} {min(t):7.3f} {max(t):7.3f}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "startup.json").write_text(json.dumps(report, indent=2))
    ok = report["treesynth --help"]["median_s"] < TARGET_S
    print(f"target --help < {TARGET_S:.0f} s: {'met' if ok else 'NOT met'}  (benchmarks/out/startup.json)")


if __name__ == "__main__":
    main()
