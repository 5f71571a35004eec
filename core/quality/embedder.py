"""What turns rows into vectors for the quality gates: one base class with defaults, one subclass per
kind of embedder (``--embedder``, config ``embedder``):

* ``local`` (the default; or a local sentence-transformers model folder): all-MiniLM-L6-v2 on this
  machine's CPU, fp32 (core/embeddings.py), one batch at a time in a worker thread.
* an OpenAI-compatible ``/v1/embeddings`` endpoint (``openai/text-embedding-3-small``, or any model
  behind ``--embed-api-base``): many batches in flight, cached, counted in cost and budget.
* ``ray``: the report's Ray Data embedder on the run's Ray workers.

The gate pipeline (core/quality/pipeline.py) gathers rows from many generation calls into batches of
up to ``batch_rows`` texts and keeps up to ``parallel`` batches in flight. A run records its
embedder's ``identity()``; a resume with another one is refused (vectors of two models in one index
are meaningless).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

SyncEmbed = Callable[[list[str]], Any]


class RowEmbedder:
    """Base: subclasses override ``embed`` (async) or ``embed_blocking`` (run in a thread)."""

    kind: str = "local"
    batch_rows: int = 256  # texts per call to the embedder
    parallel: int = 1  # calls in flight at once

    def __init__(self, model: str = "") -> None:
        self.model = model
        self.notices: list[str] = []  # what the embedder changed on its own, for the run's log

    def identity(self) -> dict[str, str]:
        """What made the run's vectors (recorded; a resume must match it)."""
        return {"kind": self.kind, "model": self.model}

    def embed_blocking(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    async def embed(self, texts: Sequence[str], *, fresh: bool = False) -> np.ndarray:
        """Unit-norm float32 vectors of ``texts``, shape (len(texts), dim). ``fresh``: texts no one embedded
        before and no one will ask for again by their content (a run's newly generated rows: the run directory
        keeps their vectors, ``row_vectors.f16``), so an embedder with a content cache neither reads nor
        writes it for them."""
        import numpy as np

        return np.asarray(await asyncio.to_thread(self.embed_blocking, list(texts)), dtype=np.float32)

    async def embed_fresh(self, texts: Sequence[str]) -> np.ndarray:
        """The gates' vectors of a run's new rows (``embed(texts, fresh=True)``): unit rows, float32, or float16
        where the embedder has them so (the index normalises them; row_vectors.f16 stores them as they are), so
        that a large run's vectors are not widened and narrowed again on the event loop."""
        return await self.embed(texts, fresh=True)

    def as_sync(self, loop: asyncio.AbstractEventLoop | None = None) -> SyncEmbed:
        """A plain callable for code that embeds from a worker thread (a data-driven split)."""
        return self.embed_blocking

    def offload(self) -> None:
        """Move the work of this embedder's requests out of the run's process, for a large run (the endpoint
        embedder: core/quality/embed_worker.py); by default it stays."""
        return None

    async def aclose(self) -> None:
        return None

    def close(self) -> None:
        return None


class LocalRowEmbedder(RowEmbedder):
    """A local sentence-transformers model through a plain callable (core/lazy_embed.py in the product)."""

    kind = "local"

    def __init__(self, embed: SyncEmbed, model: str = "all-MiniLM-L6-v2") -> None:
        super().__init__(model)
        self._embed = embed

    def embed_blocking(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        return np.asarray(self._embed(texts), dtype=np.float32)
