"""Where users wait at the edges of a run: launch to first request, last answer to exit, and wall, for
``treesynth run`` as a real process against the project's fake OpenAI-compatible server
(tests/stub_server.py) answering every call after 200 ms.

    python benchmarks/bench_launch.py                     # 1k, 10k, 100k rows
    python benchmarks/bench_launch.py --sizes 1000 --runs 3

Shape: depth 3, the stub's 3 values + 1 supplement per node (64 leaves), 10 pivots, 10 samples per
call, concurrency 64, ``openai/stub`` on the native http transport. Targets (project issue): first
request within 1 s of launch, exit within 0.5 s of the last answer at 1k rows. Results: a table and
benchmarks/out/launch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from tests.stub_server import StubOpenAI  # noqa: E402


def one(size: int, latency: float) -> dict:
    with StubOpenAI(latency=latency) as stub, tempfile.TemporaryDirectory() as tmp:
        cmd = [str(Path(sys.executable).with_name("treesynth")), "run", "math word problems", "--no-ui", "--model", "openai/stub", "--api-base", stub.url,
               "--size", str(size), "--depth", "3", "--pivots", "10", "--samples-per-call", "10", "--concurrency", "64",
               "--fields", "question,answer", "--out", str(Path(tmp) / "run")]
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        t0 = time.time()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        t1 = time.time()
        if r.returncode != 0:
            raise SystemExit(f"run failed ({r.returncode}): {r.stderr[-1500:]}")
        rows = sum(1 for _ in open(Path(tmp) / "run" / "dataset.jsonl"))
        assert rows == size, rows
        return {"size": size, "wall_s": t1 - t0, "first_request_s": stub.first_request_at - t0, "exit_after_last_s": t1 - stub.last_answer_at,
                "requests": stub.requests}


def _cell(rs: list[dict], k: str) -> str:
    v = [r[k] for r in rs]
    return f"{statistics.median(v):.2f}" + (f" ({min(v):.2f}-{max(v):.2f})" if len(v) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    print(f"stub latency {args.latency * 1000:.0f} ms; median of {args.runs} runs (min-max)")
    print("| rows | requests | launch → first request s | last answer → exit s | wall s |")
    print("|---:|---:|---:|---:|---:|")
    out = []
    for size in args.sizes:
        rs = [one(size, args.latency) for _ in range(args.runs if size <= 10_000 else 1)]
        out += rs

        print(f"| {size:,} | {rs[0]['requests']:,} | {_cell(rs, 'first_request_s')} | {_cell(rs, 'exit_after_last_s')} | {_cell(rs, 'wall_s')} |", flush=True)
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "launch.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
