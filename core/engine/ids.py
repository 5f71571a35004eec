"""Deterministic identities: a node's cache slot and the self-contained job of a leaf (per-call seeds: core/ids.py)."""

from __future__ import annotations

from dataclasses import dataclass

from ..tree import Node


def slot_id(node: Node) -> str:
    """The node's part of cache slots and seeds; a revision asks every call afresh."""
    return node.id if not node.revision else f"{node.id}~r{node.revision}"


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
