"""Nearest neighbours by cosine: exact (blockwise matrix products) up to ``exact_limit`` rows, sampled
exact search beyond it (the formulas and estimators are in the package docstring)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .embedding import sample_indices


@dataclass
class NNResult:
    method: str  # "exact" | "sampled"
    n: int
    threshold: float
    query_rows: np.ndarray  # rows whose neighbour was computed (all rows when exact)
    nn_sim: np.ndarray  # max cosine to another row, per query row
    nn_index: np.ndarray  # that row
    pairs_above: float  # near-duplicate pairs (exact count, or estimate when sampled)
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nn_distance(self) -> np.ndarray:
        return 1.0 - self.nn_sim

    def summary(self) -> dict[str, Any]:
        d = self.nn_distance.astype(np.float64)
        q = len(self.query_rows)
        rate = float((self.nn_sim >= self.threshold).mean()) if q else float("nan")
        out = {
            "method": self.method,
            "description": self.description,
            "queries": q,
            "threshold": self.threshold,
            "mean_nn_distance": float(d.mean()) if q else float("nan"),
            "median_nn_distance": float(np.median(d)) if q else float("nan"),
            "p05_nn_distance": float(np.quantile(d, 0.05)) if q else float("nan"),
            "near_duplicate_rate": rate,
            "near_duplicate_pairs": self.pairs_above,
        }
        if self.method == "sampled" and q:
            out["near_duplicate_rate_ci95"] = list(wilson_interval(int((self.nn_sim >= self.threshold).sum()), q))
            out["mean_nn_distance_se"] = float(d.std(ddof=1) / math.sqrt(q)) if q > 1 else float("nan")
        out.update(self.extra)
        return out


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency; numpy fallback for safety
        return None
    return torch


def nearest_neighbours(
    X: np.ndarray,
    threshold: float = 0.95,
    exact_limit: int = 100_000,
    rng: np.random.Generator | None = None,
    block: int = 4096,
) -> NNResult:
    """Nearest neighbour (max cosine to another row) per row; exact or sampled (module docstring)."""
    X = np.ascontiguousarray(X, dtype=np.float32)
    n = len(X)
    if n < 2:
        z = np.zeros(0, dtype=np.float32)
        return NNResult("exact", n, threshold, np.arange(0), z, z.astype(np.int64), 0.0, "fewer than 2 rows")
    if n <= exact_limit:
        sim, idx, pairs = _nn_exact(X, threshold, block)
        return NNResult(
            "exact", n, threshold, np.arange(n), sim, idx, float(pairs),
            f"exact: every row against all {n:,} rows (blockwise matrix products)",
        )
    rng = rng or np.random.default_rng(0)
    q = max(1000, min(n, exact_limit * exact_limit // (2 * n)))
    rows = sample_indices(n, q, rng)
    sim, idx, counts = _nn_queries(X, rows, threshold, block)
    est_pairs = float(n / (2 * q) * counts.sum())
    return NNResult(
        "sampled", n, threshold, rows, sim, idx, est_pairs,
        f"sampled exact search: {q:,} uniform random rows against all {n:,} rows (unbiased estimates)",
    )


def _nn_exact(X: np.ndarray, threshold: float, block: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Upper triangle of blocks: S = X_a X_bᵀ once per pair of blocks (n²d/2 multiply-adds).

    Only maxima are kept per block (row and column maxima are cheap contiguous reductions);
    each row remembers the block where its maximum was found, and a last pass recomputes the
    argmax inside that block. Pairs ≥ threshold are counted only in rows whose maximum reaches
    it (near-duplicates are rare, so this costs little)."""
    torch = _torch()
    n = len(X)
    T = torch.from_numpy(X) if torch else X
    best = np.full(n, -np.inf, dtype=np.float32)
    best_block = np.zeros(n, dtype=np.int64)
    pairs = 0
    starts = list(range(0, n, block))
    buf = torch.empty((block, block), dtype=torch.float32) if torch else None  # reused: no page faults per block
    for a in starts:
        A = T[a : a + block]
        na = A.shape[0]
        for b in starts[starts.index(a):]:
            Bm = T[b : b + block]
            if torch:
                S = buf[:na, : Bm.shape[0]]
                torch.mm(A, Bm.T, out=S)
            else:
                S = A @ Bm.T
            nb = S.shape[1]
            if a == b:
                if torch:
                    S.fill_diagonal_(-np.inf)
                else:
                    np.fill_diagonal(S, -np.inf)
            rmax = _np(S.amax(1) if torch else S.max(axis=1))
            hot = np.nonzero(rmax >= threshold)[0]
            if len(hot):
                sub = _np(S[torch.from_numpy(hot)] if torch else S[hot])
                if a == b:
                    sub = np.where(np.arange(nb)[None, :] > hot[:, None], sub, -np.inf)
                pairs += int(np.count_nonzero(sub >= threshold))
            sl = slice(a, a + na)
            upd = rmax > best[sl]
            best[sl] = np.where(upd, rmax, best[sl])
            best_block[sl] = np.where(upd, b, best_block[sl])
            if a != b:
                cmax = _np(S.amax(0) if torch else S.max(axis=0))
                sl = slice(b, b + nb)
                upd = cmax > best[sl]
                best[sl] = np.where(upd, cmax, best[sl])
                best_block[sl] = np.where(upd, a, best_block[sl])
    # argmax pass: each row against the block that held its maximum
    arg = np.zeros(n, dtype=np.int64)
    for b in np.unique(best_block):
        rows = np.nonzero(best_block == b)[0]
        for r0 in range(0, len(rows), block):
            rr = rows[r0 : r0 + block]
            S = _np(T[torch.from_numpy(rr)] @ T[b : b + block].T) if torch else X[rr] @ X[b : b + block].T
            S = S.copy()
            inside = (rr >= b) & (rr < b + S.shape[1])
            S[np.nonzero(inside)[0], rr[inside] - b] = -np.inf
            arg[rr] = S.argmax(axis=1) + b
    return best, arg, pairs


def _np(t) -> np.ndarray:
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


def _nn_queries(X: np.ndarray, rows: np.ndarray, threshold: float, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each query row against every row (self excluded): max, argmax, and count ≥ threshold."""
    torch = _torch()
    T = torch.from_numpy(X) if torch else X
    q = len(rows)
    best = np.full(q, -np.inf, dtype=np.float32)
    arg = np.zeros(q, dtype=np.int64)
    counts = np.zeros(q, dtype=np.int64)
    for a in range(0, q, block):
        rq = rows[a : a + block]
        A = T[torch.from_numpy(rq)] if torch else X[rq]
        sl = slice(a, a + len(rq))
        for b in range(0, len(X), block):
            S = A @ T[b : b + block].T
            inside = np.nonzero((rq >= b) & (rq < b + S.shape[1]))[0]
            if len(inside):
                if torch:
                    S[torch.from_numpy(inside), torch.from_numpy(rq[inside] - b)] = -np.inf
                else:
                    S[inside, rq[inside] - b] = -np.inf
            if torch:
                v_t, j_t = S.max(1)
                v, j = v_t.numpy(), j_t.numpy()
            else:
                j = S.argmax(axis=1)
                v = S[np.arange(len(S)), j]
            hot = np.nonzero(v >= threshold)[0]
            if len(hot):
                sub = _np(S[torch.from_numpy(hot)] if torch else S[hot])
                counts[a + hot] += np.count_nonzero(sub >= threshold, axis=1)
            upd = v > best[sl]
            best[sl] = np.where(upd, v, best[sl])
            arg[sl] = np.where(upd, j + b, arg[sl])
    return best, arg, counts
