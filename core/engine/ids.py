"""Deterministic identities: a node's cache slot, per-call seeds, and the self-contained job of a leaf."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from ..tree import Node


def slot_id(node: Node) -> str:
    """The node's part of cache slots and seeds; a revision asks every call afresh."""
    return node.id if not node.revision else f"{node.id}~r{node.revision}"


def derive_seed(seed: int, *parts: Any) -> int:
    h = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=4).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class LeafJob:
    """Everything needed to synthesise one leaf, independent of the engine that made it."""

    leaf_id: str
    path: tuple[tuple[str, str], ...]
    open_values: tuple[str, ...]
    target: int
    first_slot: int
    skip_slots: frozenset[int]
    revision: int = 0
