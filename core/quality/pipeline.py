"""The gate pipeline: rows on their way from a generation call to the dataset wait here for semantic
dedup, beside generation, so the engine keeps calls in flight while earlier rows are gated.

A generation call hands its rows (already through the validators and exact dedup) to ``submit`` and
waits for the verdict; its concurrency slot at the provider is free again at once. The pipeline
gathers rows from many calls into batches of up to ``embedder.batch_rows`` texts, embeds up to
``embedder.parallel`` batches at once (core/quality/embedder.py: a local model in a thread, an
endpoint's requests side by side), then hands them to one admitter, which takes every embedded batch
waiting for it and admits them to the index in one call (a large run's index process is asked through its
pipes on the event loop; a small run's index works in a worker thread, faiss releasing the GIL), while
the event loop keeps dispatching calls, then stores the kept rows. Admits are
serial (one admitter) and adapt their size to the load: the batches embedded while one admit runs go
in the next one together, so the admits' fixed costs (a request, the event loop's turn to store the
rows) are paid per group, not per batch. Nothing else admits between an admit and the store of its
kept rows, so the index, ``row_vectors.f16`` and ``samples.jsonl`` always agree (the group's vectors go
to the log in one append after its rows; rows a crash leaves without a vector are embedded by the
resumed run).

The queue is bounded (``capacity`` rows): when the gates are slower than generation, ``submit``
waits for room, and generation slows to what the gates can take, never past it. A row counts
once it is stored; rows still in the pipeline at a crash were never stored, so a resumed run asks
their calls again (from the response cache, at no cost) and gates them again.

The engine supplies two synchronous callbacks, run by the admitter: ``plan(items)`` (how many of
each call's rows to offer: a leaf's room, 0 for a call made stale by steering) and
``commit(item, keep, sims, vectors)`` (store the kept rows, record the rest); and ``group()``, a context
around one admit's commits in which the stored rows are held and written once, at its end (the store's
``one_write``). Each call hears its verdict only after that write, so a failed write is the error of every
call in the group, and no call is told that rows which never reached the file are stored.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import numpy as np

    from .dedup import SemanticDedup
    from .embedder import RowEmbedder


# a batch goes to the embedder when it is full (``batch_rows``) or its oldest row has waited this long: full
# requests while rows flow fast (at 5,000 rows/s 256 rows gather in 50 ms), little delay when they trickle
LINGER_S = 0.05
ADMIT_ROWS = 4096
T = TypeVar("T")  # the most rows one admit takes (the index compares them in chunks: core/neardup.py)


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
        group: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.dedup = dedup
        self.embedder = embedder
        self.plan = plan
        self.commit = commit
        self.batch_rows = max(1, int(embedder.batch_rows))
        self.parallel = max(1, int(embedder.parallel))
        self.capacity = capacity or max(2048, 4 * self.batch_rows * self.parallel)
        self.on_change = on_change or (lambda: None)
        self.group = group or nullcontext  # around one admit's commits: the engine's one write of their rows
        self._queue: deque[GateItem] = deque()
        self.queued_rows = 0  # rows waiting for an embedding batch
        self.waiting = 0  # rows in the pipeline: queued, being embedded or admitted
        self.generated = 0  # rows that entered the gates (cumulative, this process)
        self._room: deque[tuple[int, asyncio.Future[None]]] = deque()  # calls waiting for room, first come first served
        self._work = asyncio.Event()  # set when a batch is ready (full, or its oldest row lingered LINGER_S)
        self._oldest = 0.0  # when the oldest queued row started to wait for a batch (the loop's clock)
        self._linger: asyncio.TimerHandle | None = None
        self._ready: deque[tuple[list[GateItem], np.ndarray]] = deque()  # embedded batches waiting for the admitter
        self._admitter: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._live = 0  # workers not ended (an idle one ends after 30 s; the next submit starts another)
        self._failure: BaseException | None = None

    def prestart(self) -> None:
        """Called as a run starts: a large run's helper processes start now, so that their imports overlap the tree's
        growth, not generation: the index's (``SemanticDedup.prestart``) and, where the embedder has one, the
        process its requests go through (``RowEmbedder.offload``)."""
        if self.dedup.large:
            self.dedup.prestart()
            self.embedder.offload()

    async def submit(self, item: GateItem) -> Any:
        """Wait for room, queue ``item`` and wait for ``commit``'s result for it."""
        if self._failure is not None:
            raise self._failure
        n = len(item.texts)
        if self._room or not self._fits(n):
            await self._wait_room(n)  # its rows are counted in ``waiting`` once room is granted
        else:
            self.waiting += n
        if not self._queue:  # the oldest row's wait for a full batch starts
            self._oldest = asyncio.get_running_loop().time()
            self._linger = asyncio.get_running_loop().call_later(LINGER_S, self._work.set)
        self._queue.append(item)
        self.queued_rows += n
        self.generated += n
        self._start()
        if self.queued_rows >= self.batch_rows:
            self._work.set()
        self.on_change()
        return await item.future

    def _fits(self, n: int) -> bool:
        return self.waiting == 0 or self.waiting + n <= self.capacity

    async def _wait_room(self, n: int) -> None:
        """Wait in line until ``n`` more rows fit (``capacity``), then hold them. Only the calls whose rows fit
        are woken when rows leave (``_grant``): with hundreds of calls waiting, waking them all on every admit to
        re-check cost the event loop more than the admits."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._room.append((n, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted, then cancelled before it could use the room
                self.waiting -= n
            else:
                try:
                    self._room.remove((n, fut))
                except ValueError:
                    pass
            self._grant()
            raise

    def _grant(self) -> None:
        """Give room to the calls first in line while their rows fit."""
        while self._room:
            n, fut = self._room[0]
            if fut.done():  # cancelled while waiting
                self._room.popleft()
                continue
            if not self._fits(n):
                return
            self._room.popleft()
            self.waiting += n
            fut.set_result(None)

    def _start(self) -> None:
        # the embedder's width now: a Ray embedder knows its actors only once it has started them
        want = max(self.parallel, int(self.embedder.parallel))
        if self._live >= want:  # the usual case, on every submit: nothing to look through
            return
        self._workers = [w for w in self._workers if not w.done()]
        while len(self._workers) < want:
            w = asyncio.ensure_future(self._worker())
            w.add_done_callback(self._worker_ended)
            self._workers.append(w)
        self._live = len(self._workers)

    def _worker_ended(self, _w: asyncio.Future[None]) -> None:
        self._live -= 1

    def _take(self) -> list[GateItem]:
        batch: list[GateItem] = []
        rows = 0
        while self._queue and (not batch or rows + len(self._queue[0].texts) <= self.batch_rows):
            item = self._queue.popleft()
            batch.append(item)
            rows += len(item.texts)
        self.queued_rows -= rows
        if self._queue:  # what is left waits from now (it is at most a batch behind), woken by its own timer
            loop = asyncio.get_running_loop()
            self._oldest = loop.time()
            if self._linger is not None:
                self._linger.cancel()
            self._linger = loop.call_later(LINGER_S, self._work.set)
            if self.queued_rows >= self.batch_rows:
                self._work.set()
        return batch

    def _batch_ready(self) -> bool:
        """A full batch waits, or the oldest row has waited ``LINGER_S`` for one."""
        if not self._queue:
            return False
        return self.queued_rows >= self.batch_rows or asyncio.get_running_loop().time() - self._oldest >= LINGER_S

    async def _worker(self) -> None:
        """Embeds batches from the queue and hands them to the admitter; their calls wait for the admit."""
        while True:
            if not self._batch_ready():
                self._work.clear()
                try:
                    await asyncio.wait_for(self._work.wait(), timeout=30)
                except TimeoutError:
                    if not self._queue:
                        return  # idle: the next submit starts another
                continue
            batch = self._take()
            if not batch:
                continue
            X = await self._settled(batch, self._embed(batch))
            if X is None:  # failed: its calls have the error
                await self._done(batch)
                continue
            self._ready.append((batch, X))
            if self._admitter is None or self._admitter.done():
                self._admitter = asyncio.ensure_future(self._admit_ready())

    async def _settled(self, items: Sequence[GateItem], work: Awaitable[T]) -> T | None:
        """``work``'s result; None when it failed, the calls waiting on ``items`` then having its error. Cancelled:
        their calls are cancelled too."""
        try:
            return await work
        except asyncio.CancelledError:
            for item in items:
                item.future.cancel()
            raise
        except BaseException as e:  # noqa: BLE001 - the calls waiting on these rows get the error
            self._fail(items, e)
            return None

    async def _embed(self, batch: list[GateItem]) -> np.ndarray:
        texts = [t for item in batch for t in item.texts]
        X = await self.embedder.embed_fresh(texts)  # new rows: their vectors go to row_vectors.f16, not the cache
        if X.shape[0] != len(texts):
            raise RuntimeError(f"the embedder returned {X.shape[0]} vectors for {len(texts)} texts")
        await self.dedup.ensure_open(X.shape[1], self.embedder)
        return X

    async def _admit_ready(self) -> None:
        """The one admitter: every embedded batch waiting when it comes round goes to the index in one admit
        (up to ``ADMIT_ROWS`` rows), so admits keep up with many embedding requests in flight: the batches that
        are embedded while one admit runs wait for the next, together, not in a queue of their own."""
        while self._ready:
            group: list[GateItem] = []
            parts: list[np.ndarray] = []
            rows = 0
            while self._ready and (not group or rows + len(self._ready[0][1]) <= ADMIT_ROWS):
                batch, X = self._ready.popleft()
                group += batch
                parts.append(X)
                rows += len(X)
            await self._settled(group, self._admit(group, parts))
            await self._done(group)

    async def _admit(self, group: list[GateItem], parts: list[np.ndarray]) -> None:
        """Plan, admit and commit ``group`` (its vectors: ``parts``, in order). Nothing else admits meanwhile
        (one admitter), so the index, row_vectors.f16 and samples.jsonl agree."""
        import numpy as np

        X = np.concatenate(parts) if len(parts) > 1 else parts[0]
        per_item: list[np.ndarray] = []
        a = 0
        for item in group:
            per_item.append(X[a : a + len(item.texts)])
            a += len(item.texts)
        offer = self.plan(group)
        # the plan's indices rise, so as many as the call's rows are all of them (the usual case: no copy)
        offered = [P if len(idx) == len(P) else P[np.asarray(idx, dtype=np.int64)] for P, idx in zip(per_item, offer, strict=True)]
        keep, sims = await self.dedup.admit_async(np.concatenate(offered))
        b = 0
        done: list[tuple[GateItem, Any, BaseException | None]] = []
        # the group's rows in one write to samples.jsonl, then its kept vectors in one append to row_vectors.f16;
        # a failed write is every call's error in the group (none of them is told its rows are stored)
        try:
            with self.dedup.one_write(), self.group():
                for item, idx, P in zip(group, offer, offered, strict=True):
                    k = len(P)
                    if not item.future.done():
                        try:
                            done.append((item, self.commit(item, idx, keep[b : b + k], sims[b : b + k], P), None))
                        except BaseException as e:  # noqa: BLE001 - a stale call, a storage error: that call's error
                            done.append((item, None, e))
                    b += k
        except Exception as e:  # the group's write failed (the store's, or the vectors'): every call of it fails (_settled)
            self._failure = e  # and the run stops on it: calls that come later are not gated for nothing
            raise
        for item, result, error in done:
            if item.future.done():
                continue
            if error is None:
                item.future.set_result(result)
            else:
                item.future.set_exception(error)

    async def _done(self, items: Sequence[GateItem]) -> None:
        self.waiting -= sum(len(i.texts) for i in items)
        self._grant()
        self.on_change()

    def _fail(self, batch: Sequence[GateItem], e: BaseException) -> None:
        for item in batch:
            if not item.future.done():
                item.future.set_exception(e)

    async def aclose(self) -> None:
        tasks = [*self._workers, *([self._admitter] if self._admitter is not None else [])]
        for w in tasks:
            w.cancel()
        for w in tasks:
            try:
                await w
            except BaseException:  # noqa: BLE001
                pass
        self._workers.clear()
        self._live = 0
        self._admitter = None
        if self._linger is not None:
            self._linger.cancel()
        for _n, fut in self._room:  # calls still waiting for room end with the pipeline
            fut.cancel()
        self._room.clear()
        left = list(self._queue) + [item for batch, _ in self._ready for item in batch]
        self._queue.clear()
        self._ready.clear()
        for item in left:
            if not item.future.done():
                item.future.cancel()
