"""What the engine's steps share about an answer: ``Stale`` (drop it), and ``parse_answer`` (core/parsing.py)."""

from __future__ import annotations

from ..parsing import parse_answer

__all__ = ["Stale", "parse_answer"]


class Stale(Exception):
    """The node was pruned, reset or renamed while a call was in flight: drop the answer."""
