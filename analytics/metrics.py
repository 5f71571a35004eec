"""Diversity and redundancy metrics on sentence embeddings and on tokens (numpy only).

Notation: ``X`` is the n×d matrix of embeddings with unit-norm rows x_i (the report
normalises them), ``s = Σ_i x_i`` the sum vector, ``cos(x_i, x_j) = x_i·x_j``.

Mean pairwise cosine similarity (the TreeSynth paper's "Diversity"; lower = more diverse)::

    mean_sim = Σ_{i≠j} x_i·x_j / (n(n−1)) = (‖s‖² − Σ_i ‖x_i‖²) / (n(n−1))

exact, O(n·d), no n×n matrix (the identity Σ_{i,j} x_i·x_j = ‖s‖²).

Vendi score (Friedman & Dieng 2023) with the cosine kernel K = X Xᵀ::

    VS = exp(−Σ_k λ_k log λ_k),   λ = eigenvalues of K/n

K/n (n×n) and the d×d second-moment matrix C = XᵀX/n share their non-zero eigenvalues, so
VS is computed from C in O(n·d²) (the "dual" form; C is not mean-centred, like K). λ is
renormalised to sum 1 (trace C = mean ‖x_i‖² = 1). VS is the effective number of distinct
items: 1 when every row is the same, n for n ≤ d orthonormal rows. It grows with n, so
``vendi_at_k`` also reports the mean over ``repeats`` uniform samples of k rows, comparable
across datasets of different sizes.

Nearest neighbours: for each row, nn_sim_i = max_{j≠i} x_i·x_j and the NN cosine distance
1 − nn_sim_i; near-duplicate rate = fraction of rows with nn_sim_i ≥ τ; near-duplicate pairs
= #{i<j : x_i·x_j ≥ τ}. Exact up to ``exact_limit`` rows (blockwise Xᵢ Xⱼᵀ over the upper
triangle of blocks: n²d/2 multiply-adds, O(block²) memory). Beyond it the method is
*sampled exact search*: q uniform random query rows are compared exactly against all n rows;
the mean over queries is an unbiased estimate of the mean NN distance, the near-duplicate row
rate is a binomial proportion (95% Wilson interval reported) and the pair count is estimated
as n/(2q)·Σ_queries #{j≠i : x_i·x_j ≥ τ}. q = exact_limit²/(2n), the same work as an exact run
at ``exact_limit`` rows.

Lexical (on a fixed-size uniform sample of texts, so datasets of different sizes compare;
tokens = lower-cased ``\\w+`` words and single punctuation marks; n-grams do not cross texts)::

    distinct-k      = #unique k-grams / #k-grams                       (Li et al. 2016)
    bigram entropy  = −Σ_b p(b) log₂ p(b) over the bigram frequency distribution (bits)
    compression     = len(utf8(T)) / len(zlib.compress(utf8(T), 9)),  T = texts joined by "\\n"

(compression ratio as in Shaib et al. 2024: higher = more repetitive = less diverse).

Leaf coverage (runs; L ranges over the tree's leaves, n_L rows in leaf L, S_L = Σ_{i∈L} x_i)::

    occupancy entropy = −Σ_L p_L ln p_L / ln(#leaves),  p_L = n_L / n   (1 = perfectly even)
    Gini              = Σ_L Σ_M |n_L − n_M| / (2 · #leaves² · mean n_L)  (0 = even, →1 = concentrated)
    empty leaves      = #{L : n_L = 0};  thin leaves = #{L : 0 < n_L < ½·target_L}
    within-leaf sim   = Σ_L (‖S_L‖² − Σ_{i∈L}‖x_i‖²) / Σ_L n_L(n_L − 1)
    between-leaf sim  = (‖s‖² − Σ_L ‖S_L‖²) / (n² − Σ_L n_L²)

Within is the mean cosine over pairs in the same leaf, between over pairs in different
leaves; within > between means the leaves are distinct regions of embedding space. Empty
leaves count in ``#leaves`` for the entropy and Gini. The same numbers are given per
top-level branch (its own leaves), and the branch×branch matrix of mean cross-pair cosine
S_a·S_b / (n_a n_b) (diagonal: the branch's own mean pairwise similarity).
"""

from __future__ import annotations

import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

# ---------------------------------------------------------------------------
# helpers


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _sum64(X: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.zeros(X.shape[1], dtype=np.float64)
    for a in range(0, len(X), chunk):
        out += X[a : a + chunk].sum(axis=0, dtype=np.float64)
    return out


def _sq_norms(X: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", X, X, dtype=np.float64)


def sample_indices(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted uniform sample of min(n, k) distinct row indices."""
    if k >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


# ---------------------------------------------------------------------------
# embedding metrics


def mean_pairwise_cosine(X: np.ndarray) -> float:
    """Mean of x_i·x_j over ordered pairs i≠j, exact in O(n·d) (see module docstring)."""
    n = len(X)
    if n < 2:
        return float("nan")
    s = _sum64(X)
    return float((s @ s - _sq_norms(X).sum()) / (n * (n - 1)))


def second_moment(X: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """C = XᵀX / n (d×d, float64), accumulated in chunks."""
    d = X.shape[1]
    C = np.zeros((d, d), dtype=np.float64)
    for a in range(0, len(X), chunk):
        B = np.asarray(X[a : a + chunk], dtype=np.float64)
        C += B.T @ B
    return C / max(len(X), 1)


def entropy_exp(eigs: np.ndarray) -> float:
    lam = np.clip(np.asarray(eigs, dtype=np.float64), 0.0, None)
    total = lam.sum()
    if total <= 0:
        return float("nan")
    lam = lam / total
    lam = lam[lam > 1e-15]
    return float(np.exp(-(lam * np.log(lam)).sum()))


def vendi_score(X: np.ndarray) -> float:
    """Vendi score with the cosine kernel, via the d×d dual (see module docstring)."""
    if len(X) == 0:
        return float("nan")
    return entropy_exp(np.linalg.eigvalsh(second_moment(X)))


def vendi_at_k(X: np.ndarray, k: int, rng: np.random.Generator, repeats: int = 5) -> dict[str, float]:
    """Vendi score of uniform samples of k rows: mean and standard deviation over ``repeats``."""
    n = len(X)
    if n <= k:
        return {"value": vendi_score(X), "std": 0.0, "k": n, "repeats": 1}
    vals = [vendi_score(X[sample_indices(n, k, rng)]) for _ in range(repeats)]
    return {"value": float(np.mean(vals)), "std": float(np.std(vals)), "k": k, "repeats": repeats}


# ---------------------------------------------------------------------------
# nearest neighbours


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


# ---------------------------------------------------------------------------
# lexical

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def ngrams(tokens: Sequence[str], k: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1)]


def distinct_n(token_lists: Sequence[Sequence[str]], k: int) -> float:
    total = 0
    uniq: set[tuple[str, ...]] = set()
    for toks in token_lists:
        g = ngrams(toks, k)
        total += len(g)
        uniq.update(g)
    return len(uniq) / total if total else float("nan")


def ngram_entropy(token_lists: Sequence[Sequence[str]], k: int = 2) -> float:
    c: Counter = Counter()
    for toks in token_lists:
        c.update(ngrams(toks, k))
    total = sum(c.values())
    if not total:
        return float("nan")
    p = np.fromiter(c.values(), dtype=np.float64, count=len(c)) / total
    return float(-(p * np.log2(p)).sum())


def compression_ratio(texts: Sequence[str]) -> float:
    raw = "\n".join(texts).encode("utf-8")
    if not raw:
        return float("nan")
    return len(raw) / len(zlib.compress(raw, 9))


def lexical_metrics(texts: Sequence[str]) -> dict[str, float]:
    toks = [tokenize(t) for t in texts]
    return {
        "distinct_1": distinct_n(toks, 1),
        "distinct_2": distinct_n(toks, 2),
        "distinct_3": distinct_n(toks, 3),
        "bigram_entropy": ngram_entropy(toks, 2),
        "compression_ratio": compression_ratio(texts),
        "mean_tokens": float(np.mean([len(t) for t in toks])) if toks else float("nan"),
    }


# ---------------------------------------------------------------------------
# leaf coverage


def gini(sizes: Sequence[float]) -> float:
    """Gini coefficient of non-negative sizes (0 = all equal); sorted-rank formula, O(k log k)."""
    x = np.sort(np.asarray(sizes, dtype=np.float64))
    k = len(x)
    if k == 0 or x.sum() <= 0:
        return float("nan")
    ranks = np.arange(1, k + 1)
    return float((2.0 * (ranks * x).sum()) / (k * x.sum()) - (k + 1.0) / k)


def occupancy_entropy(sizes: Sequence[float]) -> float:
    """−Σ p ln p / ln(#leaves) over all leaves (empty ones included); 1 = even."""
    x = np.asarray(sizes, dtype=np.float64)
    k = len(x)
    if k < 2 or x.sum() <= 0:
        return float("nan")
    p = x[x > 0] / x.sum()
    return float(-(p * np.log(p)).sum() / math.log(k))


def group_sums(X: np.ndarray, groups: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group g in 0..k−1: sum vector S_g (float64), count n_g and Σ‖x_i‖². Rows with g<0 ignored."""
    d = X.shape[1]
    S = np.zeros((k, d), dtype=np.float64)
    cnt = np.zeros(k, dtype=np.int64)
    sq = np.zeros(k, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    ok = groups >= 0
    if not ok.any():
        return S, cnt, sq
    order = np.argsort(groups[ok], kind="stable")
    rows = np.nonzero(ok)[0][order]
    g_sorted = groups[rows]
    starts = np.r_[0, np.nonzero(np.diff(g_sorted))[0] + 1]
    ids = g_sorted[starts]
    chunk = 65536
    for a in range(0, len(rows), chunk):  # chunked to bound the float64 copy
        r = rows[a : a + chunk]
        g = g_sorted[a : a + chunk]
        st = np.r_[0, np.nonzero(np.diff(g))[0] + 1]
        S[g[st]] += np.add.reduceat(X[r].astype(np.float64), st, axis=0)
    cnt[ids] = np.diff(np.r_[starts, len(rows)])
    np.add.at(sq, g_sorted, _sq_norms(X[rows]))
    return S, cnt, sq


def within_between(S: np.ndarray, cnt: np.ndarray, sq: np.ndarray) -> tuple[float, float]:
    """Mean cosine over same-group pairs and over different-group pairs (module docstring)."""
    n = cnt.sum()
    within_pairs = float((cnt * (cnt - 1)).sum())
    within = float(((S * S).sum(axis=1) - sq).sum() / within_pairs) if within_pairs > 0 else float("nan")
    tot = S.sum(axis=0)
    between_pairs = float(n * n - (cnt.astype(np.float64) ** 2).sum())
    between = float((tot @ tot - (S * S).sum()) / between_pairs) if between_pairs > 0 else float("nan")
    return within, between


def cross_similarity(S: np.ndarray, cnt: np.ndarray, sq: np.ndarray) -> np.ndarray:
    """Matrix of mean cosine between groups a≠b (S_a·S_b/(n_a n_b)); diagonal: within-group mean."""
    G = S @ S.T
    with np.errstate(invalid="ignore", divide="ignore"):
        M = G / np.outer(cnt, cnt)
        diag = (np.diag(G) - sq) / (cnt * (cnt - 1.0))
    M[np.diag_indices_from(M)] = diag
    return M


def coverage_metrics(
    X: np.ndarray, leaf_of_row: np.ndarray, n_leaves: int, targets: Sequence[int] | None = None
) -> dict[str, Any]:
    """Leaf-coverage metrics for rows assigned to leaves 0..n_leaves−1 (−1: not a known leaf)."""
    S, cnt, sq = group_sums(X, leaf_of_row, n_leaves)
    out: dict[str, Any] = {"leaves": int(n_leaves), "rows_in_leaves": int(cnt.sum())}
    out["occupancy_entropy"] = occupancy_entropy(cnt)
    out["gini"] = gini(cnt)
    out["empty_leaves"] = int((cnt == 0).sum())
    if targets is not None and len(targets) == n_leaves:
        t = np.asarray(targets, dtype=np.float64)
        out["thin_leaves"] = int(((cnt > 0) & (cnt < 0.5 * t)).sum())
        out["thin_rule"] = "0 < n_L < ½ of the leaf's allocated quota"
    else:
        mean = cnt.mean() if n_leaves else 0.0
        out["thin_leaves"] = int(((cnt > 0) & (cnt < 0.5 * mean)).sum())
        out["thin_rule"] = "0 < n_L < ½ of the mean leaf size"
    out["min_leaf"] = int(cnt.min()) if n_leaves else 0
    out["median_leaf"] = float(np.median(cnt)) if n_leaves else 0.0
    out["max_leaf"] = int(cnt.max()) if n_leaves else 0
    w, b = within_between(S, cnt, sq)
    out["within_leaf_similarity"] = w
    out["between_leaf_similarity"] = b
    out["leaf_separation"] = w - b if not (math.isnan(w) or math.isnan(b)) else float("nan")
    out["leaf_sizes"] = cnt.tolist()
    return out
