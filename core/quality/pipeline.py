"""The gate pipeline: rows on their way from a generation call to the dataset wait here for semantic
dedup, beside generation, so the engine keeps calls in flight while earlier rows are gated.

A generation call hands its rows (already through the validators and exact dedup) to ``submit`` and
waits for the verdict; its concurrency slot at the provider is free again at once. The pipeline
gathers rows from many calls into batches of up to ``embedder.batch_rows`` texts, embeds up to
``embedder.parallel`` batches at once (core/quality/embedder.py: a local model in a thread, an
endpoint's requests side by side), then admits each batch to the index in one call, in a worker
thread (faiss releases the GIL: the event loop keeps dispatching calls on the other core). The admit
and the store of the kept rows happen under one lock, with no other admit between them, so the
index, ``row_vectors.f16`` and ``samples.jsonl`` always agree (the batch's vectors go to the log in one
append after its rows; rows a crash leaves without a vector are embedded by the resumed run).

The queue is bounded (``capacity`` rows): when the gates are slower than generation, ``submit``
waits for room, and generation slows to what the gates can take, never past it. A row counts
once it is stored; rows still in the pipeline at a crash were never stored, so a resumed run asks
their calls again (from the response cache, at no cost) and gates them again.

The engine supplies two synchronous callbacks, run under the lock: ``plan(items)`` (how many of
each call's rows to offer: a leaf's room, 0 for a call made stale by steering) and
``commit(item, keep, sims, vectors)`` (store the kept rows, record the rest).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .dedup import SemanticDedup
    from .embedder import RowEmbedder


@dataclass(eq=False)
class GateItem:
    """One generation call's rows, waiting for the gates."""

    leaf_id: str
    slot: int
    path: list[dict[str, str]]
    rows: list[Any]  # what the engine needs back in commit (sample, key, index in the answer)
    texts: list[str]  # what is embedded, one per row
    revision: int = 0
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


# plan(batch): for each call, the indices of its rows to offer to the index (its leaf's room, none when stale)
Plan = Callable[[Sequence[GateItem]], list[list[int]]]
# commit(item, offered indices, keep mask, max cosines, vectors of the offered rows) -> the stored rows
Commit = Callable[[GateItem, list[int], "np.ndarray", "np.ndarray", "np.ndarray"], Any]


class GatePipeline:
    def __init__(
        self, dedup: SemanticDedup, embedder: RowEmbedder, plan: Plan, commit: Commit,
        capacity: int | None = None, on_change: Callable[[], None] | None = None,
    ) -> None:
        self.dedup = dedup
        self.embedder = embedder
        self.plan = plan
        self.commit = commit
        self.batch_rows = max(1, int(embedder.batch_rows))
        self.parallel = max(1, int(embedder.parallel))
        self.capacity = capacity or max(2048, 4 * self.batch_rows * self.parallel)
        self.on_change = on_change or (lambda: None)
        self._queue: deque[GateItem] = deque()
        self.queued_rows = 0  # rows waiting for an embedding batch
        self.waiting = 0  # rows in the pipeline: queued, being embedded or admitted
        self.generated = 0  # rows that entered the gates (cumulative, this process)
        self._room = asyncio.Condition()
        self._work = asyncio.Event()
        self._admit = asyncio.Lock()
        self._workers: list[asyncio.Task[None]] = []
        self._failure: BaseException | None = None

    async def submit(self, item: GateItem) -> Any:
        """Wait for room, queue ``item`` and wait for ``commit``'s result for it."""
        if self._failure is not None:
            raise self._failure
        n = len(item.texts)
        async with self._room:
            await self._room.wait_for(lambda: self.waiting == 0 or self.waiting + n <= self.capacity)
        self._queue.append(item)
        self.queued_rows += n
        self.waiting += n
        self.generated += n
        self._start()
        self._work.set()
        self.on_change()
        return await item.future

    def _start(self) -> None:
        self._workers = [w for w in self._workers if not w.done()]
        # the embedder's width now: a Ray embedder knows its actors only once it has started them
        while len(self._workers) < max(self.parallel, int(self.embedder.parallel)):
            self._workers.append(asyncio.ensure_future(self._worker()))

    def _take(self) -> list[GateItem]:
        batch: list[GateItem] = []
        rows = 0
        while self._queue and (not batch or rows + len(self._queue[0].texts) <= self.batch_rows):
            item = self._queue.popleft()
            batch.append(item)
            rows += len(item.texts)
        self.queued_rows -= rows
        return batch

    async def _worker(self) -> None:
        while True:
            if not self._queue:
                self._work.clear()
                try:
                    await asyncio.wait_for(self._work.wait(), timeout=30)
                except TimeoutError:
                    return  # idle: the next submit starts another
                continue
            batch = self._take()
            if not batch:
                continue
            try:
                await self._gate(batch)
            except asyncio.CancelledError:
                for item in batch:
                    item.future.cancel()
                raise
            except BaseException as e:  # noqa: BLE001 - the calls waiting on this batch get the error
                self._fail(batch, e)
            finally:
                n = sum(len(i.texts) for i in batch)
                self.waiting -= n
                async with self._room:
                    self._room.notify_all()
                self.on_change()

    async def _gate(self, batch: list[GateItem]) -> None:
        import numpy as np

        texts = [t for item in batch for t in item.texts]
        X = await self.embedder.embed(texts, fresh=True)  # new rows: their vectors go to row_vectors.f16, not the cache
        if X.shape[0] != len(texts):
            raise RuntimeError(f"the embedder returned {X.shape[0]} vectors for {len(texts)} texts")
        await self.dedup.ensure_open(X.shape[1], self.embedder)
        parts: list[np.ndarray] = []
        a = 0
        for item in batch:
            parts.append(X[a : a + len(item.texts)])
            a += len(item.texts)
        async with self._admit:
            offer = self.plan(batch)
            offered = [P[np.asarray(idx, dtype=np.int64)] for P, idx in zip(parts, offer, strict=True)]
            keep, sims = await asyncio.to_thread(self.dedup.admit, np.concatenate(offered))
            b = 0
            with self.dedup.one_write():  # the batch's kept vectors in one append to row_vectors.f16
                for item, idx, P in zip(batch, offer, offered, strict=True):
                    k = len(P)
                    if item.future.done():
                        b += k
                        continue
                    try:
                        item.future.set_result(self.commit(item, idx, keep[b : b + k], sims[b : b + k], P))
                    except BaseException as e:  # noqa: BLE001 - a stale call, a storage error: that call's error
                        item.future.set_exception(e)
                    b += k

    def _fail(self, batch: Sequence[GateItem], e: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(e)

    async def aclose(self) -> None:
        for w in self._workers:
            w.cancel()
        for w in self._workers:
            try:
                await w
            except BaseException:  # noqa: BLE001
                pass
        self._workers.clear()
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.cancel()
