"""Calls and tokens per 1,000 samples for a default GSM8K-style run, from the server's counts.

The product's defaults (depth 3, 12 pivots, 5 samples per call, up to 10 values per node),
the gsm8k preset, model openai/gpt-4o-mini (so litellm prices it), through the CLI against
tests/faultserver.py. The server counts every request per protocol step and counts tokens
with the model's tokenizer (litellm.token_counter): the prompts are the engine's real ones.

What the server cannot know is what a real model would answer, which sets the tree's shape
and the answers' length. Assumed, and printed with the result: each node splits into
--fanout values from the pivots plus --supplement from the coverage step (default 5 + 2, a
typical real split), and each sample field is about --words words (default 50: a GSM8K
question is about 46 words, its worked answer about 50-60).

    python benchmarks/bench_calls.py                 # 1,000 samples
    python benchmarks/bench_calls.py --size 5000 --fanout 3 --supplement 1

Results: a summary on stdout and benchmarks/out/calls.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
TASK = "GSM8K-style grade-school math word problems"


def main() -> None:
    ap = argparse.ArgumentParser(description="calls and tokens per 1,000 samples (default GSM8K-style run)")
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--fanout", type=int, default=5, help="values per split from the pivots (the server's answer)")
    ap.add_argument("--supplement", type=int, default=2, help="values added by the coverage step")
    ap.add_argument("--words", type=int, default=50, help="words per sample field in the server's answers")
    ap.add_argument("--model", default="openai/gpt-4o-mini")
    ap.add_argument("--out", default=str(OUT / "calls.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.faultserver import FaultConfig, FaultServer

    cfg = FaultConfig(fanout=args.fanout, supplement=args.supplement, sample_words=args.words, count_tokens=args.model.split("/", 1)[-1])
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(OPENAI_API_KEY="sk-benchmark-not-a-secret", LITELLM_LOCAL_MODEL_COST_MAP="True")
    with tempfile.TemporaryDirectory(prefix="treesynth-calls-") as tmp, FaultServer(cfg) as srv:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        r = subprocess.run(
            [sys.executable, "-m", "treesynth.cli", "run", TASK, "--preset", "gsm8k", "--no-ui", "--json-events",
             "--model", args.model, "--api-base", srv.url, "--size", str(args.size), "--concurrency", "32", "--out", str(out)],
            capture_output=True, text=True, env=env, cwd=str(ROOT),
        )
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"the run failed ({r.returncode}): {r.stderr[-1500:]}")
        events = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
        fin = events[-1]
        usage = [e for e in events if e["event"] == "usage"][-1]
        rows = sum(1 for _ in open(out / "dataset.jsonl"))
        st = srv.stats
        per_k = 1000.0 / rows
        est = subprocess.run(
            [sys.executable, "-m", "treesynth.cli", "estimate", TASK, "--preset", "gsm8k", "--model", args.model,
             "--size", str(args.size), "--fanout", str(args.fanout + args.supplement)],
            capture_output=True, text=True, env=env, cwd=str(ROOT),
        )
    result = {
        "size": args.size, "rows": rows, "status": fin["status"], "wall_s": wall,
        "assumed": {"fanout": args.fanout, "supplement": args.supplement, "words_per_field": args.words, "model": args.model},
        "tree": {"nodes": fin["nodes"], "leaves": fin["leaves"]},
        "server": {"requests": st.requests, "steps": dict(st.steps), "tokens_in": st.tokens_in, "tokens_out": st.tokens_out},
        "client_usage": usage,
        "per_1000_samples": {
            "calls": st.requests * per_k,
            "tree_calls": (st.requests - st.steps.get("samples", 0)) * per_k,
            "generation_calls": st.steps.get("samples", 0) * per_k,
            "tokens_in": st.tokens_in * per_k,
            "tokens_out": st.tokens_out * per_k,
            "cost_usd": (fin.get("cost_usd") or 0.0) * per_k,
        },
        "estimate_command": est.stdout.strip().splitlines() if est.returncode == 0 else est.stderr.strip()[-500:],
    }
    p = result["per_1000_samples"]
    print(f"{TASK}: {rows} rows ({fin['status']}), tree of {fin['nodes']} nodes / {fin['leaves']} leaves"
          f" (assumed {args.fanout}+{args.supplement} values per split, ~{args.words} words per field)")
    print(f"server saw {st.requests} requests: {dict(st.steps)}; tokens {st.tokens_in:,} in / {st.tokens_out:,} out")
    print(f"per 1,000 samples: {p['calls']:.0f} calls ({p['tree_calls']:.0f} growing the tree, {p['generation_calls']:.0f} generating),"
          f" {p['tokens_in']:,.0f} tokens in, {p['tokens_out']:,.0f} tokens out, ${p['cost_usd']:.4f} with {args.model}")
    assert usage["requests"] == st.requests, "client and server disagree on the request count"
    if est.returncode == 0:
        print("treesynth estimate for the same run:\n  " + "\n  ".join(result["estimate_command"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
