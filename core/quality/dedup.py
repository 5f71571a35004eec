"""Semantic dedup: a new row whose embedding is within ``threshold`` cosine of an accepted row anywhere
in the dataset is turned away (its leaf writes another). The index (core/neardup.py) holds every
accepted row's vector; the vectors are also appended to the run directory (``row_vectors.f16``, in
the order rows are appended to samples.jsonl), so a resumed run rebuilds the index from them and
embeds only the rows a crash left without a vector, never everything."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..neardup import NearDuplicateIndex, VectorLog
from ..text import sample_plain_text

Embed = Callable[[list[str]], Any]


class SemanticDedup:
    def __init__(
        self, embed: Embed, threshold: float, log_path: Path | None,
        stored_rows: Callable[[], Iterator[dict[str, Any]]] | None = None,
        text_of: Callable[[dict[str, Any]], str] = sample_plain_text,
        seed: Callable[[], np.ndarray | None] | None = None,
    ) -> None:
        self.embed = embed
        self.threshold = threshold
        self.log_path = log_path
        self._stored_rows = stored_rows  # the rows already in samples.jsonl (a resumed run)
        self.text_of = text_of  # what of a row is embedded (all its fields; a balance run: its text field)
        self._seed_fn = seed  # vectors new rows are also compared with (a balance run's real rows), got when first needed
        self._index: NearDuplicateIndex | None = None
        self._log: VectorLog | None = None
        self._seed: list[np.ndarray] = []
        self._opening = asyncio.Lock()
        self.loaded = 0  # vectors read back from the run directory
        self.embedded_on_resume = 0  # stored rows a crash left without a vector, embedded at start

    def seed(self, X: np.ndarray) -> None:
        """Vectors every new row is also compared with (a balance run's real rows); not persisted."""
        if len(X):
            self._seed.append(np.asarray(X, dtype=np.float32))

    def _open(self, dim: int) -> None:
        """Build the index: seeds, the stored vectors, and vectors for stored rows that have none."""
        index = NearDuplicateIndex(dim, self.threshold)
        if self._seed_fn is not None:
            S = self._seed_fn()
            if S is not None and len(S):
                self._seed.append(np.asarray(S, dtype=np.float32))
        for X in self._seed:
            index.add(X)
        self._seed.clear()
        if self.log_path is not None:
            self._log = VectorLog(self.log_path, dim)
            X = self._log.read()
            self.loaded = len(X)
            if len(X):
                index.add(X)
            if self._stored_rows is not None:
                missing = [self.text_of(r) for i, r in enumerate(self._stored_rows()) if i >= self.loaded]
                if missing:
                    P = np.asarray(self.embed(missing), dtype=np.float32)
                    index.add(P)
                    self._log.append(P)
                    self.embedded_on_resume = len(P)
        self._index = index

    async def vectors(self, samples: list[dict[str, str]]) -> np.ndarray:
        """The samples' unit vectors (the embedder, and the index's first build, run in a thread)."""
        X = np.asarray(await asyncio.to_thread(self.embed, [self.text_of(s) for s in samples]), dtype=np.float32)
        if self._index is None:
            async with self._opening:  # two first calls side by side build it once
                if self._index is None:
                    await asyncio.to_thread(self._open, X.shape[1])
        return X

    def admit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keep mask, each row's highest cosine to an accepted row); the kept rows join the index.
        Synchronous: call it after ``vectors`` with no await between it and storing the kept rows."""
        if self._index is None:
            raise RuntimeError("admit() before vectors()")
        return self._index.admit(X)

    def stored(self, X: np.ndarray) -> None:
        """Persist the vectors of rows just appended to samples.jsonl (same order)."""
        if self._log is not None and len(X):
            self._log.append(X)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
