"""Engine events reach the widgets in batches: at most every ``FLUSH_INTERVAL`` seconds, each batch
bounded in time and in new nodes, so the UI stays responsive however fast the engine goes.

Usage totals coalesce on the way (``bridge.UsageUpdated``); tree and log events are never dropped:
what a batch leaves in the queue waits for the next one. ``take_batch`` and ``sync_with_tree`` are the
pure part (queue -> model); ``FlushScheduler`` decides when a batch runs; the screen shows each batch.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from treesynth.core import events as ev
from treesynth.core.progress import Progress
from treesynth.core.tree import Tree

from .model import Changes, RunModel

FLUSH_INTERVAL = 0.04  # apply queued engine events at most 25 times a second
FLUSH_BUDGET_S = 0.012  # and spend at most this long per batch (the rest waits for the next one)
FLUSH_MAX_NEW_NODES = 1500  # and add at most about this many nodes to the tree widget per batch

Batch = list[tuple[ev.Event, float]]  # (event, time it was queued)


def take_batch(queue: deque[tuple[ev.Event, float]], model: RunModel, progress: Progress, budget_s: float | None,
               clock: Callable[[], float] = time.monotonic) -> tuple[Batch, Changes]:
    """Apply queued events to the model and the progress, in order, until the queue is empty, or (with a
    ``budget_s``) the batch has taken that long or added ``FLUSH_MAX_NEW_NODES`` nodes."""
    t0 = clock()
    ch = Changes()
    batch: Batch = []
    apply = model.apply_one
    papply = progress.apply
    while queue:
        item = queue.popleft()
        papply(item[0])
        apply(item[0], ch)
        batch.append(item)
        if budget_s is not None and (ch.n_added >= FLUSH_MAX_NEW_NODES
                                     or (len(batch) % 64 == 0 and clock() - t0 > budget_s)):
            break
    return batch, ch


def sync_with_tree(model: RunModel, tree: Tree, ch: Changes) -> None:
    """Copy what the events do not carry from the run's own tree: every target after steering (quotas
    may have moved anywhere), else the open values of the nodes the batch added."""
    if ch.steering:
        ch.dirty |= model.sync_from_tree(tree)
        return
    fresh = [c for _p, ids in ch.added for c in ids if model.nodes[c].open_values < 0] if ch.added else []
    if fresh:
        ch.dirty |= model.sync_from_tree(tree, fresh)


class FlushScheduler:
    """Runs ``flush(budget_s)`` at most every ``interval`` seconds: at once when the last batch is old
    enough, else on a timer. ``flush`` returns whether events are still queued; then the next batch is
    due one interval later. ``drain`` applies everything now (the run has ended)."""

    def __init__(self, flush: Callable[[float | None], bool], set_timer: Callable[[float, Callable[[], None]], Any],
                 interval: float = FLUSH_INTERVAL, budget_s: float = FLUSH_BUDGET_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.flush = flush
        self.set_timer = set_timer  # Textual's ``set_timer(delay, callback)``: returns a Timer (``stop()``)
        self.interval = interval
        self.budget_s = budget_s
        self.clock = clock
        self._last = 0.0
        self._timer: Any = None

    def request(self) -> None:
        """Events are waiting: apply them now, or when the interval since the last batch is over."""
        if self._timer is not None:
            return
        delay = self._last + self.interval - self.clock()
        if delay <= 0:
            self._run(self.budget_s)
        else:
            self._timer = self.set_timer(delay, self._from_timer)

    def drain(self) -> None:
        """Apply every queued event now, without a time budget."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._run(None)

    def _from_timer(self) -> None:
        self._timer = None
        self._run(self.budget_s)

    def _run(self, budget_s: float | None) -> None:
        self._last = self.clock()
        if self.flush(budget_s) and self._timer is None:
            self._timer = self.set_timer(self.interval, self._from_timer)
