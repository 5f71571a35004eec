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
    """One dataset of the report: its embeddings ``X`` and everything computed from them."""

    ds: Dataset
    X: np.ndarray
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


@dataclass
class Maps:
    """UMAP and t-SNE coordinates of one balanced sample of rows across the datasets."""

    rows: list[tuple[int, int]]  # (dataset index, row index) per point
    coords: dict[str, np.ndarray]  # method -> (points, 2)
    info: dict[str, dict[str, Any]]  # method -> its settings and timing, or {"error": ...}
    sizes: list[int]  # points per dataset
    totals: list[int]  # rows per dataset
