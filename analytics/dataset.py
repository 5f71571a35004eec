"""What a report reads from its inputs: a ``Dataset`` (the texts of one field, with each row's leaf and
path when the input is a treesynth run or export) and the ``TreeInfo`` of a run's tree. The loaders
(``run_data``, ``balance_data``, ``file_data``; ``data`` picks one) fill them in. Every text is data,
never markup: escaping is the renderer's job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from treesynth.core.tree import Tree

    from .quality import RunQuality

META_COLUMNS = {"id", "leaf_id", "path", "slot", "_k"}  # never the text field


@dataclass
class TreeInfo:
    """The parts of a run's tree the report needs: leaves, top-level branches, labels, quotas."""

    node_ids: list[str]  # walk order (pruned subtrees left out)
    parent: dict[str, str | None]
    label: dict[str, str]  # "dimension = value" (raw text; escaped when rendered)
    status: dict[str, str]
    target: dict[str, int]
    leaves: list[str]
    branches: list[str]  # children of the root, in order (the root itself when it is a leaf)
    depth: int

    def branch_of(self, node_id: str) -> str | None:
        if node_id not in self.parent:
            return None
        if node_id == "0":
            return "0"
        parts = node_id.split(".")
        return ".".join(parts[:2])


@dataclass
class Dataset:
    """The texts of one input in one field, with what the report says about where they came from."""

    name: str
    source: str
    kind: str  # "run" | "file"
    field: str
    texts: list[str]
    n_rows: int  # rows read
    n_empty: int  # rows without text in the field (dropped)
    n_before_sample: int  # rows with text, before --sample
    leaf_ids: list[str] | None = None
    paths: list[list[tuple[str, str]]] | None = None
    tree: TreeInfo | None = None
    status: str | None = None
    task: str | None = None
    notes: list[str] = field(default_factory=list)
    quality: RunQuality | None = None  # a run's quality gates (``quality``), when any ran
    role: str | None = None  # "baseline": the plain-sampling baseline of the first input (treesynth baseline)

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def sampled(self) -> bool:
        return self.n < self.n_before_sample

    def branch_labels(self) -> tuple[list[str], np.ndarray] | None:
        """(branch labels, branch index per row; −1 for rows outside every branch), or None."""
        if self.tree is not None and self.leaf_ids is not None:
            tree = self.tree
            names = list(tree.branches)
            pos = {b: i for i, b in enumerate(names)}
            of_leaf: dict[str, int] = {}  # leaf id -> branch index, worked out once per leaf
            idx = np.fromiter(
                (of_leaf[leaf] if leaf in of_leaf else of_leaf.setdefault(leaf, pos.get(tree.branch_of(leaf) or "", -1))
                 for leaf in self.leaf_ids), dtype=np.int64, count=len(self.leaf_ids),
            )
            return [tree.label[b] for b in names], idx
        if self.paths is not None:
            labels: dict[str, int] = {}
            idx = np.fromiter(
                (labels.setdefault(f"{p[0][0]} = {p[0][1]}", len(labels)) if p else -1 for p in self.paths), dtype=np.int64,
                count=len(self.paths),
            )
            return list(labels), idx
        return None


# ---------------------------------------------------------------------------


def sample_rows(ds: Dataset, sample: int | None, seed: int) -> None:
    """``--sample N``: keep a seeded uniform sample of N rows (all of them when there are fewer)."""
    if sample is None:
        return
    if sample < 1:
        raise InputError("--sample must be at least 1")
    keep = uniform_sample(ds.n, sample, seed)
    if keep is not None:
        subset_rows(ds, keep)
        if ds.leaf_ids is not None:
            ds.notes.append(f"leaf coverage is measured on the sample of {sample:,} rows: small leaves may look thin or empty")


def uniform_sample(n: int, k: int, seed: int) -> np.ndarray | None:
    """Sorted indices of a seeded uniform random sample of ``k`` of ``n`` rows, or None when ``k`` ≥ ``n``
    (every row). ``--sample`` and the report's embedding sample both draw it: the same seed and sizes
    give the same rows."""
    if k >= n:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def subset_rows(ds: Dataset, keep: np.ndarray) -> None:
    """Keep only the rows ``keep`` (their texts, leaves and paths)."""
    ds.texts = [ds.texts[i] for i in keep]
    if ds.leaf_ids is not None:
        ds.leaf_ids = [ds.leaf_ids[i] for i in keep]
    if ds.paths is not None:
        ds.paths = [ds.paths[i] for i in keep]


def clean_path(p: Any) -> list[tuple[str, str]]:
    """A row's ``path`` as (dimension, value) pairs; anything malformed is left out."""
    out: list[tuple[str, str]] = []
    if isinstance(p, list):
        for step in p:
            if isinstance(step, dict):
                out.append((str(step.get("dimension") or ""), str(step.get("value") or "")))
    return out


def shared_path(p: Any, pool: dict[tuple[tuple[str, str], ...], list[tuple[str, str]]]) -> list[tuple[str, str]]:
    """``clean_path(p)``, one list per distinct path: the rows of a leaf share it (``pool`` holds them),
    so a million rows cost a pointer each, not a list of tuples each. The lists are never changed."""
    path = clean_path(p)
    return pool.setdefault(tuple(path), path)


def tree_info(tree: Tree) -> TreeInfo:
    """The report's view of a run's tree: pruned subtrees left out, labels as plain text."""
    from treesynth.core.tree import EXPANDED, LEAF, PRUNED

    ids: list[str] = []
    parent: dict[str, str | None] = {}
    label: dict[str, str] = {}
    status: dict[str, str] = {}
    target: dict[str, int] = {}
    depth = 0
    for n in tree.walk():
        if n.status == PRUNED:
            continue
        if n.parent is not None and n.parent not in parent:
            continue  # under a pruned node
        ids.append(n.id)
        parent[n.id] = n.parent
        if n.parent is None:
            label[n.id] = "(root)"
        elif n.values:
            label[n.id] = f"{n.dimension} = one of {len(n.values)} values"
        else:
            label[n.id] = f"{n.dimension} = {n.value}"
        status[n.id] = n.status
        target[n.id] = int(n.target)
        depth = max(depth, n.depth)
    leaves = [i for i in ids if status[i] == LEAF]
    root = tree.root
    if root.status == EXPANDED:
        branches = [c for c in root.children if c in parent]
    else:
        branches = ["0"]
    return TreeInfo(ids, parent, label, status, target, leaves, branches, depth)
