"""Balance benchmark: routing throughput (rows/s) for --route embed, and LLM calls per 1,000 rows
for --route llm, on the 7,473 rows of GSM8K train (../shared/data/gsm8k/train.jsonl).

    python benchmarks/bench_balance.py [--data PATH] [--depth 2] [--route-batch 25]

The scripted in-process provider answers the tree and routing steps instantly, so the figures
are the engine's routing cost (embedding included; the second embed run reads the cache).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes import ScriptedTransport  # noqa: E402
from treesynth.core import events as ev  # noqa: E402
from treesynth.core.balance import create_balance_run, load_data  # noqa: E402
from treesynth.core.embeddings import load_embedder  # noqa: E402


def one(data_path: Path, route: str, depth: int, batch: int, embed, workdir: Path) -> dict:
    data = load_data(data_path, "question", ("question", "answer"))
    spec = {"data": str(data_path), "field": "question", "fields": ["question", "answer"], "route": route,
            "route_batch": batch, "target_per_leaf": None, "size": len(data), "embedder": None}
    t = ScriptedTransport(fields=("question", "answer"))
    out = workdir / f"{route}-{time.time_ns()}"
    run = create_balance_run(data, spec, {"task": "GSM8K-style math word problems", "depth": depth, "pivots": 12, "concurrency": 64}, out,
                            transport=t, embed=embed)
    marks = {}

    def on_event(e) -> None:  # the plan is announced once every row is routed
        if isinstance(e, ev.SamplesTarget) and "routed" not in marks:
            marks["routed"] = time.perf_counter()

    t0 = time.perf_counter()
    fin = asyncio.run(run.execute(on_event))
    total = time.perf_counter() - t0
    route_s = marks["routed"] - t0
    summary = json.loads((out / "balance_summary.json").read_text())
    return {
        "route": route, "rows": len(data), "depth": depth, "status": fin.status, "routing_s": round(route_s, 2),
        "rows_per_s": round(len(data) / route_s, 1), "total_s": round(total, 2), "route_calls": t.calls and sum(v for k, v in t.calls.items() if k.startswith("route")),
        "calls_per_1000_rows": round(1000 * sum(v for k, v in t.calls.items() if k.startswith("route")) / len(data), 1),
        "paper_calls_per_1000_rows": 1000 * depth, "entropy_before": summary["before"]["entropy"], "entropy_after": summary["after"]["entropy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"))
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--route-batch", type=int, default=25)
    args = ap.parse_args()
    embed = load_embedder(None)
    results = []
    with tempfile.TemporaryDirectory() as d:
        for route in ("embed", "embed", "llm"):
            r = one(Path(args.data), route, args.depth, args.route_batch, embed, Path(d))
            results.append(r)
            print(json.dumps(r))
    (ROOT / "benchmarks" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "benchmarks" / "out" / "balance.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
