"""The run's sentence embedder, loaded on first use (a data-driven split, semantic dedup): a run that
never needs one never imports numpy, torch or onnxruntime (core/embeddings.py), and one that does pays
for them after its first request, not before."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LazyEmbedder:
    """``core.embeddings.load_embedder(name)`` on first call."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._embed: Callable[[list[str]], Any] | None = None
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> Any:
        with self._lock:
            if self._embed is None:
                from .embeddings import load_embedder

                self._embed = load_embedder(self.name)
        return self._embed(texts)
