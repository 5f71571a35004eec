"""One metric record, as ``metrics.json`` stores it: the value with the ``n`` rows it was computed on,
the embedder (``model``, null for lexical metrics) and the ``seed``, plus any detail (method, k, ...).
Numbers are plain JSON numbers: numpy scalars become Python ones, NaN and infinity become null."""

from __future__ import annotations

from typing import Any

import numpy as np


def num(v: Any) -> Any:
    """``v`` as a JSON-ready number (NaN, ±inf -> None); anything else unchanged."""
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if (np.isnan(v) or np.isinf(v)) else v
    if isinstance(v, np.integer):
        return int(v)
    return v


def rec(value: Any, n: int, model: str | None, seed: int, **extra: Any) -> dict[str, Any]:
    """A metric record: ``{"value", "n", "model", "seed", **extra}``, every number through ``num``."""
    return {"value": num(value), "n": int(n), "model": model, "seed": seed, **{k: num(v) for k, v in extra.items()}}
