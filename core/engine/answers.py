"""What the engine's steps share about an answer in flight: ``Stale`` (drop it)."""

from __future__ import annotations


class Stale(Exception):
    """The node was pruned, reset or renamed while a call was in flight: drop the answer."""
