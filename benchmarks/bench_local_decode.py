"""The embedded model's decoder: tokens per second by decoding slots, and the README's run.

1. Decoder: ``--calls`` grammar-constrained calls (two GSM8K-style rows as JSON each) submitted at
   once, with 1, 2, 4 and 8 slots (``TREESYNTH_LOCAL_SLOTS``), each setting in a fresh process:
   tokens out per second, forward passes, prompt tokens evaluated and reused.
2. The README's run (``treesynth run "GSM8K-style ..." --preset gsm8k --depth 2 --size 20``) with the
   slots given by ``--readme-slots``: wall, when the tree was done, and rows per second while leaves
   were generated (from the run's events.jsonl). The same script run from an older checkout measures
   that checkout (it only calls the CLI).

    python benchmarks/bench_local_decode.py [--calls 8] [--slots 1 2 4 8] [--readme-slots 4] [--skip-readme]

Run it on a quiet machine: the model shares 2 cores with nothing else.
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

_DECODE = r"""
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from treesynth.core.llm.transports.local import _LocalEngine
n = int(sys.argv[1])
e = _LocalEngine.get("smollm2")
item = {"type": "object", "properties": {"question": {"type": "string", "minLength": 20, "maxLength": 300},
        "answer": {"type": "string", "minLength": 1, "maxLength": 300}}, "required": ["question", "answer"], "additionalProperties": False}
schema = {"type": "object", "properties": {"samples": {"type": "array", "minItems": 2, "maxItems": 2, "items": item}},
          "required": ["samples"], "additionalProperties": False}
def call(i):
    msgs = [{"role": "system", "content": "You write grade-school math word problems as JSON."},
            {"role": "user", "content": f"Write 2 word problems about topic {i} (shopping, money) with worked answers ending in #### N."}]
    return e.complete(msgs, {"temperature": 0.8, "seed": i, "max_tokens": 400, "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}})
call(999)  # load and warm up
s0 = dict(e.decoder.stats)
t0 = time.perf_counter()
with ThreadPoolExecutor(n) as ex:
    outs = list(ex.map(call, range(n)))
dt = time.perf_counter() - t0
tok = sum(o["usage"]["completion_tokens"] for o in outs)
st = {k: e.decoder.stats[k] - s0[k] for k in s0}
print(json.dumps({"calls": n, "tokens_out": tok, "seconds": round(dt, 2), "tokens_per_s": round(tok / dt, 1), **st}))
"""


def decode(slots: int, calls: int) -> dict:
    env = {**os.environ, "TREESYNTH_LOCAL_SLOTS": str(slots)}
    r = subprocess.run([sys.executable, "-c", _DECODE, str(calls)], capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise SystemExit(r.stderr[-2000:])
    return {"slots": slots, **json.loads(r.stdout.strip().splitlines()[-1])}


def readme_run(slots: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        env = {**os.environ, "TREESYNTH_LOCAL_SLOTS": str(slots)}
        t0 = time.perf_counter()
        r = subprocess.run(["treesynth", "run", "GSM8K-style grade-school math word problems", "--preset", "gsm8k", "--no-ui",
                            "--depth", "2", "--size", "20", "--out", str(out)], capture_output=True, text=True, env=env, timeout=3600)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(r.stderr[-2000:])
        events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines() if line.strip()]
        t_start = events[0]["ts"]
        tree_done = max(e["ts"] for e in events if e["event"] in ("node_expanded", "node_leaf"))
        rows = [e for e in events if e["event"] == "leaf_progress"]
        fin = next(e for e in events if e["event"] == "run_finished")
        tokens_out = json.loads((out / "state.json").read_text()).get("usage", {}).get("tokens_out")
        return {"slots": slots, "wall_s": round(wall, 1), "tree_s": round(tree_done - t_start, 1), "rows": fin["rows"],
                "requests": fin["requests"], "tokens_out": tokens_out,
                "generation_rows_per_s": round(fin["rows"] / max(1e-9, rows[-1]["ts"] - tree_done), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=8)
    ap.add_argument("--slots", type=int, nargs="*", default=[1, 2, 4, 8])
    ap.add_argument("--readme-slots", type=int, nargs="*", default=[4])
    ap.add_argument("--skip-readme", action="store_true")
    args = ap.parse_args()
    print("| slots | calls | tokens out | seconds | tokens/s | forward passes | prompt tokens evaluated | reused |")
    print("|---|---|---|---|---|---|---|---|")
    for s in args.slots:
        d = decode(s, args.calls)
        print(f"| {s} | {d['calls']} | {d['tokens_out']:,} | {d['seconds']} | {d['tokens_per_s']} | {d['passes']:,} | {d['prefill']:,} | {d['reused']:,} |", flush=True)
    if args.skip_readme:
        return
    print("\n| slots | wall s | tree done s | rows | requests | tokens out | rows/s while generating |")
    print("|---|---|---|---|---|---|---|")
    for s in args.readme_slots:
        d = readme_run(s)
        print(f"| {s} | {d['wall_s']} | {d['tree_s']} | {d['rows']} | {d['requests']} | {d['tokens_out']} | {d['generation_rows_per_s']} |", flush=True)


if __name__ == "__main__":
    main()
