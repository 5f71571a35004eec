"""Semantic dedup benchmark: NearDuplicateIndex.admit() throughput, peak memory and decision
quality at 100k and 1M rows of synthetic 384-dimensional unit vectors.

    python benchmarks/bench_dedup.py [--rows 100000 1000000] [--batches 5 1000] [--check 2000]
    python benchmarks/bench_dedup.py --sweep 100000      # the HNSW parameter table (recall vs speed)
    python benchmarks/bench_dedup.py --rows 1000000 --batches 5 --params '{"threads": 2}'   # one case, other settings

The vectors are precomputed (no embedder): a GSM8K-like mixture made to match the real
embeddings' statistics (a shared direction, topics, leaves of ~50 rows, anisotropic noise with the
real data's PCA spectrum; nearest-neighbour cosine median ~0.73, as all-MiniLM-L6-v2 gives on
GSM8K train) with 2% planted near-copies of an earlier row (cosine ~0.85..0.997), generated
16,384 rows at a time so the generator does not dominate memory. Only the admit() calls are timed.

Each (rows, batch) case runs in its own process, so peak RSS (ru_maxrss) is that case's alone;
"seed" is add() of every row at once (a resumed run seeding its index from the vector log).
``--check N`` compares the finished index's max-cosine decisions with brute force on N planted
near-duplicates of accepted rows plus N fresh rows. Results: a table on stdout and
benchmarks/out/dedup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth.core.neardup import DEFAULT_NEAR_DUP_COSINE, NearDuplicateIndex  # noqa: E402

DIM = 384
CHUNK = 16384


def _unit(A: np.ndarray) -> np.ndarray:
    return A / np.linalg.norm(A, axis=-1, keepdims=True)


def clustered(n: int, dim: int = DIM, seed: int = 0, chunk: int = CHUNK, rows_per_leaf: int = 50, dup_frac: float = 0.02) -> Iterator[np.ndarray]:
    """``n`` GSM8K-like unit vectors (float16-rounded, as stored), ``chunk`` rows at a time (module docstring)."""
    rng = np.random.default_rng(seed)
    i = np.arange(dim)
    spectrum = (i + 10.0) ** -1.2  # fits the PCA spectrum of MiniLM on GSM8K: 25/58/77% of variance in 10/50/100 PCs
    std = np.sqrt(spectrum / spectrum.sum()).astype(np.float32)
    n_leaves = max(20, n // rows_per_leaf)
    n_topics = max(4, int(n_leaves**0.5))
    shared = _unit(rng.standard_normal(dim).astype(np.float32))
    topics = rng.standard_normal((n_topics, dim), dtype=np.float32) * std
    leaves = rng.standard_normal((n_leaves, dim), dtype=np.float32) * std
    base = (np.sqrt(0.39) * shared + np.sqrt(0.15) * topics[rng.integers(0, n_topics, n_leaves)] + np.sqrt(0.17) * leaves).astype(np.float32)
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        noise = rng.uniform(0.3, 0.5, m).astype(np.float32)[:, None]
        X = base[rng.integers(0, n_leaves, m)] + np.sqrt(noise) * (rng.standard_normal((m, dim), dtype=np.float32) * std)
        dup = np.flatnonzero(rng.random(m) < dup_frac)
        dup = dup[dup > 0]
        src = (rng.random(len(dup)) * dup).astype(np.int64)  # an earlier row of the chunk
        X[dup] = _unit(X[src]) + rng.uniform(0.003, 0.02, (len(dup), 1)).astype(np.float32) * rng.standard_normal((len(dup), dim), dtype=np.float32)
        yield _unit(X).astype(np.float16).astype(np.float32)


def near_copies(src: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Noisy copies of ``src``: cosines to their source spread over ~0.80..0.997, across any threshold of interest."""
    noise = rng.uniform(0.003, 0.026, (len(src), 1)).astype(np.float32) * rng.standard_normal(src.shape, dtype=np.float32)
    return _unit(src + noise).astype(np.float32)


def rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def exact_max(Q: np.ndarray, rows: int, keep: np.ndarray | None) -> np.ndarray:
    """Brute-force max cosine of ``Q`` to the accepted rows of the stream (regenerated chunk by chunk)."""
    best = np.full(len(Q), -1.0, dtype=np.float32)
    a = 0
    for X in clustered(rows):
        if keep is not None:
            X = X[keep[a : a + len(X)]]
        a += CHUNK
        if len(X):
            np.maximum(best, (Q @ X.T).max(axis=1), out=best)
    return best


def decisions(approx: np.ndarray, exact: np.ndarray, threshold: float) -> dict:
    pos = exact >= threshold
    return {
        "queries": int(len(exact)),
        "agree": float(((approx >= threshold) == pos).mean()),
        "positives": int(pos.sum()),
        "missed": int((pos & (approx < threshold)).sum()),
        "false_pos": int((~pos & (approx >= threshold)).sum()),
        "max_abs_err_pos": float(np.abs(approx - exact)[pos].max()) if pos.any() else 0.0,
    }


def one(rows: int, batch: str, threshold: float, check: int, params: dict) -> dict:
    """One case in this process: admit every row in batches of ``batch`` (or add them all: "seed")."""
    base_rss = rss_now()
    index = NearDuplicateIndex(DIM, threshold, **params)
    keep, spent = np.zeros(rows, dtype=bool), 0.0
    a = 0
    for X in clustered(rows):
        if batch == "seed":
            t0 = time.perf_counter()
            index.add(X)
            spent += time.perf_counter() - t0
            keep[a : a + len(X)] = True
        else:
            b = int(batch)
            for i in range(0, len(X), b):
                t0 = time.perf_counter()
                k, _ = index.admit(X[i : i + b])
                spent += time.perf_counter() - t0
                keep[a + i : a + i + len(k)] = k
        a += len(X)
        if a * 10 // rows != (a - len(X)) * 10 // rows:  # progress to stderr every 10%: what a killed run leaves
            print(f"{a:,} rows, {spent:.1f} s in admit, {a / spent:,.0f} rows/s, {len(index):,} kept, RSS {rss_now() / 2**20:.0f} MiB", file=sys.stderr, flush=True)
    out = {
        "rows": rows, "batch": batch, "seconds": spent, "rows_per_s": rows / spent, "kept": int(keep.sum()),
        "rejected": int(rows - keep.sum()), "index_mib": index.memory_bytes / 2**20, "peak_rss_mib": peak_rss() / 2**20,
        "base_rss_mib": base_rss / 2**20, "rss_end_mib": rss_now() / 2**20, "threshold": threshold, "params": params,
    }
    if check:
        rng = np.random.default_rng(1)
        kept_ids = np.flatnonzero(keep)
        picks = np.sort(rng.choice(kept_ids, check, replace=False))
        src = np.zeros((check, DIM), dtype=np.float32)
        a = 0
        for X in clustered(rows):  # fetch the picked rows from the regenerated stream
            sel = (picks >= a) & (picks < a + len(X))
            src[sel] = X[picks[sel] - a]
            a += len(X)
        fresh = next(iter(clustered(check, seed=7)))  # another stream: unrelated rows
        Q = np.concatenate([near_copies(src, rng), fresh])
        approx = np.concatenate([index.max_cosine(Q[i : i + 5]) for i in range(0, len(Q), 5)])
        out["check"] = decisions(approx, exact_max(Q, rows, None if batch == "seed" else keep), threshold)
    return out


def sweep(rows: int, threshold: float, queries: int, dtypes: list[str], graphs: list[tuple[int, int]]) -> list[dict]:
    """HNSW parameters against brute force: build rate, query rate (batches of 5), decision agreement."""
    rng = np.random.default_rng(3)
    B = np.concatenate(list(clustered(rows)))
    src = B[rng.integers(0, rows, queries)]
    fresh = next(iter(clustered(queries, seed=7)))
    Q = np.concatenate([near_copies(src, rng), fresh])
    exact = np.concatenate([(Q[i : i + 1024] @ B.T).max(axis=1) for i in range(0, len(Q), 1024)])
    out = []
    for dtype in dtypes:
        for conn, efa in graphs:
            index = NearDuplicateIndex(DIM, threshold, dtype=dtype, connectivity=conn, expansion_add=efa)
            t0 = time.perf_counter()
            index.add(B)
            build = time.perf_counter() - t0
            for efs in (32, 64, 128, 256):
                index.expansion_search = efs
                t0 = time.perf_counter()
                approx = np.concatenate([index.max_cosine(Q[i : i + 5]) for i in range(0, len(Q), 5)])
                q = time.perf_counter() - t0
                r = {"dtype": dtype, "connectivity": conn, "expansion_add": efa, "expansion_search": efs,
                     "build_rows_per_s": rows / build, "query_rows_per_s": len(Q) / q, "index_mib": index.memory_bytes / 2**20,
                     **decisions(approx, exact, threshold)}
                out.append(r)
                print(f"| {dtype} | {conn} | {efa} | {efs} | {r['build_rows_per_s']:,.0f} | {r['query_rows_per_s']:,.0f} | {r['index_mib']:.0f} | "
                      f"{r['agree']:.4f} | {r['missed']}/{r['positives']} | {r['false_pos']} |", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--batches", nargs="+", default=["5", "1000", "seed"], help="rows per admit() call, or 'seed' for add()")
    ap.add_argument("--threshold", type=float, default=DEFAULT_NEAR_DUP_COSINE)
    ap.add_argument("--check", type=int, default=2000, help="near-duplicate and fresh queries checked against brute force (0: none)")
    ap.add_argument("--params", type=json.loads, default={}, help='NearDuplicateIndex keyword arguments as JSON, e.g. \'{"dtype": "f32"}\'')
    ap.add_argument("--sweep", type=int, metavar="ROWS", help="print the HNSW parameter table at ROWS rows instead")
    ap.add_argument("--sweep-dtypes", nargs="+", default=["f16"], help="f16 or f32 (faiss: scalar-quantised float16 or flat float32)")
    ap.add_argument("--sweep-graphs", nargs="+", default=["12:48", "16:64", "24:96", "32:128"], help="connectivity:expansion_add pairs")
    ap.add_argument("--one", nargs=2, metavar=("ROWS", "BATCH"), help="run one case in this process (JSON on stdout)")
    args = ap.parse_args()

    if args.one:
        print(json.dumps(one(int(args.one[0]), args.one[1], args.threshold, args.check, args.params)))
        return
    if args.sweep:
        print(f"HNSW parameters at {args.sweep:,} rows, threshold {args.threshold}, queries in batches of 5")
        print("| dtype | connectivity | expansion_add | expansion_search | build rows/s | query rows/s | index MiB | agree | missed/positives | false pos |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        graphs = [(int(g.split(":")[0]), int(g.split(":")[1])) for g in args.sweep_graphs]
        sweep(args.sweep, args.threshold, 2000, args.sweep_dtypes, graphs)
        return

    results = []
    print(f"threshold {args.threshold}, params {args.params or 'defaults'}; each case in its own process")
    print("| rows | batch | admit s | rows/s | rejected | index MiB | peak RSS MiB | RSS before MiB | check: agree, missed/positives, false pos |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for rows in args.rows:
        for batch in args.batches:
            cmd = [sys.executable, __file__, "--one", str(rows), batch, "--threshold", str(args.threshold),
                   "--check", str(args.check), "--params", json.dumps(args.params)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
            results.append(r)
            c = r.get("check")
            chk = f"{c['agree']:.4f}, {c['missed']}/{c['positives']}, {c['false_pos']}" if c else "-"
            print(f"| {rows:,} | {batch} | {r['seconds']:.1f} | {r['rows_per_s']:,.0f} | {r['rejected']:,} | {r['index_mib']:.0f} | "
                  f"{r['peak_rss_mib']:.0f} | {r['base_rss_mib']:.0f} | {chk} |", flush=True)
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dedup.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
