"""Which decoding slot a new request of the embedded model takes, and whether it fits: pure functions.

The embedded model decodes several sequences at once in one llama.cpp context whose KV cache is
shared by all of them (``kv_unified``). Every slot remembers the tokens its cache holds. A new prompt
goes to a free slot, and its longest common prefix with any slot's tokens (a free slot's last call,
or a running call's prompt: the task and the instructions are the same in most calls) is reused, not
evaluated again: from the free slot itself, or copied from another slot's cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class Placement:
    slot: int  # the free slot the request takes
    source: int  # the slot whose cache holds the reused prefix (``slot`` itself, or another to copy from)
    reuse: int  # prompt tokens already in that cache; the rest is evaluated


def place(prompt: Sequence[int], free: Sequence[int], history: Sequence[Sequence[int]]) -> Placement | None:
    """Where a prompt goes: the free slot and the source with the longest reusable prefix.

    ``history[s]`` is what slot ``s``'s cache holds. At least the prompt's last token is always
    evaluated (its logits start the answer), so at most ``len(prompt) - 1`` tokens are reused. On a
    tie a free slot's own cache wins (nothing to copy). None when no slot is free."""
    if not free or not prompt:
        return None
    cap = len(prompt) - 1
    reuse = [min(common_prefix(prompt, h), cap) for h in history]
    free_set = set(free)
    source = max(range(len(history)), key=lambda s: (reuse[s], s in free_set, -s))
    if source in free_set:
        return Placement(source, source, reuse[source])
    # copy from a running slot into the free slot whose own cache is worth least
    slot = min(free, key=lambda f: (reuse[f], f))
    if reuse[source] == 0:
        return Placement(slot, slot, 0)
    return Placement(slot, source, reuse[source])


def cells_needed(prompt_len: int, reuse: int, max_tokens: int) -> int:
    """KV cells a request may still take: its prompt beyond the reused prefix, and its whole answer."""
    return max(0, prompt_len - reuse) + max_tokens
