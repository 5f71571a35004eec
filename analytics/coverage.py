"""Leaf coverage of a run (or a treesynth export): how its rows fill the tree's leaves, overall and per
top-level branch, and the subtree counts the sunburst draws (the formulas are in ``metrics``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import metrics as M
from .dataset import TreeInfo
from .records import num, rec
from .results import Analysis
from .settings import FIXED_K


def leaf_coverage(a: Analysis, model: str, seed: int, rng: np.random.Generator) -> None:
    """For a dataset whose rows have leaves: the coverage records, the leaf sizes, and per top-level
    branch its own coverage row, the branch × branch similarity and the sunburst's node counts.

    Counts (leaf sizes, entropy, Gini, empty and thin leaves, rows per branch) are over every row;
    similarities (within and between leaves, per branch, branch × branch) over the rows ``a.X`` holds,
    which are every row or the embedding sample (``a.embedded``)."""
    ds, X = a.ds, a.X
    if ds.leaf_ids is None:
        return
    tree = ds.tree
    if tree is not None:
        leaves = list(tree.leaves)
        targets = [tree.target.get(leaf, 0) for leaf in leaves]
    else:
        leaves = sorted(set(ds.leaf_ids))
        targets = None
    pos = {leaf: i for i, leaf in enumerate(leaves)}
    leaf_of_row = np.fromiter((pos.get(leaf, -1) for leaf in ds.leaf_ids), dtype=np.int64, count=len(ds.leaf_ids))
    emb = a.embedded
    leaf_of_x = leaf_of_row if emb is None else leaf_of_row[emb]  # the leaf of each row of X
    sizes_arr = M.leaf_counts(leaf_of_row, len(leaves))
    cov: dict[str, Any] = M.occupancy_metrics(sizes_arr, targets)
    cov.update(M.leaf_similarity(X, leaf_of_x, len(leaves)))
    outside = int((leaf_of_row < 0).sum())
    cov["rows_outside_leaves"] = outside
    if outside:
        ds.notes.append(f"{outside:,} row(s) belong to no leaf of the tree (left out of the leaf coverage)")
    n_cov = cov["rows_in_leaves"]
    n_sim = int((leaf_of_x >= 0).sum())  # rows of X in leaves: what the similarities are computed on
    samp: dict[str, Any] = {}
    if a.embed_sampled:
        cov["similarity_rows"] = n_sim
        samp = {"sample_of": n_cov}
    sizes = sizes_arr.tolist()
    a.leaf_sizes = sizes
    a.leaf_targets = targets
    a.coverage = {k: num(v) for k, v in cov.items()}
    m = a.metrics
    m["leaves"] = rec(len(leaves), n_cov, None, seed)
    m["empty_leaves"] = rec(cov["empty_leaves"], n_cov, None, seed, known=tree is not None)
    m["thin_leaves"] = rec(cov["thin_leaves"], n_cov, None, seed, rule=cov["thin_rule"])
    m["occupancy_entropy"] = rec(cov["occupancy_entropy"], n_cov, None, seed)
    m["leaf_gini"] = rec(cov["gini"], n_cov, None, seed)
    m["within_leaf_similarity"] = rec(cov["within_leaf_similarity"], n_sim, model, seed, **samp)
    m["between_leaf_similarity"] = rec(cov["between_leaf_similarity"], n_sim, model, seed, **samp)
    m["leaf_separation"] = rec(cov["leaf_separation"], n_sim, model, seed, **samp)

    bl = ds.branch_labels()
    if bl is None:
        return
    names, b_of_row = bl
    a.branch_names, a.branch_of_row = names, b_of_row
    b_of_x = b_of_row if emb is None else b_of_row[emb]
    B = len(names)
    S, cnt, sq = M.group_sums(X, b_of_x, B)
    if B <= 200:
        a.branch_matrix = [[num(x) for x in row] for row in M.cross_similarity(S, cnt, sq)]
    # leaves per branch
    if tree is not None:
        leaf_branch = np.array([tree.branches.index(tree.branch_of(leaf)) if tree.branch_of(leaf) in tree.branches else -1 for leaf in leaves])
    else:
        first: dict[str, int] = {}
        for leaf, b in zip(ds.leaf_ids, b_of_row.tolist(), strict=True):
            first.setdefault(leaf, b)
        leaf_branch = np.array([first.get(leaf, -1) for leaf in leaves])
    n_all = max(1, int((b_of_row >= 0).sum()))
    rows = []
    for b in range(B):
        rb = np.nonzero(b_of_row == b)[0]  # the branch's rows (all of them): its counts
        xb = rb if emb is None else np.nonzero(b_of_x == b)[0]  # its rows in X: its similarities
        lb = np.nonzero(leaf_branch == b)[0]
        remap = -np.ones(len(leaves), dtype=np.int64)
        remap[lb] = np.arange(len(lb))
        bt = [targets[i] for i in lb] if targets is not None else None
        occ = M.occupancy_metrics(M.leaf_counts(_sub_leaves(leaf_of_row[rb], remap), len(lb)), bt) if len(rb) else None
        Xb = X[xb]
        sim = M.leaf_similarity(Xb, _sub_leaves(leaf_of_x[xb], remap), len(lb)) if len(xb) else None
        vk = M.vendi_at_k(Xb, FIXED_K, rng) if len(xb) else {"value": None, "k": 0}
        rows.append({
            "branch": names[b],
            "node_id": tree.branches[b] if tree is not None else None,
            "samples": int(len(rb)),
            "share": len(rb) / n_all,
            "target": int(sum(bt)) if bt is not None else None,
            "leaves": int(len(lb)),
            "empty_leaves": int((sizes_arr[lb] == 0).sum()) if len(lb) else 0,
            "thin_leaves": occ["thin_leaves"] if occ else 0,
            "occupancy_entropy": num(occ["occupancy_entropy"]) if occ else None,
            "gini": num(occ["gini"]) if occ else None,
            "mean_similarity": num(M.mean_pairwise_cosine(Xb)) if len(xb) > 1 else None,
            "within_leaf_similarity": num(sim["within_leaf_similarity"]) if sim else None,
            "between_leaf_similarity": num(sim["between_leaf_similarity"]) if sim else None,
            "vendi_at_k": num(vk["value"]),
            "vendi_k": int(vk["k"]),
            "n": int(len(xb)), "model": model, "seed": seed,
        })
    a.branches = rows
    if tree is not None:
        a.tree_nodes = tree_counts(tree, leaves, sizes)


def _sub_leaves(leaf_of: np.ndarray, remap: np.ndarray) -> np.ndarray:
    """Leaf indices renumbered within a branch (``remap``); rows outside every leaf stay −1."""
    if not len(leaf_of):
        return np.zeros(0, np.int64)
    return np.where(leaf_of < 0, -1, remap[leaf_of])


def tree_counts(tree: TreeInfo, leaves: list[str], sizes: list[int]) -> list[dict[str, Any]]:
    """Nodes with subtree sample counts and quotas, for the sunburst (walk order)."""
    count = {leaf: int(s) for leaf, s in zip(leaves, sizes, strict=True)}
    sub: dict[str, int] = {i: 0 for i in tree.node_ids}
    for nid in reversed(tree.node_ids):
        c = count.get(nid, 0) + sub[nid]
        sub[nid] = c
        p = tree.parent[nid]
        if p is not None and p in sub:
            sub[p] += c
    return [
        {"id": nid, "parent": tree.parent[nid], "label": tree.label[nid], "count": sub[nid], "target": tree.target.get(nid, 0),
         "leaf": nid in count, "status": tree.status[nid]}
        for nid in tree.node_ids
    ]
