"""Leaf coverage: how rows spread over a tree's leaves (entropy, Gini, empty and thin leaves) and
how alike rows are within and between leaves or branches (package docstring)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .embedding import sq_norms


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
    np.add.at(sq, g_sorted, sq_norms(X[rows]))
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


def occupancy_metrics(cnt: Sequence[int] | np.ndarray, targets: Sequence[int] | None = None) -> dict[str, Any]:
    """The leaf-coverage numbers that need only the rows per leaf ``cnt`` (leaves 0..len−1): rows in
    leaves, occupancy entropy, Gini, empty and thin leaves, smallest, median and largest leaf."""
    cnt = np.asarray(cnt, dtype=np.int64)
    n_leaves = len(cnt)
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
    return out


def leaf_counts(leaf_of_row: np.ndarray, n_leaves: int) -> np.ndarray:
    """Rows per leaf 0..n_leaves−1 (rows with a negative leaf are not counted)."""
    g = np.asarray(leaf_of_row, dtype=np.int64)
    return np.bincount(g[g >= 0], minlength=n_leaves)[:n_leaves].astype(np.int64)


def leaf_similarity(X: np.ndarray, leaf_of_row: np.ndarray, n_leaves: int) -> dict[str, float]:
    """Within-leaf and between-leaf mean cosine of the rows of ``X`` and their difference (separation)."""
    S, cnt, sq = group_sums(X, leaf_of_row, n_leaves)
    w, b = within_between(S, cnt, sq)
    return {"within_leaf_similarity": w, "between_leaf_similarity": b,
            "leaf_separation": w - b if not (math.isnan(w) or math.isnan(b)) else float("nan")}


def coverage_metrics(
    X: np.ndarray, leaf_of_row: np.ndarray, n_leaves: int, targets: Sequence[int] | None = None
) -> dict[str, Any]:
    """Leaf-coverage metrics for rows assigned to leaves 0..n_leaves−1 (−1: not a known leaf)."""
    S, cnt, sq = group_sums(X, leaf_of_row, n_leaves)
    out = occupancy_metrics(cnt, targets)
    w, b = within_between(S, cnt, sq)
    out["within_leaf_similarity"] = w
    out["between_leaf_similarity"] = b
    out["leaf_separation"] = w - b if not (math.isnan(w) or math.isnan(b)) else float("nan")
    out["leaf_sizes"] = cnt.tolist()
    return out
