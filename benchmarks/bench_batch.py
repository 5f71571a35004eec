"""``treesynth run --batch`` against the fake OpenAI batch server (tests/batch_server.py, which the
official SDK accepts): a 10k-row run to exact size, and the same run killed (SIGKILL) while batches are
pending and resumed.

Reports wall time, batches, requests per batch, status polls, interactive (tree) calls, the cost at
batch prices against the same calls at interactive prices, and for the killed run the requests the
provider was given twice (must be 0).

    python benchmarks/bench_batch.py [--size 10000] [--linger 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.batch_server import FakeBatchServer  # noqa: E402
from tests.test_batch_run import stub_answer  # noqa: E402


def _cmd(server: FakeBatchServer, out: Path, size: int, linger: float) -> list[str]:
    return [sys.executable, "-m", "treesynth.cli", "run", "math word problems", "--fields", "question,answer",
            "--model", "openai/gpt-4o-mini", "--api-base", server.base_url, "--batch", "--batch-linger", str(linger),
            "--depth", "3", "--pivots", "6", "--samples-per-call", "5", "--size", str(size), "--no-ui", "--out", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": "sk-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def _figures(server: FakeBatchServer, out: Path, wall: float) -> dict:
    rows = sum(1 for _ in open(out / "dataset.jsonl"))
    sizes = [b["request_counts"]["total"] for b in server.batches.values()]
    polls = sum(v for k, v in server.calls.items() if k.startswith("GET /v1/batches/"))
    state = json.loads((out / "state.json").read_text())
    batched = sum(server.submitted.values())
    interactive_price = server.interactive * (10 * 0.15e-6 + 5 * 0.6e-6) + batched * (10 * 0.15e-6 + 5 * 0.6e-6)
    return {
        "rows": rows, "wall_s": round(wall, 1), "batches": len(sizes), "requests_batched": batched,
        "requests_per_batch": {"min": min(sizes), "max": max(sizes), "mean": round(batched / len(sizes), 1)} if sizes else None,
        "status_polls": polls, "interactive_calls": server.interactive,
        "sent_twice": sum(1 for v in server.submitted.values() if v > 1),
        "cost_usd": round(state["usage"]["cost"], 6), "same_calls_interactive_usd": round(interactive_price, 6),
    }


def plain(size: int, linger: float) -> dict:
    with FakeBatchServer(stub_answer, api_key="sk-bench") as server, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        r = subprocess.run(_cmd(server, out, size, linger), capture_output=True, text=True, env=_env(), timeout=3600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(r.stderr[-2000:])
        return _figures(server, out, wall)


def killed(size: int, linger: float) -> dict:
    with FakeBatchServer(stub_answer, api_key="sk-bench") as server, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        server.hold.clear()
        t0 = time.perf_counter()
        proc = subprocess.Popen(_cmd(server, out, size, linger), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
        while not any(b["status"] == "in_progress" for b in list(server.batches.values())):
            if proc.poll() is not None or time.perf_counter() - t0 > 600:
                raise SystemExit("the run ended or stalled before a batch was pending")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        pending = sum(1 for b in server.batches.values() if b["status"] == "in_progress")
        given = sum(server.submitted.values())
        server.hold.set()
        r = subprocess.run([sys.executable, "-m", "treesynth.cli", "run", "--resume", str(out), "--no-ui"],
                           capture_output=True, text=True, env=_env(), timeout=3600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(r.stderr[-2000:])
        return {"pending_at_kill": pending, "requests_given_before_kill": given, **_figures(server, out, wall)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--linger", type=float, default=2.0)
    args = ap.parse_args()
    print(json.dumps({"run": plain(args.size, args.linger)}, indent=1), flush=True)
    print(json.dumps({"killed_and_resumed": killed(args.size, args.linger)}, indent=1), flush=True)


if __name__ == "__main__":
    main()
