"""The data-driven split of a node's rows, for when the model gives no valid split (the embedded model
cannot classify): k-means on the rows' embeddings, each cluster named by its most distinctive words, the
node's pivots placed by their cluster. Deterministic (the run's seed and the node), so a resumed run
rebuilds the same split, and routing sends each row to its cluster's centroid."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..clusters import FALLBACK_DIMENSION, cluster_names, distinctive_words, fallback_k, kmeans
from ..ids import derive_seed
from ..partition import Split, Value
from ..tree import Node
from .rows import RowIndex

if TYPE_CHECKING:
    import numpy as np


class RowClusters:
    def __init__(self, rows: RowIndex, seed: int, max_values: int, ignore: frozenset[str] = frozenset()) -> None:
        self.rows = rows
        self.ignore = ignore  # words that name no cluster (the task's own, the columns')
        self.seed = seed
        self.max_values = max_values
        self._centroids: dict[str, np.ndarray] = {}  # node id -> unit centroids, one per child

    def split(self, node: Node) -> Split | None:
        """The node's rows in clusters, or None if too few rows."""
        rows = self.rows.at(node.id)
        k = fallback_k(len(rows), self.max_values)
        if k < 2:
            return None
        made = self._clusters(node, k)
        if made is None:
            return None
        centroids, labels = made
        data = self.rows.data
        texts = [data.text(r) for r in rows]
        words = distinctive_words(texts, labels, len(centroids), ignore=self.ignore)
        names = cluster_names(texts, self.rows.emb[rows], centroids, labels, words)
        where = {r: int(j) for r, j in zip(rows, labels, strict=True)}
        by_cluster: list[list[int]] = [[] for _ in names]
        for pos, r in enumerate(self.rows.pivot_rows.get(node.id, [])):
            if r in where:
                by_cluster[where[r]].append(pos)
        return Split(dimension=f"{FALLBACK_DIMENSION} (level {node.depth + 1})",
                     values=tuple(Value(value=n, pivots=tuple(p), source="data") for n, p in zip(names, by_cluster, strict=True)))

    def centroids(self, node: Node) -> np.ndarray:
        """The unit centroids of a node's clusters, one per child (rebuilt after a resume)."""
        if node.id not in self._centroids:  # a resumed run: the same seed rebuilds the same clusters
            self._clusters(node, fallback_k(len(self.rows.at(node.id)), self.max_values))
        return self._centroids[node.id]

    def _clusters(self, node: Node, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        import numpy as np

        X = self.rows.emb[self.rows.at(node.id)].astype(np.float32)
        centroids, labels = kmeans(X, k, derive_seed(self.seed, node.id, "clusters", node.revision))
        keep = [j for j in range(len(centroids)) if (labels == j).any()]
        if len(keep) < 2:
            return None
        remap = {j: i for i, j in enumerate(keep)}
        centroids = centroids[keep]
        self._centroids[node.id] = centroids
        return centroids, np.array([remap[int(j)] for j in labels])
