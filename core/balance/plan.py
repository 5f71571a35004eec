"""Balancing arithmetic, pure: how many rows each leaf should end with, which of a crowded leaf's rows
to keep, and the occupancy statistics before and after."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from ..allocate import allocate
from ..tree import Node

if TYPE_CHECKING:
    import numpy as np

#: a synthesised row this close (cosine) to a real row of its leaf is a near-duplicate, dropped
NEAR_DUP_COSINE = 0.95

#: a leaf's plan: rows before, the original rows kept (indices into the data), rows to synthesise
LeafPlan = dict[str, Any]


def farthest_point_keep(emb: np.ndarray, k: int, seed: int) -> list[int]:
    """Indices of ``k`` rows chosen greedily so each is the farthest (cosine) from those kept
    so far, starting from a seeded random row. Keeps the most mutually distant rows."""
    import numpy as np

    n = emb.shape[0]
    if k >= n:
        return list(range(n))
    if k <= 0:
        return []
    rng = random.Random(seed)
    first = rng.randrange(n)
    kept = [first]
    best = 1.0 - emb @ emb[first]  # distance to the nearest kept row
    best[first] = -1.0
    for _ in range(k - 1):
        i = int(np.argmax(best))
        kept.append(i)
        best = np.minimum(best, 1.0 - emb @ emb[i])
        best[kept] = -1.0
    return sorted(kept)


def leaf_targets(leaves: list[Node], target_per_leaf: int | None, size: int | None) -> dict[str, int]:
    """Desired rows per leaf: ``target_per_leaf`` each, or ``size`` split evenly
    (open-ended leaves weighted by their value count)."""
    if target_per_leaf is not None:
        return {n.id: target_per_leaf * (len(n.values) if n.values else 1) for n in leaves}
    if size is None:
        raise ValueError("leaf_targets needs target_per_leaf or size")
    weights = [float(len(n.values)) if n.values else 1.0 for n in leaves]
    return dict(zip((n.id for n in leaves), allocate(size, weights), strict=True))


def plan_totals(plan: dict[str, LeafPlan]) -> tuple[int, int]:
    """(originals kept, rows after balancing) of a plan."""
    kept = sum(len(p["keep"]) for p in plan.values())
    return kept, kept + sum(int(p["synth"]) for p in plan.values())


def occupancy(counts: list[int]) -> dict[str, float]:
    """Entropy (normalised by log #leaves), Gini and empty leaves of rows per leaf."""
    total = sum(counts)
    k = len(counts)
    if total == 0 or k < 2:
        return {"entropy": 0.0, "gini": 0.0, "empty": sum(1 for c in counts if c == 0)}
    ps = [c / total for c in counts if c]
    ent = -sum(p * math.log(p) for p in ps) / math.log(k)
    s = sorted(counts)
    gini = sum((2 * (i + 1) - k - 1) * c for i, c in enumerate(s)) / (k * total)
    return {"entropy": round(ent, 4), "gini": round(gini, 4), "empty": sum(1 for c in counts if c == 0)}


def balance_summary(table: list[dict[str, Any]], n_input: int, n_dropped: int, route_calls: int) -> dict[str, Any]:
    """Occupancy statistics before and after, and what balancing did."""
    return {
        "leaves": len(table),
        "input_rows": n_input,
        "dropped": n_dropped,
        "rows_after": sum(t["after"] for t in table),
        "synthesised": sum(t["synthesised"] for t in table),
        "before": occupancy([t["before"] for t in table]),
        "after": occupancy([t["after"] for t in table]),
        "llm_route_calls": route_calls,
    }
