"""The quality gates at API speed: whole `treesynth run` processes against an instant server that writes
varied, human rows (benchmarks/instant_server.py: GSM8K sentences recombined; its /v1/embeddings
answers at once too), with semantic dedup off, on with the endpoint embedder, and on with the local
embedder (all-MiniLM-L6-v2 on this machine's CPU).

    python benchmarks/bench_gates.py                         # 10k and 100k rows, off / endpoint; local at 2k
    python benchmarks/bench_gates.py --sizes 1M --cases endpoint
    python benchmarks/bench_gates.py --sizes 10k --cases off,endpoint,local

Each case is one process (`treesynth run ... --no-ui`, `--depth 2 --concurrency 64 --samples-per-call 5
--fields question,answer`), its wall, CPU and peak RSS (the largest process: ru_maxrss; all its processes together: sampled) measured; the rows checked
(exact size, distinct ids). Results: a table on stdout and benchmarks/out/gates.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def size_of(text: str) -> int:
    t = text.strip().lower()
    mult = 1_000_000 if t.endswith("m") else 1000 if t.endswith("k") else 1
    return int(float(t.rstrip("mk")) * mult)


_WRAP = (
    "import resource, subprocess, sys\n"
    "p = subprocess.run(sys.argv[2:])\n"
    "u = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "open(sys.argv[1], 'w').write(f'{u.ru_maxrss} {u.ru_utime + u.ru_stime}')\n"
    "sys.exit(p.returncode)\n"
)


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_rss_kib(root: int) -> int:
    """Resident memory of ``root`` and every process under it, together (Linux /proc), in KiB."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cli_pid(root: int) -> int | None:
    """The ``treesynth.cli.main`` process started by the wrapper ``root`` (None before it starts)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if b"treesynth.cli.main" in (d / "cmdline").read_bytes() and int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == root:
                return int(d.name)
        except (OSError, IndexError, ValueError):
            continue
    return None


def main_thread_sched(pid: int) -> tuple[float, float] | None:
    """(seconds on a CPU, seconds runnable but waiting for one) of ``pid``'s main thread, the event loop's
    (/proc/PID/task/PID/schedstat); None once it has ended."""
    try:
        on_cpu, waiting = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[:2]
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return None


class TreeRss:
    """The highest ``tree_rss_kib`` of a process tree, sampled every 0.2 s in a thread: with the index in a
    process of its own (runs of 20k rows and more), the run's memory is the sum of its processes'. Also the
    run's main thread's time on a CPU and waiting for one (its last sample): the event loop's thread is what
    a run at API speed waits for (benchmarks/README.md)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self.sched: tuple[float, float] = (0.0, 0.0)
        self._cli: int | None = None  # the run's process, found once
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss_kib(self.pid))
            if self._cli is None:
                self._cli = cli_pid(self.pid)
            if self._cli is not None:
                self.sched = main_thread_sched(self._cli) or self.sched

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def one_case(url: str, size: int, case: str, work: Path, server_pid: int) -> dict:
    out = work / f"{case}-{size}"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "treesynth.cli.main", "run", "math word problems", "--fields", "question,answer",
           "--size", str(size), "--depth", "2", "--concurrency", "64", "--samples-per-call", "5",
           "--model", "openai/instant", "--api-base", url, "--no-ui", "--out", str(out)]
    if case == "off":
        cmd += ["--no-dedup"]
    elif case == "endpoint":
        cmd += ["--dedup-threshold", "0.92", "--embedder", "openai/hash-384", "--embed-api-base", url]
    elif case == "local":
        cmd += ["--dedup-threshold", "0.92", "--embedder", "local"]
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", TREESYNTH_CACHE_DIR=str(work / "cache"), OPENAI_API_KEY="sk-bench")
    # a wrapper process so ru_maxrss is this run's alone (RUSAGE_CHILDREN keeps the largest child ever)
    rss_file = work / "rss"
    wrap = [sys.executable, "-c", _WRAP, str(rss_file), *cmd]
    server_cpu0 = cpu_seconds(server_pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen(wrap, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = TreeRss(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    tree_peak = sampler.stop()
    p = subprocess.CompletedProcess(wrap, proc.returncode, stdout, stderr)
    server_cpu = cpu_seconds(server_pid) - server_cpu0
    peak, run_cpu = (int(rss_file.read_text().split()[0]), float(rss_file.read_text().split()[1])) if rss_file.exists() else (0, 0.0)
    if p.returncode != 0:
        raise SystemExit(f"{case} {size}: exit {p.returncode}\n{p.stderr[-2000:]}")
    ids = set()
    n = 0
    with open(out / "dataset.jsonl", encoding="utf-8") as f:
        for line in f:
            ids.add(json.loads(line)["id"])
            n += 1
    rejected = 0
    if (out / "rejected.jsonl").exists():
        with open(out / "rejected.jsonl", encoding="utf-8") as f:
            rejected = sum(1 for _ in f)
    res = {"case": case, "rows": size, "wall_s": round(wall, 2), "peak_rss_mib": round(peak / 1024), "tree_rss_mib": round(tree_peak / 1024),
           "stored": n, "distinct_ids": len(ids), "near_duplicates": rejected,
           "run_cpu_s": round(run_cpu, 1), "server_cpu_s": round(server_cpu, 1),
           "loop_cpu_s": round(sampler.sched[0], 1), "loop_wait_s": round(sampler.sched[1], 1)}
    shutil.rmtree(out, ignore_errors=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10k,100k")
    ap.add_argument("--cases", default="off,endpoint")
    ap.add_argument("--local-size", default="2k", help="size of the local-embedder case (it runs at the CPU's embedding speed)")
    ap.add_argument("--repeat", type=int, default=1, help="run the cases this many times, alternating, and report medians (this "
                    "machine's speed varies from run to run by 10-30%%)")
    args = ap.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    # every row the server will write (its row counter runs on across the cases) and its vector, made before the
    # clock starts, so that its answers are lookups: its CPU shares the run's two cores, a remote API's would not
    total = sum(size_of(s) for s in args.sizes.split(",")) * len([c for c in args.cases.split(",") if c != "local"]) * args.repeat
    pre = ["--precompute", str(int(total * 1.2) + 1000)] if total else []
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "instant_server.py"), "--port", str(port), *pre],
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONHASHSEED="0"))
    results = []
    try:
        assert server.stdout is not None
        server.stdout.readline()  # "ready ..."
        time.sleep(0.5)
        with tempfile.TemporaryDirectory(prefix="bench-gates-") as tmp:
            work = Path(tmp)
            cases = args.cases.split(",")
            for size in [size_of(s) for s in args.sizes.split(",")]:
                for _ in range(args.repeat):
                    for case in cases:
                        if case == "local":
                            continue
                        r = one_case(url, size, case, work, server.pid)
                        results.append(r)
                        print(json.dumps(r), flush=True)
            if "local" in cases:
                r = one_case(url, size_of(args.local_size), "local", work, server.pid)
                results.append(r)
                print(json.dumps(r), flush=True)
    finally:
        server.terminate()
        server.wait()
    print("\n| rows | gates | wall s | run CPU s | event loop thread: CPU s | its wait for a CPU s | server CPU s "
          "| peak RSS MiB (largest process) | peak RSS MiB (all its processes) | near-duplicates rewritten |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['rows']:,} | {r['case']} | {r['wall_s']} | {r['run_cpu_s']} | {r['loop_cpu_s']} | {r['loop_wait_s']} | {r['server_cpu_s']} "
              f"| {r['peak_rss_mib']} | {r['tree_rss_mib']} | {r['near_duplicates']:,} |")
    if args.repeat > 1:
        print("\nMedians of", args.repeat, "runs each:\n\n| rows | gates | wall s | run CPU s | event loop CPU s | wall / off "
              "| median of each round's wall / off |\n|---:|---|---:|---:|---:|---:|---:|")
        for size in sorted({r["rows"] for r in results}):
            off = [r["wall_s"] for r in results if r["rows"] == size and r["case"] == "off"]
            for case in dict.fromkeys(r["case"] for r in results if r["rows"] == size):
                walls = [r["wall_s"] for r in results if r["rows"] == size and r["case"] == case]
                cpus = [r["run_cpu_s"] for r in results if r["rows"] == size and r["case"] == case]
                loop = [r["loop_cpu_s"] for r in results if r["rows"] == size and r["case"] == case]
                ratio = f"{statistics.median(walls) / statistics.median(off):.2f}x" if off else ""
                # each run against the off run of its own round (seconds apart; the machine's speed drifts between rounds)
                paired = [w / o for w, o in zip(walls, off, strict=False)] if off and len(off) == len(walls) else []
                pair = f"{statistics.median(paired):.2f}x" if paired else ""
                print(f"| {size:,} | {case} | {statistics.median(walls):.2f} | {statistics.median(cpus):.1f} | {statistics.median(loop):.1f} | {ratio} | {pair} |")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "gates.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
