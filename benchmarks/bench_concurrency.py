"""Concurrency-efficiency benchmark: the real product path (LLMClient + a transport over HTTP:
the native OpenAI-compatible client, ``--transport http``, and/or litellm, ``--transport litellm``)
against tests/faultserver.py with a fixed latency.

efficiency = achieved requests/s / (concurrency / latency)

The server runs in its own process (so it does not share the client's GIL); the client is
one asyncio process, as in the product. Each level runs a warm-up, then ``--seconds`` of
back-to-back calls (``concurrency`` callers, each issuing calls one after another), and the
rate is measured over the steady window only. The server's counters are checked against the
client's (requests sent == requests received).

    python benchmarks/bench_concurrency.py                       # 64, 256, 1024 at 200 ms, http then litellm
    python benchmarks/bench_concurrency.py --levels 256 --transport http --profile

Results: a table on stdout and benchmarks/out/concurrency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
TARGET = {256: 0.9}  # from the project's issue: at least 0.9 at concurrency 256


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    port_file = Path(tempfile.mkstemp(prefix="faultserver-port-")[1])
    port_file.write_text("")
    p = subprocess.Popen(
        [sys.executable, "-m", "tests.faultserver", "--latency", str(latency), "--port-file", str(port_file)],
        cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.time() + 30
    while time.time() < deadline:
        txt = port_file.read_text().strip()
        if txt:
            port_file.unlink()
            return p, f"http://127.0.0.1:{txt}/v1"
        if p.poll() is not None:
            raise RuntimeError(f"fault server died: {p.stderr.read().decode()[-500:]}")
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("fault server did not start")


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/_stats", timeout=10) as r:
        return json.loads(r.read())


async def level(url: str, concurrency: int, latency: float, seconds: float, warmup: float, model: str, path: str = "product",
                transport: str = "litellm") -> dict:
    from treesynth.core.config import build_config
    from treesynth.core.llm import LLMClient, LLMRequest, close_transport, load_litellm, make_local_transport

    litellm = load_litellm()
    cfg = build_config(flags={"task": "benchmark", "model": model, "api_base": url, "concurrency": concurrency, "timeout": 60,
                              "transport": transport})
    tr = make_local_transport(cfg)
    assert type(tr).__name__ == {"http": "OpenAIHTTPTransport", "litellm": "LiteLLMTransport"}[transport], type(tr)
    client = LLMClient(tr, concurrency=concurrency, max_retries=0)
    sent = {"n": 0}

    async def bare(req: LLMRequest):
        # the baseline: litellm.acompletion alone, with the arguments LiteLLMTransport passes
        sent["n"] += 1
        return await litellm.acompletion(
            model=model, messages=req.messages, temperature=req.temperature, max_tokens=req.max_tokens, timeout=60,
            num_retries=0, max_retries=0, seed=req.seed, api_base=url,
        )

    call = client.complete if path == "product" else bare
    prompt = 'Write 5 new samples.\nAnswer with JSON: {"samples": [{"question": "...", "answer": "..."}, ...]}'
    counter = {"n": 0}
    done_in_window = {"n": 0}
    t_start = time.perf_counter()
    win_start = t_start + warmup
    win_end = win_start + seconds
    lat: list[float] = []

    async def caller(i: int) -> None:
        while True:
            now = time.perf_counter()
            if now >= win_end:
                return
            counter["n"] += 1
            k = counter["n"]
            req = LLMRequest(
                messages=[{"role": "system", "content": "You write data."}, {"role": "user", "content": f"{prompt}\n(call {k})"}],
                slot=f"b:gen:{k}", seed=k, max_tokens=512,
            )
            t0 = time.perf_counter()
            await call(req)
            t1 = time.perf_counter()
            if win_start <= t1 < win_end:
                done_in_window["n"] += 1
                lat.append(t1 - t0)

    cpu0 = time.process_time()
    before = server_stats(url)
    try:
        await asyncio.gather(*[caller(i) for i in range(concurrency)])
    finally:
        cpu1 = time.process_time()
        await close_transport(tr)
    after = server_stats(url)
    elapsed = time.perf_counter() - t_start
    rate = done_in_window["n"] / seconds
    ideal = concurrency / latency
    lat.sort()
    server_requests = after["requests"] - before["requests"]
    sent_n = client.usage.requests if path == "product" else sent["n"]
    return {
        "path": f"LLMClient + {type(tr).__name__}" if path == "product" else "litellm.acompletion alone",
        "transport": transport if path == "product" else "litellm-bare",
        "concurrency": concurrency,
        "latency_s": latency,
        "window_s": seconds,
        "completed_in_window": done_in_window["n"],
        "req_per_s": rate,
        "ideal_req_per_s": ideal,
        "efficiency": rate / ideal,
        "p50_call_s": lat[len(lat) // 2] if lat else None,
        "p99_call_s": lat[int(len(lat) * 0.99)] if lat else None,
        "client_cpu_s": cpu1 - cpu0,
        "client_cpu_ms_per_call": 1000 * (cpu1 - cpu0) / max(1, sent_n),
        "cpu_bound_ceiling_req_per_s": sent_n / max(1e-9, cpu1 - cpu0),
        "client_requests": sent_n,
        "server_requests": server_requests,
        "server_max_in_flight": after["max_in_flight"],
        "server_cpu_ms_per_call": 1000 * (after["cpu_s"] - before["cpu_s"]) / max(1, server_requests),
        "errors": client.usage.errors,
        "elapsed_s": elapsed,
    }


def run_level(url: str, c: int, args, path: str = "product", transport: str = "litellm") -> dict:
    # a fresh event loop (and litellm client cache) per level, as a fresh process would have
    return asyncio.run(level(url, c, args.latency, args.seconds, args.warmup, args.model, path, transport))


def main() -> None:
    ap = argparse.ArgumentParser(description="concurrency efficiency of the product's LLM path")
    ap.add_argument("--levels", default="64,256,1024")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--seconds", type=float, default=8.0, help="measured window per level")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--model", default="openai/gpt-4o-mini")
    ap.add_argument("--transport", choices=["http", "litellm", "both"], default="both",
                    help="the product's transport to measure: the native http client, litellm, or both (http first; default)")
    ap.add_argument("--profile", action="store_true", help="cProfile the client; benchmarks/out/profile-concurrency-<c>.prof")
    ap.add_argument("--baseline", action="store_true", help="also measure litellm.acompletion alone (no treesynth code) at each level")
    ap.add_argument("--out", default=str(OUT / "concurrency.json"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("OPENAI_API_KEY", "sk-benchmark-not-a-secret")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    srv, url = start_server(args.latency)
    results = []
    transports = ["http", "litellm"] if args.transport == "both" else [args.transport]
    try:
        for tname in transports:
            for c in levels:
                if args.profile:
                    import cProfile
                    import pstats

                    prof = cProfile.Profile()
                    r = prof.runcall(run_level, url, c, args, "product", tname)
                    OUT.mkdir(parents=True, exist_ok=True)
                    path = OUT / f"profile-concurrency-{tname}-{c}.prof"
                    prof.dump_stats(path)
                    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
                else:
                    r = run_level(url, c, args, "product", tname)
                runs = [r] + ([run_level(url, c, args, "litellm")] if args.baseline and tname == "litellm" else [])
                for r in runs:
                    results.append(r)
                    tag = f"[{r['transport']:7s}] " if r["path"].startswith("LLM") else "[litellm alone] "
                    print(
                        f"{tag}concurrency {c:5d}: {r['req_per_s']:8.1f} req/s of {r['ideal_req_per_s']:7.1f} ideal"
                        f" -> efficiency {r['efficiency']:.3f}  (CPU per call: client {r['client_cpu_ms_per_call']:.2f} ms,"
                        f" server {r['server_cpu_ms_per_call']:.2f} ms; one-core ceiling {r['cpu_bound_ceiling_req_per_s']:.0f} req/s;"
                        f" p50 {r['p50_call_s'] or 0:.3f} s, p99 {r['p99_call_s'] or 0:.3f} s;"
                        f" server saw {r['server_requests']} of {r['client_requests']} sent, errors {r['errors']})",
                        flush=True,
                    )
    finally:
        srv.terminate()
        srv.wait(10)
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(), "profile": args.profile}
    try:
        from importlib.metadata import version

        import litellm  # noqa: F401

        meta["litellm"] = version("litellm")
        meta["aiohttp"] = version("aiohttp")
    except Exception:  # noqa: BLE001
        pass
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "levels": results, "target": TARGET}, indent=2))
    for c, t in TARGET.items():
        for tname in transports:
            hit = [r for r in results if r["concurrency"] == c and r.get("transport") == tname]
            if hit:
                print(f"target at {c} ({tname}): efficiency >= {t}: {'met' if hit[0]['efficiency'] >= t else 'MISSED'} ({hit[0]['efficiency']:.3f})")


if __name__ == "__main__":
    main()
