"""Allocation of a sample budget across children or leaves (pure)."""

from __future__ import annotations

from collections.abc import Sequence


def allocate(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder).

    The result sums to exactly ``total``; ties go to the earlier index, so the
    split is deterministic. Zero weights get zero unless every weight is zero,
    in which case the split is even.
    """
    n = len(weights)
    if total < 0:
        raise ValueError("total must be >= 0")
    if n == 0:
        if total:
            raise ValueError("cannot allocate a positive total to no items")
        return []
    w = [max(0.0, float(x)) for x in weights]
    s = sum(w)
    if s <= 0:
        w = [1.0] * n
        s = float(n)
    quotas = [total * x / s for x in w]
    base = [int(q) for q in quotas]
    rest = total - sum(base)
    order = sorted(range(n), key=lambda i: (-(quotas[i] - base[i]), i))
    for i in order[:rest]:
        base[i] += 1
    return base


def calls_for(target: int, per_call: int) -> int:
    """Number of generation calls needed for ``target`` samples at ``per_call`` each."""
    return 0 if target <= 0 else -(-target // per_call)
