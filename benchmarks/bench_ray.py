"""The Ray executor (issue 7): dispatch overhead with an instant provider, and the embedded model
with the local executor vs Ray with two single-thread workers.

    python benchmarks/bench_ray.py                 # both parts
    python benchmarks/bench_ray.py --skip-model    # overhead only (seconds)
    python benchmarks/bench_ray.py --samples 8     # embedded-model part: samples to generate

Needs Ray (pip install 'treesynth[ray]'). A local Ray instance is started with 2 CPUs and token
auth (a fresh token in the environment, nothing written to ~/.ray). Results: a table on stdout
and benchmarks/out/ray.json. See benchmarks/README.md for the figures and what they mean.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))  # tests.fakes on workers

from tests.fakes import ScriptedTransport  # noqa: E402
from tests.ray_fakes import ScriptedFactory  # noqa: E402
from treesynth.core.config import build_config  # noqa: E402
from treesynth.core.ids import derive_seed  # noqa: E402
from treesynth.core.llm import PRIORITY_LEAF, LiteLLMTransport, LLMClient, LLMRequest  # noqa: E402
from treesynth.core.llm.transports.ray import RayTransport  # noqa: E402
from treesynth.core.parsing import ParseError, parse_json, parse_samples  # noqa: E402
from treesynth.core.prompts import Prompts  # noqa: E402
from treesynth.core.run import Run  # noqa: E402
from treesynth.core.schemas import samples_schema  # noqa: E402

FIELDS = ("question", "answer")
PATH = [{"dimension": "topic", "value": "shopping and money"}, {"dimension": "operations", "value": "two-step addition and subtraction"}]


def gen_requests(cfg, n_calls: int, per_call: int, leaf: str = "0.1.2") -> list[LLMRequest]:
    """The generation calls a leaf makes (same prompt, schema, slots and seeds as Engine._gen)."""
    prompts = Prompts(cfg)
    msgs = prompts.generate(PATH, per_call, None)
    schema = samples_schema(cfg.fields, per_call, cfg.max_field_chars)
    return [
        LLMRequest(messages=msgs, slot=f"{leaf}:gen:{i}", schema=schema, schema_name="samples", temperature=cfg.temperature,
                   max_tokens=cfg.max_tokens, seed=derive_seed(cfg.seed, leaf, "gen", i), priority=PRIORITY_LEAF)
        for i in range(n_calls)
    ]


async def _drive(transport, reqs: list[LLMRequest], concurrency: int) -> tuple[float, list]:
    client = LLMClient(transport, concurrency=concurrency, max_retries=6)
    t0 = time.perf_counter()
    out = await asyncio.gather(*(client.complete(r) for r in reqs))
    return time.perf_counter() - t0, out


def count_samples(completions, fields, per_call: int) -> int:
    n = 0
    for c in completions:
        if c.finish_reason == "length":
            continue
        try:
            s, _ = parse_samples(parse_json(c.text), fields, max_items=per_call, max_chars=1200)
        except ParseError:
            continue
        n += len(s)
    return n


# ---------------------------------------------------------------------------


def overhead(calls: int, run_size: int) -> dict:
    cfg = build_config(flags={"task": "GSM8K-style grade-school math word problems", "fields": ",".join(FIELDS), "depth": 2,
                              "size": run_size, "pivots": 6, "executor": "ray"})
    reqs = gen_requests(cfg, calls, 5)
    pool = RayTransport(cfg, workers=2, transport_factory=ScriptedFactory({"fields": FIELDS}), model="fake/scripted")
    res: dict = {"calls": calls, "workers": 2}
    try:
        asyncio.run(_drive(pool, reqs[:200], 64))  # warm-up: worker processes, imports, connections
        for conc in (1, 64):
            n = calls if conc > 1 else min(calls, 500)
            t_local = min(asyncio.run(_drive(ScriptedTransport(fields=FIELDS), reqs[:n], conc))[0] for _ in range(3))
            t_ray = min(asyncio.run(_drive(pool, reqs[:n], conc))[0] for _ in range(3))
            res[f"c{conc}"] = {
                "calls": n, "local_s": round(t_local, 4), "ray_s": round(t_ray, 4),
                "local_us_per_call": round(t_local / n * 1e6, 1), "ray_us_per_call": round(t_ray / n * 1e6, 1),
                "overhead_us_per_call": round((t_ray - t_local) / n * 1e6, 1), "ray_calls_per_s": round(n / t_ray),
            }
    finally:
        pool.close()

    # whole runs: tree, synthesis, run directory, export
    runs = {}
    for executor in ("local", "ray"):
        walls = []
        for _ in range(2):
            d = Path(tempfile.mkdtemp(prefix="bench-ray-"))
            try:
                c = build_config(flags={**cfg.model_dump(), "executor": executor, "concurrency": 64, "cache": False})
                t = ScriptedTransport(fields=FIELDS) if executor == "local" else RayTransport(
                    c, workers=2, transport_factory=ScriptedFactory({"fields": FIELDS}), model="fake/scripted")
                run = Run.create(c, d / "run", transport=t)
                t0 = time.perf_counter()
                fin = asyncio.run(run.execute())
                walls.append(time.perf_counter() - t0)
                assert fin.status == "complete" and fin.rows == run_size, fin
                leaves = fin.leaves
                requests = fin.requests
            finally:
                shutil.rmtree(d, ignore_errors=True)
        runs[executor] = {"wall_s": round(min(walls), 3), "requests": requests, "leaves": leaves}
    gen_calls = runs["ray"]["requests"]
    extra = runs["ray"]["wall_s"] - runs["local"]["wall_s"]
    res["run"] = {
        "size": run_size, **{f"{k}_{m}": v for k, r in runs.items() for m, v in r.items()},
        "overhead_ms_per_leaf": round(extra / runs["ray"]["leaves"] * 1e3, 2),
        "overhead_us_per_call": round(extra / gen_calls * 1e6, 1),
    }
    return res


def embedded(samples: int, per_call: int) -> dict:
    cfg = build_config(flags={"task": "GSM8K-style grade-school math word problems", "fields": ",".join(FIELDS),
                              "preset": "gsm8k", "samples_per_call": per_call, "concurrency": 2})
    n_calls = max(1, -(-samples // per_call))
    reqs = gen_requests(cfg, n_calls, per_call, leaf="0.3.1")
    warm = [LLMRequest(messages=r.messages, slot=f"warm:gen:{i}", max_tokens=16, seed=i, priority=PRIORITY_LEAF) for i, r in enumerate(reqs[:2])]
    res: dict = {"samples_asked": n_calls * per_call, "calls": n_calls, "samples_per_call": per_call, "concurrency": 2}

    # local executor: one llama.cpp model in this process, TREESYNTH_LOCAL_THREADS default (2 on 2 cores)
    local = LiteLLMTransport(cfg)
    asyncio.run(_drive(local, warm[:1], 1))  # load the model (not timed)
    wall, out = asyncio.run(_drive(local, reqs, 2))
    got = count_samples(out, FIELDS, per_call)
    res["local"] = {"threads": int(os.environ.get("TREESYNTH_LOCAL_THREADS") or min(8, os.cpu_count() or 1)), "wall_s": round(wall, 2),
                    "valid_samples": got, "samples_per_s": round(got / wall, 3), "calls_per_s": round(n_calls / wall, 3)}

    # Ray: two workers, one CPU and one llama.cpp thread each, each with its own model
    pool = RayTransport(build_config(flags={**cfg.model_dump(), "executor": "ray", "ray_workers": 2}))
    try:
        asyncio.run(_drive(pool, warm, 2))  # both workers load their model (not timed)
        wall, out = asyncio.run(_drive(pool, reqs, 2))
        got = count_samples(out, FIELDS, per_call)
        res["ray"] = {"workers": 2, "threads_per_worker": 1, "wall_s": round(wall, 2), "valid_samples": got,
                      "samples_per_s": round(got / wall, 3), "calls_per_s": round(n_calls / wall, 3)}
    finally:
        pool.close()
    res["speedup_calls"] = round(res["ray"]["calls_per_s"] / res["local"]["calls_per_s"], 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="calls in the dispatch-overhead test (default 2000)")
    ap.add_argument("--run-size", type=int, default=2000, help="rows in the whole-run overhead test (default 2000)")
    ap.add_argument("--samples", type=int, default=8, help="samples generated by the embedded model per executor (default 8)")
    ap.add_argument("--samples-per-call", type=int, default=2)
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--skip-overhead", action="store_true")
    args = ap.parse_args()

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    report: dict = {"ray": ray.__version__, "cpus": os.cpu_count(), "ray_init_s": round(time.perf_counter() - t0, 1)}
    try:
        if not args.skip_overhead:
            report["overhead"] = o = overhead(args.calls, args.run_size)
            print(f"dispatch, instant provider, 2 workers ({o['calls']} gen calls):")
            for k in ("c1", "c64"):
                r = o[k]
                print(f"  concurrency {k[1:]:>2}: local {r['local_us_per_call']:>7} us/call, ray {r['ray_us_per_call']:>7} us/call "
                      f"-> overhead {r['overhead_us_per_call']} us/call ({r['ray_calls_per_s']} calls/s through Ray)")
            r = o["run"]
            print(f"  whole run, {r['size']} rows, {r['ray_leaves']} leaves, {r['ray_requests']} calls: local {r['local_wall_s']} s, "
                  f"ray {r['ray_wall_s']} s -> {r['overhead_ms_per_leaf']} ms/leaf, {r['overhead_us_per_call']} us/call")
        if not args.skip_model:
            report["embedded"] = e = embedded(args.samples, args.samples_per_call)
            print(f"embedded model (SmolLM2-135M), {e['calls']} calls x {e['samples_per_call']} samples, concurrency 2:")
            for k in ("local", "ray"):
                r = e[k]
                print(f"  {k:5s}: {r['wall_s']} s, {r['valid_samples']} valid samples, {r['samples_per_s']} samples/s, {r['calls_per_s']} calls/s")
            print(f"  ray / local (calls/s): {e['speedup_calls']}x")
    finally:
        ray.shutdown()
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray.json").write_text(json.dumps(report, indent=2))
    print(f"wrote {out / 'ray.json'}")


if __name__ == "__main__":
    main()
