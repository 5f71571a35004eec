"""Deterministic per-call seeds: the same run, node and call always ask with the same seed (the engine's
steps, the judge and balance's fallback split alike)."""

from __future__ import annotations

import hashlib
from typing import Any


def derive_seed(seed: int, *parts: Any) -> int:
    h = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=4).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF
