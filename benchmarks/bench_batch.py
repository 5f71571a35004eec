"""``treesynth run --batch`` against the fake batch servers (tests/batch_server.py for OpenAI's Files +
Batches, tests/anthropic_batch_server.py for Anthropic's Message Batches; the official SDKs accept
both): a 10k-row run to exact size, and the same run killed (SIGKILL) while batches are pending and
resumed.

Reports wall time, batches, requests per batch, status polls, interactive (tree) calls, the cost at
batch prices against the same calls at interactive prices, and for the killed run the requests the
provider was given twice (must be 0).

    python benchmarks/bench_batch.py [--provider openai|anthropic|both] [--size 10000] [--linger 2]
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.anthropic_batch_server import FakeAnthropicServer  # noqa: E402
from tests.batch_server import FakeBatchServer  # noqa: E402
from tests.test_anthropic_batch import stub_answer as anthropic_answer  # noqa: E402
from tests.test_batch_run import stub_answer as openai_answer  # noqa: E402


@dataclass(frozen=True)
class Provider:
    model: str
    env: dict[str, str]
    price_in: float  # interactive USD per token (every fake answer is 10 in, 5 out)
    price_out: float
    poll_route: str

    def server(self) -> Any:
        if self.model.startswith("anthropic/"):
            return FakeAnthropicServer(anthropic_answer, api_key="sk-bench")
        return FakeBatchServer(openai_answer, api_key="sk-bench")

    def base(self, server: Any) -> str:
        return server.root if self.model.startswith("anthropic/") else server.base_url

    def pending(self, server: Any) -> int:
        key, value = ("processing_status", "in_progress") if self.model.startswith("anthropic/") else ("status", "in_progress")
        return sum(1 for b in list(server.batches.values()) if b[key] == value)

    def size_of(self, b: dict) -> int:
        c = b["request_counts"]
        return int(c["total"]) if "total" in c else int(sum(c.values()))


PROVIDERS = {
    "openai": Provider("openai/gpt-4o-mini", {"OPENAI_API_KEY": "sk-bench"}, 0.15e-6, 0.6e-6, "GET /v1/batches/"),
    "anthropic": Provider("anthropic/claude-haiku-4-5", {"ANTHROPIC_API_KEY": "sk-bench"}, 1e-6, 5e-6, "GET /v1/messages/batches/{id}"),
}


def _cmd(p: Provider, server: Any, out: Path, size: int, linger: float) -> list[str]:
    return [sys.executable, "-m", "treesynth.cli", "run", "math word problems", "--fields", "question,answer",
            "--model", p.model, "--api-base", p.base(server), "--batch", "--batch-linger", str(linger),
            "--depth", "3", "--pivots", "6", "--samples-per-call", "5", "--size", str(size), "--no-ui", "--out", str(out)]


def _env(p: Provider) -> dict[str, str]:
    return {**os.environ, **p.env, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


def _figures(p: Provider, server: Any, out: Path, wall: float) -> dict:
    rows = sum(1 for _ in open(out / "dataset.jsonl"))
    sizes = [p.size_of(b) for b in server.batches.values()]
    polls = sum(v for k, v in server.calls.items() if k.startswith(p.poll_route) and not k.endswith(("/results", "/content", "/cancel")))
    state = json.loads((out / "state.json").read_text())
    batched = sum(server.submitted.values())
    one = 10 * p.price_in + 5 * p.price_out
    return {
        "model": p.model, "rows": rows, "wall_s": round(wall, 1), "batches": len(sizes), "requests_batched": batched,
        "requests_per_batch": {"min": min(sizes), "max": max(sizes), "mean": round(batched / len(sizes), 1)} if sizes else None,
        "status_polls": polls, "interactive_calls": server.interactive,
        "sent_twice": sum(1 for v in server.submitted.values() if v > 1),
        "cost_usd": round(state["usage"]["cost"], 6), "same_calls_interactive_usd": round((server.interactive + batched) * one, 6),
    }


def plain(p: Provider, size: int, linger: float) -> dict:
    with p.server() as server, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        r = subprocess.run(_cmd(p, server, out, size, linger), capture_output=True, text=True, env=_env(p), timeout=3600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(r.stderr[-2000:])
        return _figures(p, server, out, wall)


def killed(p: Provider, size: int, linger: float) -> dict:
    with p.server() as server, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        server.hold.clear()
        t0 = time.perf_counter()
        proc = subprocess.Popen(_cmd(p, server, out, size, linger), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(p))
        while not p.pending(server):
            if proc.poll() is not None or time.perf_counter() - t0 > 600:
                raise SystemExit("the run ended or stalled before a batch was pending")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        pending = p.pending(server)
        given = sum(server.submitted.values())
        server.hold.set()
        r = subprocess.run([sys.executable, "-m", "treesynth.cli", "run", "--resume", str(out), "--no-ui"],
                           capture_output=True, text=True, env=_env(p), timeout=3600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(r.stderr[-2000:])
        return {"pending_at_kill": pending, "requests_given_before_kill": given, **_figures(p, server, out, wall)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--provider", choices=["openai", "anthropic", "both"], default="both")
    ap.add_argument("--size", type=int, default=10_000)
    ap.add_argument("--linger", type=float, default=2.0)
    args = ap.parse_args()
    for name in (["openai", "anthropic"] if args.provider == "both" else [args.provider]):
        p = PROVIDERS[name]
        print(json.dumps({"provider": name, "run": plain(p, args.size, args.linger)}, indent=1), flush=True)
        print(json.dumps({"provider": name, "killed_and_resumed": killed(p, args.size, args.linger)}, indent=1), flush=True)


if __name__ == "__main__":
    main()
