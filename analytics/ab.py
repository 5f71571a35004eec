"""TreeSynth against its plain-sampling baseline (``treesynth baseline``): each diversity metric for
both, their difference (TreeSynth − baseline) with a 95% bootstrap interval, which way is better, and
one plain sentence on the headline metric (mean cosine similarity, the paper's "Diversity"). Pure
functions over the two analyses' embeddings and numbers; nothing here reads a file.

Intervals. For metrics that are a mean of per-row values computed on the full dataset (mean cosine:
row i's mean cosine to the others; NN distance; the near-duplicate indicator), the rows of each dataset
are resampled with replacement ``B`` times and the difference of the means taken: the percentile
interval of those differences. Resampling the rows themselves instead would pair a row with its own
copy (cosine 1) and bias the similarity upwards. For Vendi@k (a statistic of a set, not a mean of rows),
each resample draws k rows of each dataset without replacement (k = min(FIXED_K, n)): the interval is
that subsampling distribution's; when both datasets have at most k rows there is nothing to draw, so
there is no interval (and no winner). Distinct-2 and the Vendi score over all rows have no interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import metrics as M
from .settings import FIXED_K

BOOTSTRAP = 2000  # resamples for the per-row metrics
VENDI_DRAWS = 100  # subsamples for Vendi@k


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    better: str  # "lower" or "higher": which is more diverse (or better)
    tree: float | None
    base: float | None
    diff: float | None  # tree − base
    lo: float | None  # 95% interval of diff
    hi: float | None
    note: str = ""

    @property
    def winner(self) -> str | None:
        """"tree", "baseline" or "neither" (the interval holds 0); None without an interval."""
        if self.lo is None or self.hi is None or self.diff is None:
            return None
        if self.lo <= 0 <= self.hi:
            return "neither"
        tree_lower = self.hi < 0
        return "tree" if tree_lower == (self.better == "lower") else "baseline"

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "better": self.better, "treesynth": self.tree, "baseline": self.base,
                "difference": self.diff, "ci95": [self.lo, self.hi] if self.lo is not None else None, "winner": self.winner,
                "note": self.note}


def row_mean_cosines(X: np.ndarray) -> np.ndarray:
    """Each row's mean cosine to the other rows (their mean is the mean pairwise cosine). Unit rows."""
    n = len(X)
    if n < 2:
        return np.zeros(n)
    s = X.astype(np.float64).sum(axis=0)
    return (X.astype(np.float64) @ s - (X.astype(np.float64) ** 2).sum(axis=1)) / (n - 1)


def bootstrap_mean_diff(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, B: int = BOOTSTRAP) -> tuple[float, float, float]:
    """mean(a) − mean(b) and its 95% percentile interval, rows of each resampled with replacement."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    point = float(a.mean() - b.mean())
    d = resampled_means(a, B, rng) - resampled_means(b, B, rng)
    lo, hi = np.percentile(d, [2.5, 97.5])
    return point, float(min(lo, point)), float(max(hi, point))


def resampled_means(x: np.ndarray, B: int, rng: np.random.Generator, cells: int = 1 << 22) -> np.ndarray:
    """The means of ``B`` resamples of ``x`` with replacement, drawn a block of resamples at a time so
    that the index array stays near ``cells`` entries (B × n at once is 320 MB at 20,000 rows). The
    random stream, and so every mean, is the same as drawing all B × n indices at once."""
    n = len(x)
    out = np.empty(B, dtype=np.float64)
    step = max(1, cells // max(1, n))
    for s in range(0, B, step):
        k = min(step, B - s)
        out[s : s + k] = x[rng.integers(0, n, size=(k, n))].mean(axis=1)
    return out


def vendi_k_diff(Xa: np.ndarray, Xb: np.ndarray, rng: np.random.Generator, draws: int = VENDI_DRAWS, k: int = FIXED_K) -> tuple[float, float, float, float, float]:
    """(Vendi@k of a, of b, the difference of their means, its 95% interval) over ``draws`` subsamples of k rows."""
    k = min(k, len(Xa), len(Xb))
    va = np.array([M.vendi_score(Xa[rng.choice(len(Xa), k, replace=False)]) for _ in range(draws)])
    vb = np.array([M.vendi_score(Xb[rng.choice(len(Xb), k, replace=False)]) for _ in range(draws)])
    d = va - vb
    point = float(va.mean() - vb.mean())
    lo, hi = np.percentile(d, [2.5, 97.5])
    return float(va.mean()), float(vb.mean()), point, float(min(lo, point)), float(max(hi, point))


def compare(tree: Any, base: Any, seed: int) -> list[Row]:
    """The A/B rows for two analyses (``results.Analysis``, metrics and nearest neighbours computed)."""
    rng = np.random.default_rng([seed, 4242])
    rows: list[Row] = []
    ca, cb = row_mean_cosines(tree.X), row_mean_cosines(base.X)
    p, lo, hi = bootstrap_mean_diff(ca, cb, rng)
    rows.append(Row("mean_cosine_similarity", "Mean pairwise cosine similarity", "lower", float(ca.mean()), float(cb.mean()), p, lo, hi))
    k = min(FIXED_K, len(tree.X), len(base.X))
    if k < max(len(tree.X), len(base.X)):
        va, vb, p, lo, hi = vendi_k_diff(tree.X, base.X, rng)
        rows.append(Row("vendi_at_k", f"Vendi score at k = {k:,}", "higher", va, vb, p, lo, hi, note="subsamples of k rows"))
    else:  # k is every row of both: one value each, no spread to draw an interval from (no winner declared)
        va, vb = M.vendi_score(tree.X), M.vendi_score(base.X)
        rows.append(Row("vendi_at_k", f"Vendi score at k = {k:,}", "higher", va, vb, va - vb, None, None, note="whole datasets: no interval"))
    rows.append(Row("vendi_score", "Vendi score (all rows)", "higher", _val(tree, "vendi_score"), _val(base, "vendi_score"),
                    _sub(_val(tree, "vendi_score"), _val(base, "vendi_score")), None, None, note="grows with rows; sizes are equal"))
    if tree.nn is not None and base.nn is not None:
        da, db = tree.nn.nn_distance, base.nn.nn_distance
        p, lo, hi = bootstrap_mean_diff(da, db, rng)
        rows.append(Row("mean_nn_distance", "Mean nearest-neighbour cosine distance", "higher", float(np.mean(da)), float(np.mean(db)), p, lo, hi))
        ta, tb = (tree.nn.nn_sim >= tree.nn.threshold).astype(np.float64), (base.nn.nn_sim >= base.nn.threshold).astype(np.float64)
        p, lo, hi = bootstrap_mean_diff(ta, tb, rng)
        rows.append(Row("near_duplicate_rate", f"Near-duplicate rate (cosine ≥ {tree.nn.threshold})", "lower", float(ta.mean()), float(tb.mean()), p, lo, hi))
    d2a, d2b = _val(tree, "distinct_2"), _val(base, "distinct_2")
    rows.append(Row("distinct_2", "Distinct 2-grams", "higher", d2a, d2b, _sub(d2a, d2b), None, None, note="no interval"))
    return rows


def _val(a: Any, key: str) -> float | None:
    v = a.metrics.get(key, {}).get("value")
    return float(v) if isinstance(v, (int, float)) else None


def _sub(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def sentence(rows: list[Row], tree_n: int, base_n: int, tree_of: int | None = None, base_of: int | None = None) -> str:
    """One plain sentence on the headline metric: which way it went, by how much, how sure. ``tree_n``,
    ``base_n``: the rows it was computed on; ``tree_of``, ``base_of``: each side's rows in all, when
    those were a uniform random sample of them (the report's embedding sample)."""
    r = next(x for x in rows if x.key == "mean_cosine_similarity")
    assert r.tree is not None and r.base is not None and r.diff is not None and r.lo is not None and r.hi is not None
    span = f"{r.diff:+.3f} (95% bootstrap interval {r.lo:+.3f} to {r.hi:+.3f}, over rows)"

    def rows_of(n: int, of: int | None) -> str:
        return f"{n:,} rows" if of is None else f"{n:,} rows (a uniform random sample of {of:,})"

    head = (f"By mean cosine similarity (lower is more diverse), TreeSynth's {rows_of(tree_n, tree_of)} score {r.tree:.3f} "
            f"and the baseline's {rows_of(base_n, base_of)} {r.base:.3f}: a difference of {span}")
    w = r.winner
    if w == "tree":
        return f"{head}. TreeSynth's rows are more diverse than plain sampling's."
    if w == "baseline":
        return f"{head}. TreeSynth's rows are LESS diverse than plain sampling's here."
    return f"{head}. The interval holds 0: no clear difference at this size."


def cost_rows(tree_usage: dict[str, Any] | None, base_usage: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Calls, tokens and cost of each side (from each run's state.json ``usage``)."""
    out = []
    for key, label in (("requests", "Calls"), ("tokens_in", "Tokens in"), ("tokens_out", "Tokens out"), ("cost", "Cost (USD)")):
        a = (tree_usage or {}).get(key)
        b = (base_usage or {}).get(key)
        ratio = a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
        out.append({"key": key, "label": label, "treesynth": a, "baseline": b, "ratio": ratio})
    return out
