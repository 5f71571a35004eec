"""The judge: calls and tokens per 1,000 rows, batched against one row per call, and how often it
agrees with known labels, on the embedded model (SmolLM2-135M, the real one, no fake).

Labelled rows: N real GSM8K test rows under a path they satisfy (label: pass) and N rows that must
fail: a real row under a path it does not satisfy (a setting it is not about), and junk rows the
embedded model itself wrote in an earlier run (a sentence repeated, off-task text). Each set is judged
with ``--batch`` rows per call and with one row per call; the script reports calls, tokens in and out
per 1,000 rows (extrapolated from the measured calls), seconds, and agreement with the labels.

    python benchmarks/bench_judge.py [--rows 12] [--batch 3] [--model local/smollm2] [--api-base URL]

Run it on a quiet machine: the model shares 2 cores with nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GSM = ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"
JUNK = [
    {"question": "This is a sample of the GSM8K-style grade-school math word problems. This is a sample of the GSM8K-style grade-school math word problems?",
     "answer": "This is a sample of the GSM8K-style grade-school math math math math math #### 28"},
    {"question": "A man is looking at a photograph of himself. His friend asks him, 'Who is in the picture?'",
     "answer": "The man's son's son's son's son's son's son's son's son's son's son #### 4012513"},
    {"question": "Sidney buys 15 bags of candy. He eats 4 of them, 180. His mother has a jar of 15 candies?",
     "answer": "1 pieces of candy, he eats 1.1 pieces of candy. 3.2. He is eating 3 #### 3013222"},
    {"question": "The cat is blue and the sky is a dog and the dog is a sky of blue cats?", "answer": "Yes. #### 4"},
]


def labelled(n: int) -> list[tuple[dict, list[dict], bool]]:
    rows = [json.loads(line) for line in GSM.read_text().splitlines()[: n]]
    good_path = [{"dimension": "kind of problem", "value": "a grade-school math word problem with a numeric answer"}]
    bad_path = [{"dimension": "setting", "value": "a problem about planets and space travel"}]
    out = [(r, good_path, True) for r in rows]
    wrong = [(r, bad_path, False) for r in rows[: max(0, n - len(JUNK))]]
    junk = [(j, good_path, False) for j in JUNK[: n - len(wrong)]]
    return out + wrong + junk


async def judge_all(items, batch: int, cfg, make_transport):
    from treesynth.core.llm import LLMClient
    from treesynth.core.prompts import Prompts
    from treesynth.core.quality.judge import Judge

    client = LLMClient(make_transport(cfg), concurrency=1)
    judge = Judge(client, Prompts(cfg), cfg.fields, cfg.model, batch, 1, 0)
    got: list[bool] = []
    passed: dict[bool, list[bool]] = {True: [], False: []}
    t0 = time.monotonic()
    groups: dict[str, list] = {}
    for r, path, label in items:  # a call judges rows under one path, as in a run
        groups.setdefault(json.dumps(path), []).append((r, label))
    for k, (pkey, group) in enumerate(groups.items()):
        verdicts = await judge.judge(f"bench{k}", 0, json.loads(pkey), [r for r, _ in group])
        for v, (_, label) in zip(verdicts, group, strict=True):
            got.append(v.passed == label)
            passed[label].append(v.passed)
    u = client.usage
    n = len(items)
    return {"rows": n, "batch": batch, "calls": u.requests, "calls_per_1000": round(u.requests / n * 1000),
            "tokens_in_per_1000": round(u.tokens_in / n * 1000), "tokens_out_per_1000": round(u.tokens_out / n * 1000),
            "seconds": round(time.monotonic() - t0, 1), "agreement": round(sum(got) / n, 3),
            "passed_good": round(sum(passed[True]) / max(1, len(passed[True])), 3),
            "passed_bad": round(sum(passed[False]) / max(1, len(passed[False])), 3), "invalid": u.invalid}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=12, help="rows per label (pass, fail)")
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--model", default="local/smollm2")
    ap.add_argument("--api-base")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from treesynth.core.config import build_config
    from treesynth.core.llm import make_transport

    flags = {"preset": "gsm8k", "judge": True, "model": args.model, "cache": False}
    if args.api_base:
        flags["api_base"] = args.api_base
    cfg = build_config(flags=flags)
    items = labelled(args.rows)
    print("| rows per call | rows | calls / 1k rows | tokens in / 1k rows | tokens out / 1k rows | seconds | agreement | passed: good rows | passed: bad rows |")
    print("|---|---|---|---|---|---|---|---|---|")
    results = []
    for batch in (args.batch, 1):
        r = asyncio.run(judge_all(items, batch, cfg, make_transport))
        results.append(r)
        print(f"| {batch} | {r['rows']} | {r['calls_per_1000']:,} | {r['tokens_in_per_1000']:,} | {r['tokens_out_per_1000']:,} | "
              f"{r['seconds']} | {r['agreement']:.0%} | {r['passed_good']:.0%} | {r['passed_bad']:.0%} |", flush=True)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "judge.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
