"""TreeSynth against plain sampling on the GSM8K preset, end to end with the real CLI: a run with
``--baseline``, then ``treesynth report``, then the A/B table from its metrics.json (Markdown, for the
README).

    python benchmarks/bench_ab.py --size 60                                # the embedded model (local/smollm2)
    python benchmarks/bench_ab.py --size 60 --server                       # llama-cpp-python's server, same GGUF
    python benchmarks/bench_ab.py --table runs/ab-local                    # the table of a finished A/B again

With ``--server`` it starts ``python -m llama_cpp.server`` on the shipped GGUF (2 threads) and runs
against it with ``--model openai/smollm2 --api-base``. Results: the table on stdout and
benchmarks/out/ab-<local|server>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
TASK = "GSM8K-style grade-school math word problems"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server() -> tuple[subprocess.Popen, str]:
    from treesynth.core.llm.transports.local import find_gguf

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(find_gguf()), "--model_alias", "smollm2",
                             "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2", "--n_ctx", "4096", "--verbose", "False"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start")


def table(run_dir: Path) -> tuple[str, dict]:
    doc = json.loads((run_dir / "metrics.json").read_text())
    ab = doc["ab"]
    lines = ["| metric | TreeSynth | baseline | difference (95% CI) | better |", "|---|---:|---:|---|---|"]
    for r in ab["rows"]:
        ci = f" ({r['ci95'][0]:+.3f} to {r['ci95'][1]:+.3f})" if r["ci95"] else ""
        f = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
        diff = "–" if r["difference"] is None else f"{r['difference']:+.3f}{ci}"
        lines.append(f"| {r['label']} | {f(r['treesynth'])} | {f(r['baseline'])} | {diff} | {'lower' if r['better'] == 'lower' else 'higher'} |")
    for c in ab["cost"]:
        if c["key"] in ("requests", "tokens_out"):
            lines.append(f"| {c['label']} | {c['treesynth']:,} | {c['baseline']:,} | ×{c['ratio']:.2f} | – |")
    lines.append("")
    lines.append(ab["sentence"])
    return "\n".join(lines), doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=60)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--server", action="store_true", help="run against llama-cpp-python's server instead of in-process")
    ap.add_argument("--out", type=Path, help="the run directory (default runs/ab-<local|server>-<size>)")
    ap.add_argument("--table", type=Path, metavar="RUN_DIR", help="only print the table of a finished A/B")
    args = ap.parse_args()
    if args.table:
        print(table(args.table)[0])
        return
    kind = "server" if args.server else "local"
    out = args.out or Path("runs") / f"ab-{kind}-{args.size}"
    flags = ["--preset", "gsm8k", "--size", str(args.size), "--depth", str(args.depth), "--no-ui", "--baseline", "--out", str(out)]
    proc = None
    if args.server:
        proc, url = start_server()
        flags += ["--model", "openai/smollm2", "--api-base", url, "--pivots", "6", "--pivots-per-call", "3", "--samples-per-call", "3"]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    try:
        t0 = time.monotonic()
        exe = str(Path(sys.executable).with_name("treesynth"))
        cmd = [exe, "run", TASK, *flags] if not (out / "config.json").exists() else [exe, "run", "--resume", str(out), "--no-ui", "--baseline"]
        r = subprocess.run(cmd, env=env)
        if r.returncode != 0:
            raise SystemExit(f"treesynth run exited {r.returncode}")
        gen_s = time.monotonic() - t0
    finally:
        if proc is not None:
            proc.terminate()
    subprocess.run([str(Path(sys.executable).with_name("treesynth")), "report", str(out)], env=env, check=True)
    text, doc = table(out)
    print(f"\n{kind}, size {args.size}, depth {args.depth}: run + baseline in {gen_s:.0f} s\n")
    print(text)
    OUT.mkdir(exist_ok=True)
    (OUT / f"ab-{kind}.json").write_text(json.dumps({"size": args.size, "depth": args.depth, "seconds": gen_s, "ab": doc["ab"]}, indent=2))


if __name__ == "__main__":
    main()
