"""2-D maps of the embeddings: UMAP (umap-learn) and t-SNE (openTSNE), both on cosine distance.

Both are fitted on one uniform random sample of at most ``max_points`` rows (balanced across
datasets when several are compared, each keeping at most its share) and only that sample is
drawn; the page says so. With a seed, UMAP runs single-threaded (umap-learn's rule for
reproducible layouts) for 200 epochs (its own default above 10k points), on the *exact* cosine
k-nearest-neighbour graph computed here by blocked matrix products (``exact_knn``) instead of
umap-learn's approximate NN-descent: exact is at least as good a graph, and at 10,000 points it
takes about 1 s against about 20 s for NN-descent with its compilation (UMAP on 10k: 29 s → 8 s).
openTSNE is seeded, uses every core, and keeps its defaults (perplexity 30, 250
early-exaggeration + 500 iterations). ``build_maps`` does this for a report's datasets together.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .progress import Meters
from .results import Analysis, Log, Maps


def n_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def balanced_sample(sizes: Sequence[int], max_points: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per dataset, sorted row indices to draw: all rows when they fit, else fair shares of max_points.

    Datasets smaller than their share keep every row; the rest of the budget is shared evenly
    among the larger ones (water-filling)."""
    sizes = list(sizes)
    quota = [0] * len(sizes)
    left = max_points
    open_ = sorted(range(len(sizes)), key=lambda i: sizes[i])
    while open_:
        share = left // len(open_)
        i = open_[0]
        if sizes[i] <= share:
            quota[i] = sizes[i]
            left -= sizes[i]
            open_.pop(0)
        else:
            for j in open_:
                quota[j] = share
            left -= share * len(open_)
            for j in open_[: left]:  # the remainder, one each
                quota[j] += 1
            break
    out = []
    for n, q in zip(sizes, quota, strict=True):
        out.append(np.arange(n) if q >= n else np.sort(rng.choice(n, size=q, replace=False)))
    return out


def exact_knn(X: np.ndarray, k: int, block_bytes: int = 96 << 20) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by cosine distance (1 - cos), each row's own index first (as
    umap-learn expects): indices (n, k) int64 and distances (n, k) float32, nearest first.
    Blocked, so memory stays near ``block_bytes`` whatever n; ties are broken by the lower index."""
    n = len(X)
    k = int(min(k, n))
    Xn = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(Xn, axis=1, keepdims=True)
    Xn = Xn / np.where(norms > 0, norms, 1.0)
    idx = np.empty((n, k), np.int64)
    dist = np.empty((n, k), np.float32)
    block = max(1, min(n, block_bytes // max(1, 4 * n)))
    for s in range(0, n, block):
        S = Xn[s : s + block] @ Xn.T
        rows = np.arange(s, min(n, s + block))
        S[rows - s, rows] = np.inf  # a row is its own nearest neighbour, even among duplicates
        part = np.argpartition(-S, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(rows), 1))
        sims = np.take_along_axis(S, part, 1)
        order = np.lexsort((part, -sims), axis=1)  # by similarity, then index
        idx[s : s + block] = np.take_along_axis(part, order, 1)
        d = 1.0 - np.take_along_axis(sims, order, 1)
        d[:, 0] = 0.0
        dist[s : s + block] = np.clip(d, 0.0, 2.0)
    return idx, dist


def umap_2d(X: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    n = len(X)
    t0 = time.perf_counter()
    k = int(min(15, max(2, n - 1)))
    knn_idx, knn_dist = exact_knn(X, k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import umap

        model = umap.UMAP(
            n_neighbors=k, min_dist=0.1, metric="cosine", random_state=seed, low_memory=True,
            init="spectral" if n > k + 2 else "random", n_jobs=1, n_epochs=200,
            precomputed_knn=(knn_idx, knn_dist, None),
        )
        Y = model.fit_transform(X)
    info = {"method": "UMAP (umap-learn)", "n_neighbors": k, "neighbours": "exact (cosine)", "min_dist": 0.1, "n_epochs": 200,
            "metric": "cosine", "seed": seed, "points": n, "seconds": round(time.perf_counter() - t0, 2)}
    return np.asarray(Y, dtype=np.float32), info


TSNE_EVERY = 50  # t-SNE iterations between progress reports


def tsne_2d(X: np.ndarray, seed: int, progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """t-SNE of ``X``; ``progress(iterations done, iterations in all)`` every ``TSNE_EVERY`` iterations."""
    n = len(X)
    t0 = time.perf_counter()
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0 - 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from openTSNE import TSNE

        kw: dict[str, Any] = {}
        if progress is not None:
            total = 250 + 500  # openTSNE's early-exaggeration and main phases (its defaults, kept)
            done = [0]

            def report(iteration: int, error: float, embedding: Any) -> bool:
                done[0] = min(total, done[0] + TSNE_EVERY)
                progress(done[0], total)
                return False  # never stop early

            kw = {"callbacks": report, "callbacks_every_iters": TSNE_EVERY}
        model = TSNE(
            n_components=2, perplexity=perplexity, metric="cosine", initialization="pca",
            random_state=seed, n_jobs=n_jobs(), verbose=False,
            neighbors="exact" if n < 1000 else "auto",
            negative_gradient_method="bh" if n < 10_000 else "fft", **kw,
        )
        Y = np.asarray(model.fit(X))
    info = {"method": "t-SNE (openTSNE)", "perplexity": round(perplexity, 2), "metric": "cosine", "seed": seed,
            "points": n, "seconds": round(time.perf_counter() - t0, 2)}
    return Y.astype(np.float32), info


def project(
    X: np.ndarray, seed: int, log: Callable[[str], None] | None = None, methods: Sequence[str] = ("umap", "tsne"),
    meters: Meters | None = None,
) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Run each method on X; a failure is reported, not raised (the rest of the report stands).
    ``meters``: progress for t-SNE's iterations (``analytics.progress``)."""
    log = log or (lambda m: None)
    out: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
    if len(X) < 5:
        log("  maps skipped: fewer than 5 points")
        return out
    for m in methods:
        t0 = time.perf_counter()
        meter = None
        try:
            if m == "umap":
                k = int(min(15, max(2, len(X) - 1)))
                log(f"  UMAP on {len(X):,} points: exact {k}-nearest-neighbour graph, then 200 epochs (single-threaded: seeded)")
                out[m] = umap_2d(X, seed)
            else:
                log(f"  t-SNE on {len(X):,} points: neighbours and affinities, then 750 iterations on {n_jobs()} core(s)")
                meter = meters("t-SNE", "iterations") if meters is not None else None
                out[m] = tsne_2d(X, seed, progress=meter)
        except Exception as e:  # noqa: BLE001 - a map that fails must not sink the report
            out[m] = (np.zeros((0, 2), np.float32), {"error": f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"})
            if meter is not None:
                meter.close()
            log(f"  {m} failed: {out[m][1]['error']}")
            continue
        log(f"  {'UMAP' if m == 'umap' else 't-SNE'} done in {time.perf_counter() - t0:.1f} s")
    return out


def build_maps(analyses: Sequence[Analysis], seed: int, map_points: int, log: Log, meters: Meters | None = None) -> Maps:
    """Both maps of the datasets together, on a balanced sample of at most ``map_points`` rows, drawn
    from the rows each dataset embedded (all of them, or its embedding sample: a uniform sample of a
    uniform sample is a uniform sample of the dataset). ``Maps.rows`` holds dataset rows."""
    rng = np.random.default_rng([seed, 10_007])
    picks = balanced_sample([a.n_embedded for a in analyses], map_points, rng)
    rows = [(d, int(r)) for d, (a, idx) in enumerate(zip(analyses, picks, strict=True)) for r in a.rows_of(idx)]
    X = np.concatenate([a.X[idx] for a, idx in zip(analyses, picks, strict=True)]) if rows else np.zeros((0, 1), np.float32)
    log(f"maps on {len(rows):,} points")
    res = project(X, seed, log, meters=meters)
    return Maps(
        rows=rows, coords={k: v[0] for k, v in res.items()}, info={k: v[1] for k, v in res.items()},
        sizes=[len(p) for p in picks], totals=[a.ds.n for a in analyses],
    )
