"""The report's in-memory results, shared by the pipeline (``report``), the analysis, the maps, the
renderer (``html``) and the Ray hook (``ray_embed``): ``Analysis`` holds one dataset's embeddings and
numbers, ``Maps`` the 2-D projections of all of them. ``Log`` is the progress callback they are given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .dataset import Dataset
from .metrics import NNResult

Log = Callable[[str], None]


@dataclass
class Analysis:
    """One dataset of the report: its embeddings ``X`` and everything computed from them.

    ``embedded``: the dataset rows ``X`` holds, in order, when only a sample of them was embedded (the
    report's embedding sample, ``settings.EMBED_LIMIT``); None when ``X`` holds every row. Embedding
    metrics are computed on those rows, counts on every row."""

    ds: Dataset
    X: np.ndarray
    embedded: np.ndarray | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> metric record (``records.rec``)
    coverage: dict[str, Any] | None = None  # leaf coverage (runs and treesynth exports only)
    branches: list[dict[str, Any]] | None = None  # one row per top-level branch
    branch_matrix: list[list[float]] | None = None  # branch × branch mean cosine
    branch_names: list[str] | None = None
    branch_of_row: np.ndarray | None = None
    nn: NNResult | None = None
    pairs: list[dict[str, Any]] = field(default_factory=list)  # most similar pairs
    tree_nodes: list[dict[str, Any]] | None = None  # for the sunburst
    leaf_sizes: list[int] | None = None
    leaf_targets: list[int] | None = None

    @property
    def n_embedded(self) -> int:
        """Rows the embedding metrics are computed on."""
        return len(self.X)

    @property
    def embed_sampled(self) -> bool:
        """True when only a sample of the dataset's rows was embedded."""
        return self.embedded is not None and len(self.embedded) < self.ds.n

    def rows_of(self, i: np.ndarray) -> np.ndarray:
        """The dataset rows of rows ``i`` of ``X``."""
        i = np.asarray(i, dtype=np.int64)
        return i if self.embedded is None else np.asarray(self.embedded, dtype=np.int64)[i]

    def embedded_texts(self) -> list[str]:
        """The texts of the rows ``X`` holds, in its order."""
        texts = self.ds.texts
        return texts if self.embedded is None else [texts[int(i)] for i in self.embedded]


@dataclass
class Maps:
    """UMAP and t-SNE coordinates of one balanced sample of rows across the datasets."""

    rows: list[tuple[int, int]]  # (dataset index, row index) per point
    coords: dict[str, np.ndarray]  # method -> (points, 2)
    info: dict[str, dict[str, Any]]  # method -> its settings and timing, or {"error": ...}
    sizes: list[int]  # points per dataset
    totals: list[int]  # rows per dataset
