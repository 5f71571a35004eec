"""Semantic dedup: a new row whose embedding is within ``threshold`` cosine of an accepted row anywhere
in the dataset is turned away (its leaf writes another). The index (core/neardup.py) holds every
accepted row's vector; the vectors are also appended to the run directory (``row_vectors.f16``, in
the order rows are appended to samples.jsonl), so a resumed run rebuilds the index from them and
embeds only the rows a crash left without a vector, never everything."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..neardup import NearDuplicateIndex, VectorLog
from ..neardup_process import IndexProcess, end, spawn
from ..text import sample_plain_text

if TYPE_CHECKING:
    from .embedder import RowEmbedder

# faiss threads for a batch's search and adds: one. The admit runs in a worker thread beside the event
# loop (core/quality/pipeline.py), which has the other core; a second OpenMP thread made a 100k-row
# admit 1.6x slower on 2 cores (benchmarks/README.md)
INDEX_THREADS = 1
# from this many expected rows the index runs in a process of its own (core/neardup_process.py): its admits
# then never wait for the GIL the event loop holds (at 100k rows they took about 3x their isolated time in
# process); below it, the child's start (about 0.3 s) costs more than the admits it would take off the loop
PROCESS_MIN_ROWS = 20_000

Embed = Callable[[list[str]], Any]
RESUME_CHUNK = 4096  # stored rows without a vector, embedded this many at a time on resume


def limit_blas_threads() -> Any:
    """numpy's BLAS on one thread in this process: the index's matrix products are small (a batch against
    256 to a few thousand rows), and OpenBLAS's idle threads spin: on 2 cores a 100k-row gated run used
    78 CPU-seconds with its default threads, 53 with one, at the same wall time (benchmarks/README.md)."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(1, user_api="blas")  # restored by the dedup's close (a report may follow in-process)
    except Exception:  # noqa: BLE001 - no threadpoolctl, or a BLAS it does not know: the default threads
        return None


class SemanticDedup:
    def __init__(
        self, embed: Embed, threshold: float, log_path: Path | None,
        stored_rows: Callable[[], Iterator[dict[str, Any]]] | None = None,
        text_of: Callable[[dict[str, Any]], str] = sample_plain_text,
        seed: Callable[[], np.ndarray | None] | None = None,
        expected_rows: int = 100_000,
    ) -> None:
        self.embed = embed
        self.threshold = threshold
        self.expected_rows = expected_rows  # the index's cells are sized for this many rows (core/neardup.py)
        self.log_path = log_path
        self._stored_rows = stored_rows  # the rows already in samples.jsonl (a resumed run)
        self.text_of = text_of  # what of a row is embedded (all its fields; a balance run: its text field)
        self._seed_fn = seed  # vectors new rows are also compared with (a balance run's real rows), got when first needed
        self._index: NearDuplicateIndex | IndexProcess | None = None
        self._spare: subprocess.Popen[bytes] | None = None  # the index's process, started early (``prestart``)
        self._blas_limit: Any = None  # numpy's BLAS threads, limited while the index lives
        self._log: VectorLog | None = None
        self._held: list[np.ndarray] | None = None  # vectors stored inside ``one_write``, appended at its end
        self._seed: list[np.ndarray] = []
        self._opening = asyncio.Lock()
        self.loaded = 0  # vectors read back from the run directory
        self.embedded_on_resume = 0  # stored rows a crash left without a vector, embedded at start

    @property
    def large(self) -> bool:
        """Whether the run is large enough for the index to live in a process of its own (``PROCESS_MIN_ROWS``)."""
        return self.expected_rows >= PROCESS_MIN_ROWS

    def prestart(self) -> None:
        """Start the index's process now if the run will want one (``large``): called as a run starts, it imports its
        libraries while the tree grows, not while rows are generated and gated."""
        if self._index is None and self._spare is None and self.large:
            self._spare = spawn()

    def seed(self, X: np.ndarray) -> None:
        """Vectors every new row is also compared with (a balance run's real rows); not persisted."""
        if len(X):
            self._seed.append(np.asarray(X, dtype=np.float32))

    async def ensure_open(self, dim: int, embedder: RowEmbedder | None = None) -> None:
        """Build the index once (the first batch's vectors give its dimension): seeds, the stored
        vectors, and vectors for stored rows a crash left without one (by ``embedder``, else ``embed``)."""
        if self._index is not None:
            return
        async with self._opening:  # two first batches side by side build it once
            if self._index is not None:
                return
            index = await asyncio.to_thread(self._build, dim)
            missing = await asyncio.to_thread(self._missing_texts)
            for a in range(0, len(missing), RESUME_CHUNK):
                chunk = missing[a : a + RESUME_CHUNK]
                P = await embedder.embed(chunk) if embedder is not None else await asyncio.to_thread(self.embed, chunk)
                P = np.asarray(P, dtype=np.float32)
                index.add(P)
                assert self._log is not None
                self._log.append(P)
                self.embedded_on_resume += len(P)
            self._index = index

    def _missing_texts(self) -> list[str]:
        """The text of every stored row past the last one with a vector in the log."""
        if self._stored_rows is None or self._log is None:
            return []
        return [self.text_of(r) for i, r in enumerate(self._stored_rows()) if i >= self.loaded]

    def _build(self, dim: int) -> NearDuplicateIndex | IndexProcess:
        """An index of the seeds and of the vectors the run directory holds: in this process, or in its own
        for a large run (``PROCESS_MIN_ROWS``)."""
        index: NearDuplicateIndex | IndexProcess
        if self.large:
            spare, self._spare = self._spare, None
            index = IndexProcess(dim, self.threshold, process=spare, threads=INDEX_THREADS, expected_rows=self.expected_rows)
        else:
            if self._blas_limit is None:
                self._blas_limit = limit_blas_threads()
            index = NearDuplicateIndex(dim, self.threshold, threads=INDEX_THREADS, expected_rows=self.expected_rows)
        if self._seed_fn is not None:
            S = self._seed_fn()
            if S is not None and len(S):
                self._seed.append(np.asarray(S, dtype=np.float32))
        for X in self._seed:
            index.add(X)
        self._seed.clear()
        if self.log_path is not None:
            self._log = VectorLog(self.log_path, dim)
            self.loaded = 0
            for X in self._log.chunks():  # 65,536 rows at a time: a resumed 1M-row run never holds 1.5 GB of float32
                index.add(X)
                self.loaded += len(X)
        return index

    async def vectors(self, samples: list[dict[str, str]]) -> np.ndarray:
        """The samples' unit vectors (the embedder, and the index's first build, run in a thread)."""
        X = np.asarray(await asyncio.to_thread(self.embed, [self.text_of(s) for s in samples]), dtype=np.float32)
        await self.ensure_open(X.shape[1])
        return X

    def admit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keep mask, each row's highest cosine to an accepted row); the kept rows join the index.
        Synchronous: call it after ``vectors`` with no await between it and storing the kept rows."""
        if self._index is None:
            raise RuntimeError("admit() before vectors()")
        return self._index.admit(X)

    async def admit_async(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``admit`` from the event loop: an index process is asked through its pipes on the loop itself, an index in
        this process in a worker thread (faiss releases the GIL: the loop goes on meanwhile)."""
        index = self._index
        if index is None:
            raise RuntimeError("admit() before vectors()")
        if isinstance(index, IndexProcess):
            return await index.admit_async(X)
        return await asyncio.to_thread(index.admit, X)

    def stored(self, X: np.ndarray) -> None:
        """Persist the vectors of rows just appended to samples.jsonl (same order)."""
        if self._log is None or not len(X):
            return
        if self._held is not None:
            self._held.append(X)
        else:
            self._log.append(X)

    @contextmanager
    def one_write(self) -> Iterator[None]:
        """The vectors ``stored`` inside go to the log in one append at the end, in order (the gate pipeline
        stores a batch's calls one by one: one write instead of one per call). A crash before that append, or an
        error inside (the rows' own write may have failed: vectors without their rows would put every later vector
        beside the wrong row), leaves stored rows without a vector, which a resumed run embeds (``ensure_open``)."""
        if self._held is not None:  # nested: the outer one writes
            yield
            return
        self._held = []
        try:
            yield
        except BaseException:  # the rows may not be stored (their one write failed): their vectors are left out
            self._held = None
            raise
        held, self._held = self._held, None
        if held and self._log is not None:
            self._log.append(np.concatenate(held))

    def release(self) -> None:
        """Free the index (a finished run's export needs the memory: ~0.8 GB at 1M rows); a later
        ``ensure_open`` rebuilds it from the vector log. An index process's exit is not awaited."""
        self.close(wait=False)

    def close(self, wait: bool = True) -> None:
        index, self._index = self._index, None
        spare, self._spare = self._spare, None
        if spare is not None:
            end(spare)
        if isinstance(index, IndexProcess):
            index.close(wait=wait)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._blas_limit is not None:
            try:
                self._blas_limit.restore_original_limits()
            except Exception:  # noqa: BLE001
                pass
            self._blas_limit = None
