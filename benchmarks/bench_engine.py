"""Engine-overhead benchmark: whole runs against an instant fake provider.

Each size runs in a fresh subprocess, so its peak RSS (os.wait4's ru_maxrss) is its own.
The provider is tests/fakes.py's ScriptedTransport with no latency: it answers every
protocol step (pivots, criterion, assign, supplement, gen) with valid JSON that the engine parses
and validates exactly as it would a real model's, so what is timed is the engine itself:
prompt rendering, the response cache, parsing, duplicate keys, checkpoints, events and
the final dataset export (JSONL + Parquet).

    python benchmarks/bench_engine.py                  # 10k, 100k, 1M
    python benchmarks/bench_engine.py --sizes 100k,1M --no-cache

Results: a table on stdout and benchmarks/out/engine.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"

# Target from the project's issue: 1M samples in <= 60 s with peak RSS <= 1 GiB on 2 cores.
TARGET_SIZE = 1_000_000
TARGET_WALL_S = 60.0
TARGET_RSS_MIB = 1024.0

DEFAULTS = {
    "depth": 4,
    "fanout": 6,  # values per split from the pivots ...
    "supplement": 2,  # ... plus values added by the coverage supplement: 8 children per node
    "pivots": 10,
    "samples_per_call": 10,
    "max_values": 10,
    "open_ended_threshold": 10,
    "concurrency": 64,
}


def parse_size(s: str) -> int:
    s = s.strip().lower().replace("_", "")
    mult = 1
    if s.endswith("k"):
        mult, s = 1_000, s[:-1]
    elif s.endswith("m"):
        mult, s = 1_000_000, s[:-1]
    return int(float(s) * mult)


def fmt_size(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


# ---------------------------------------------------------------------------
# worker: one run in this process
# ---------------------------------------------------------------------------


def _vm(field: str) -> float:
    """VmRSS / VmHWM of this process in MiB (Linux), or -1."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return -1.0


def worker(args: argparse.Namespace) -> None:
    import asyncio

    sys.path.insert(0, str(ROOT))  # for tests.fakes
    from tests.fakes import ScriptedTransport
    from treesynth.core import events as ev
    from treesynth.core.config import build_config
    from treesynth.core.run import Run

    size = args.worker
    if args.rerun:
        # cached re-run: run the finished run again, as `treesynth run --resume DIR` does
        transport = ScriptedTransport(fanout=args.fanout, supplement=args.supplement)
        t0 = time.perf_counter()
        run = Run.resume(Path(args.run_dir), transport=transport)
        t_open = time.perf_counter()
        fin = asyncio.run(run.execute())
        t1 = time.perf_counter()
        Path(args.result).write_text(json.dumps({
            "rerun_s": t1 - t0, "rerun_open_s": t_open - t0, "rerun_status": fin.status, "rerun_calls": sum(transport.calls.values()),
            "rerun_cache_hits": run.client.usage.cache_hits, "rerun_rows": fin.rows,
        }))
        return
    flags = {
        "task": "math word problems",
        "fields": "question,answer",
        "depth": args.depth,
        "size": size,
        "pivots": args.pivots,
        "samples_per_call": args.samples_per_call,
        "max_values": args.max_values,
        "open_ended_threshold": args.open_ended_threshold,
        "concurrency": args.concurrency,
        "cache": not args.no_cache,
    }
    cfg = build_config(flags=flags)
    transport = ScriptedTransport(fanout=args.fanout, supplement=args.supplement)
    run_dir = Path(args.run_dir)

    t0 = time.perf_counter()
    run = Run.create(cfg, run_dir, transport=transport)
    store = run.store
    marks = [size * k // 10 for k in range(1, 11)]  # checkpoint bytes at every 10% of the rows
    series: list[dict] = []
    state = {"synth_end": None, "rss_synth": None, "first_sample": None}

    def on_event(e) -> None:
        if type(e) is ev.LeafProgress:
            done = e.samples_done
            if state["first_sample"] is None:
                state["first_sample"] = time.perf_counter()
            while marks and done >= marks[0]:
                series.append({"rows": done, "bytes": store.bytes_written, "t": time.perf_counter() - t0})
                marks.pop(0)
            if done >= size and state["synth_end"] is None:
                state["synth_end"] = time.perf_counter()
                state["rss_synth"] = _vm("VmHWM")

    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        fin = prof.runcall(asyncio.run, run.execute(on_event))
        OUT.mkdir(parents=True, exist_ok=True)
        prof_path = OUT / f"profile-{fmt_size(size)}.prof"
        prof.dump_stats(prof_path)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(30)
        print(f"profile written to {prof_path} (timings include cProfile overhead)", file=sys.stderr)
    else:
        fin = asyncio.run(run.execute(on_event))
    t1 = time.perf_counter()

    rows = fin.rows
    result = {
        "size": size,
        "status": fin.status,
        "rows": rows,
        "leaves": fin.leaves,
        "nodes": fin.nodes,
        "calls": fin.requests,
        "calls_by_step": dict(transport.calls),
        "wall_s": t1 - t0,
        "synth_s": (state["synth_end"] or t1) - t0,
        "export_s": t1 - (state["synth_end"] or t1),
        "first_sample_s": (state["first_sample"] or t0) - t0,
        "samples_per_s": rows / (t1 - t0),
        "peak_rss_synth_mib": state["rss_synth"],
        "peak_rss_self_mib": _vm("VmHWM"),
        "bytes_written": store.bytes_written,
        "bytes_per_sample": store.bytes_written / max(1, rows),
        "bytes_series": series,
        "files": {p.name: p.stat().st_size for p in sorted(run_dir.iterdir()) if p.is_file()},
    }
    Path(args.result).write_text(json.dumps(result))


# ---------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------


def verify(run_dir: Path, size: int) -> dict:
    """Outside the timed process: the dataset has exactly ``size`` rows with unique ids."""
    import orjson

    ids: set[str] = set()
    n = 0
    with open(run_dir / "dataset.jsonl", "rb") as f:
        for line in f:
            ids.add(orjson.loads(line)["id"])
            n += 1
    out = {"jsonl_rows": n, "unique_ids": len(ids)}
    try:
        import polars as pl

        out["parquet_rows"] = pl.scan_parquet(run_dir / "dataset.parquet").select(pl.len()).collect().item()
    except Exception as e:  # noqa: BLE001
        out["parquet_error"] = repr(e)
    out["ok"] = n == size and len(ids) == size and out.get("parquet_rows") == size
    return out


def marginal(series: list[dict]) -> list[float]:
    """Checkpoint bytes per sample within each 10% slice of the run (flat = no growth)."""
    out = []
    prev_rows, prev_bytes = 0, None
    for p in series:
        if prev_bytes is not None and p["rows"] > prev_rows:
            out.append(round((p["bytes"] - prev_bytes) / (p["rows"] - prev_rows), 1))
        prev_rows, prev_bytes = p["rows"], p["bytes"]
    return out


def poll_rss(pid: int, peaks: dict, stop: threading.Event) -> None:
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in peaks:
                        peaks[k] = max(peaks[k], int(v.split()[0]))
        except (OSError, ValueError, IndexError):
            pass
        stop.wait(0.02)


def run_one(size: int, args: argparse.Namespace, workdir: Path) -> dict:
    run_dir = workdir / f"run-{fmt_size(size)}"
    result_path = workdir / f"result-{fmt_size(size)}.json"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(size), "--run-dir", str(run_dir), "--result", str(result_path)]
    for k in DEFAULTS:
        cmd += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    if args.no_cache:
        cmd.append("--no-cache")
    if args.profile:
        cmd.append("--profile")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=str(ROOT))
    peaks = {"RssAnon": 0, "RssFile": 0}
    stop = threading.Event()
    poller = threading.Thread(target=poll_rss, args=(p.pid, peaks, stop), daemon=True)
    poller.start()
    _, status, ru = os.wait4(p.pid, 0)
    stop.set()
    poller.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    proc_s = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"benchmark worker for size {size} failed with exit code {p.returncode}")
    r = json.loads(result_path.read_text())
    r["process_s"] = proc_s
    r["peak_rss_mib"] = ru.ru_maxrss / 1024.0  # KiB on Linux
    # sampled every 20 ms: anonymous memory (heap) vs file pages mapped (polars mmaps dataset.jsonl)
    r["peak_rss_anon_mib"] = peaks["RssAnon"] / 1024.0
    r["peak_rss_file_mib"] = peaks["RssFile"] / 1024.0
    r["cpu_user_s"] = ru.ru_utime
    r["cpu_sys_s"] = ru.ru_stime
    r["marginal_bytes_per_sample"] = marginal(r.pop("bytes_series"))
    if args.verify and r["status"] == "complete":
        r["verify"] = verify(run_dir, size)
    if args.rerun_check and r["status"] == "complete":
        # cached re-run of the finished run, in a fresh process (its memory is not this run's)
        t0 = time.perf_counter()
        subprocess.run([*cmd, "--rerun"], cwd=str(ROOT), check=True)
        r.update(json.loads(result_path.read_text()))
        r["rerun_process_s"] = time.perf_counter() - t0
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    result_path.unlink(missing_ok=True)
    return r


def print_table(results: list[dict], cache: bool) -> None:
    head = ("size", "leaves", "calls", "wall s", "samples/s", "peak RSS MiB", "(anon)", "ckpt B/sample", "synth s", "export s", "ok", "re-run s (calls)")
    rows = []
    for r in results:
        v = r.get("verify", {})
        rows.append((
            fmt_size(r["size"]), f"{r['leaves']:,}", f"{r['calls']:,}", f"{r['wall_s']:.1f}", f"{r['samples_per_s']:,.0f}",
            f"{r['peak_rss_mib']:.0f}", f"{r['peak_rss_anon_mib']:.0f}", f"{r['bytes_per_sample']:.0f}", f"{r['synth_s']:.1f}",
            f"{r['export_s']:.1f}", ("yes" if v.get("ok") else "NO") if v else r["status"],
            f"{r['rerun_s']:.1f} ({r['rerun_calls']})" if "rerun_s" in r else "-",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
    print(f"(response cache {'on: written and read, the product default' if cache else 'reads off (--no-cache); responses are still written'})")
    for r in results:
        print(f"{fmt_size(r['size'])}: checkpoint bytes/sample per 10% slice: {r['marginal_bytes_per_sample']}")


def growth(results: list[dict]) -> list[dict]:
    """How wall time, synthesis time and peak RSS grow between consecutive sizes.

    The marginal cost per extra sample (seconds or MiB per 1k samples between two sizes) is
    what must stay flat for growth to be linear; totals grow less than the size at small sizes
    because the tree (the same 4,096 leaves at every size) is a fixed cost. A step is called
    linear when its marginal cost is at most 1.5x the previous step's.
    """
    rs = sorted(results, key=lambda r: r["size"])
    out: list[dict] = []
    prev_marg: dict[str, float] = {}
    for a, b in itertools.pairwise(rs):
        extra_k = (b["size"] - a["size"]) / 1000.0
        step = {"from": a["size"], "to": b["size"], "size_x": b["size"] / a["size"]}
        for key, _unit in (("wall_s", "s"), ("synth_s", "s"), ("peak_rss_mib", "MiB"), ("peak_rss_anon_mib", "MiB")):
            marg = (b[key] - a[key]) / extra_k
            step[f"{key}_x"] = b[key] / a[key] if a[key] else None
            step[f"{key}_per_1k"] = marg
            step[f"{key}_linear"] = (marg <= 1.5 * prev_marg[key] + 1e-9) if key in prev_marg else None
            prev_marg[key] = max(marg, 0.0)
        out.append(step)
    return out


def print_growth(steps: list[dict]) -> None:
    for st in steps:
        parts = []
        for key, label, unit in (("wall_s", "wall", "ms"), ("synth_s", "synthesis", "ms"), ("peak_rss_mib", "peak RSS", "MiB"), ("peak_rss_anon_mib", "anon RSS", "MiB")):
            per = st[f"{key}_per_1k"] * (1000 if unit == "ms" else 1)
            lin = st[f"{key}_linear"]
            verdict = "" if lin is None else (" linear" if lin else " SUPERLINEAR")
            parts.append(f"{label} x{st[f'{key}_x']:.2f} ({per:.2f} {unit}/1k samples{verdict})")
        print(f"growth {fmt_size(st['from'])} -> {fmt_size(st['to'])} (size x{st['size_x']:.0f}): " + ", ".join(parts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10k,100k,1M", help="comma-separated sizes (default 10k,100k,1M)")
    ap.add_argument("--no-cache", action="store_true", help="run with --no-cache (cache reads off)")
    ap.add_argument("--keep", action="store_true", help="keep the run directories")
    ap.add_argument("--workdir", help="where run directories go (default: a temporary directory)")
    ap.add_argument("--json", help="results file (default benchmarks/out/engine.json; engine-profile.json with --profile)")
    ap.add_argument("--profile", action="store_true", help="run each size under cProfile (slower; writes benchmarks/out/profile-SIZE.prof)")
    ap.add_argument("--no-verify", dest="verify", action="store_false", help="skip the row-count / unique-id check")
    ap.add_argument("--no-rerun", dest="rerun_check", action="store_false", help="skip the cached re-run of each finished run")
    ap.add_argument("--rerun", action="store_true", help=argparse.SUPPRESS)
    for k, v in DEFAULTS.items():
        ap.add_argument(f"--{k.replace('_', '-')}", dest=k, type=int, default=v)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker is not None:
        worker(args)
        return 0

    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    tmp = None
    if args.workdir:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
    else:
        tmp = workdir = Path(tempfile.mkdtemp(prefix="treesynth-bench-"))
    cfg_desc = {k: getattr(args, k) for k in DEFAULTS}
    print(f"engine benchmark: {cfg_desc}, cache={'off' if args.no_cache else 'on'}, {os.cpu_count()} CPUs", flush=True)
    results = []
    try:
        for size in sizes:
            print(f"  running {fmt_size(size)} ...", flush=True)
            r = run_one(size, args, workdir)
            results.append(r)
            print(
                f"  {fmt_size(size)}: {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mib']:.0f} MiB, "
                f"{r['bytes_per_sample']:.0f} checkpoint B/sample, {r['status']}",
                flush=True,
            )
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print()
    print_table(results, not args.no_cache)
    steps = growth(results)
    print_growth(steps)

    target = None
    for r in results:
        if r["size"] == TARGET_SIZE and not args.profile:
            target = {
                "wall_s": r["wall_s"], "peak_rss_mib": r["peak_rss_mib"],
                "wall_ok": r["wall_s"] <= TARGET_WALL_S, "rss_ok": r["peak_rss_mib"] <= TARGET_RSS_MIB,
            }
            print(
                f"target (1M in <= {TARGET_WALL_S:.0f} s, peak RSS <= {TARGET_RSS_MIB:.0f} MiB): "
                f"{'met' if target['wall_ok'] and target['rss_ok'] else 'NOT met'}"
            )
    out = {
        "benchmark": "engine",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "config": {**cfg_desc, "cache": not args.no_cache, "provider": "tests.fakes.ScriptedTransport (latency 0)"},
        "target": {"size": TARGET_SIZE, "wall_s": TARGET_WALL_S, "peak_rss_mib": TARGET_RSS_MIB, "result": target},
        "results": results,
        "growth": steps,
    }
    jp = Path(args.json) if args.json else OUT / ("engine-profile.json" if args.profile else "engine.json")
    jp.parent.mkdir(parents=True, exist_ok=True)
    jp.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {jp}")
    bad = [r for r in results if r["status"] != "complete" or (r.get("verify") and not r["verify"]["ok"])]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
