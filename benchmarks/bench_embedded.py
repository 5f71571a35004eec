"""The embedded model (SmolLM2-135M) on the tree's hard steps: pivots, the criterion, rows.

For each of four tasks and a few seeds, one root node is grown on the embedded model (depth 1)
and a few rows are generated; the script reports per task:

- pivots: distinct pivots out of those asked;
- criterion: how the root was split: by the model (a valid split), data-driven (embedding clusters,
  after the model's answers were all invalid), or not at all (a leaf);
- attempts: criterion/assign answers that failed validation;
- rows: the share of rows that are on task (GSM8K: 8+ words and a question mark in the question;
  other tasks: the first field has 5+ words) and distinct;
- seconds per run.

    python benchmarks/bench_embedded.py [--seeds 3] [--size 6] [--out benchmarks/out/embedded.json]

It uses only the public run API (build_config, Run), so the same script measures an older
checkout too. Run it on a quiet machine: the model shares 2 cores with nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TASKS = [
    {"name": "gsm8k", "flags": {"preset": "gsm8k"}},
    {"name": "bike-shop support", "flags": {"task": "Questions customers ask a bicycle shop's support desk, with helpful answers", "fields": "question,answer"}},
    {"name": "python exercises", "flags": {"preset": "code_alpaca"}},
    {"name": "geography trivia", "flags": {"task": "Geography trivia questions with short correct answers", "fields": "question,answer"}},
]


def on_task(name: str, row: dict, fields: list[str]) -> bool:
    first = str(row.get(fields[0], ""))
    if name == "gsm8k":
        return len(first.split()) >= 8 and "?" in first
    return len(first.split()) >= 5


def one(task: dict, seed: int, size: int, root: Path) -> dict:
    from treesynth.core import events as ev
    from treesynth.core.config import build_config
    from treesynth.core.run import Run

    cfg = build_config(flags={**task["flags"], "depth": 1, "size": size, "seed": seed})
    out = root / f"{task['name'].replace(' ', '-')}-{seed}"
    events: list = []
    t0 = time.perf_counter()
    fin = asyncio.run(Run.create(cfg, out).execute(events.append))
    wall = time.perf_counter() - t0
    tree = {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}
    rootn = tree["0"]
    expanded = [e for e in events if isinstance(e, ev.NodeExpanded) and e.node_id == "0"]
    if expanded:
        how = "data-driven" if getattr(expanded[0], "data_driven", False) or "embedding cluster" in expanded[0].dimension else "model"
    else:
        how = "leaf"
    warnings = [e.message for e in events if isinstance(e, ev.RunWarning)]
    bad = sum(1 for w in warnings if ("criterion: invalid" in w or "assign: invalid" in w or "classify: invalid" in w))
    rows = [json.loads(line) for line in (out / "dataset.jsonl").read_text().splitlines()] if (out / "dataset.jsonl").exists() else []
    fields = list(cfg.fields)
    return {
        "task": task["name"], "seed": seed, "status": fin.status, "wall_s": round(wall, 1),
        "pivots_asked": cfg.pivots, "pivots_distinct": len({json.dumps(p, sort_keys=True) for p in rootn.get("pivots") or []}),
        "split": how, "dimension": rootn.get("split_dimension"),
        "values": [v["value"] for v in rootn.get("split_values") or []],
        "invalid_criterion_answers": bad, "rows": len(rows),
        "rows_on_task": sum(on_task(task["name"], r, fields) for r in rows),
        "rows_distinct": len({str(r.get(fields[0], "")).strip().lower() for r in rows}),
        "row_examples": [str(r.get(fields[0], ""))[:140] for r in rows[:3]],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--size", type=int, default=6)
    ap.add_argument("--tasks", default=",".join(t["name"] for t in TASKS))
    ap.add_argument("--out", default="benchmarks/out/embedded.json")
    a = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    want = set(a.tasks.split(","))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for task in TASKS:
            if task["name"] not in want:
                continue
            for seed in range(a.seeds):
                r = one(task, seed, a.size, Path(tmp))
                results.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    summary = {}
    for name in sorted({r["task"] for r in results}):
        rs = [r for r in results if r["task"] == name]
        summary[name] = {
            "runs": len(rs),
            "model_splits": sum(r["split"] == "model" for r in rs),
            "data_driven_splits": sum(r["split"] == "data-driven" for r in rs),
            "leaves": sum(r["split"] == "leaf" for r in rs),
            "pivots_distinct": f"{sum(r['pivots_distinct'] for r in rs)}/{sum(r['pivots_asked'] for r in rs)}",
            "rows_on_task": f"{sum(r['rows_on_task'] for r in rs)}/{sum(r['rows'] for r in rs)}",
            "rows_distinct": f"{sum(r['rows_distinct'] for r in rs)}/{sum(r['rows'] for r in rs)}",
            "s_per_run": round(sum(r["wall_s"] for r in rs) / len(rs), 1),
        }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
