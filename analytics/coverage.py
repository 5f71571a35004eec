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
    branch its own coverage row, the branch × branch similarity and the sunburst's node counts."""
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
    leaf_of_row = np.array([pos.get(leaf, -1) for leaf in ds.leaf_ids], dtype=np.int64)
    cov = M.coverage_metrics(X, leaf_of_row, len(leaves), targets)
    outside = int((leaf_of_row < 0).sum())
    cov["rows_outside_leaves"] = outside
    if outside:
        ds.notes.append(f"{outside:,} row(s) belong to no leaf of the tree (left out of the leaf coverage)")
    sizes = cov.pop("leaf_sizes")
    a.leaf_sizes = sizes
    a.leaf_targets = targets
    a.coverage = {k: num(v) for k, v in cov.items()}
    n_cov = cov["rows_in_leaves"]
    m = a.metrics
    m["leaves"] = rec(len(leaves), n_cov, None, seed)
    m["empty_leaves"] = rec(cov["empty_leaves"], n_cov, None, seed, known=tree is not None)
    m["thin_leaves"] = rec(cov["thin_leaves"], n_cov, None, seed, rule=cov["thin_rule"])
    m["occupancy_entropy"] = rec(cov["occupancy_entropy"], n_cov, None, seed)
    m["leaf_gini"] = rec(cov["gini"], n_cov, None, seed)
    m["within_leaf_similarity"] = rec(cov["within_leaf_similarity"], n_cov, model, seed)
    m["between_leaf_similarity"] = rec(cov["between_leaf_similarity"], n_cov, model, seed)
    m["leaf_separation"] = rec(cov["leaf_separation"], n_cov, model, seed)

    bl = ds.branch_labels()
    if bl is None:
        return
    names, b_of_row = bl
    a.branch_names, a.branch_of_row = names, b_of_row
    B = len(names)
    S, cnt, sq = M.group_sums(X, b_of_row, B)
    if B <= 200:
        a.branch_matrix = [[num(x) for x in row] for row in M.cross_similarity(S, cnt, sq)]
    # leaves per branch
    if tree is not None:
        leaf_branch = np.array([tree.branches.index(tree.branch_of(leaf)) if tree.branch_of(leaf) in tree.branches else -1 for leaf in leaves])
    else:
        first = {}
        for leaf, b in zip(ds.leaf_ids, b_of_row, strict=True):
            first.setdefault(leaf, b)
        leaf_branch = np.array([first.get(leaf, -1) for leaf in leaves])
    sizes_arr = np.asarray(sizes)
    rows = []
    n_all = max(1, int(cnt.sum()))
    for b in range(B):
        rb = np.nonzero(b_of_row == b)[0]
        lb = np.nonzero(leaf_branch == b)[0]
        remap = -np.ones(len(leaves), dtype=np.int64)
        remap[lb] = np.arange(len(lb))
        sub_leaf = remap[leaf_of_row[rb]] if len(rb) else np.zeros(0, np.int64)
        sub_leaf = np.where(leaf_of_row[rb] < 0, -1, sub_leaf) if len(rb) else sub_leaf
        bt = [targets[i] for i in lb] if targets is not None else None
        bc = M.coverage_metrics(X[rb], sub_leaf, len(lb), bt) if len(rb) else None
        vk = M.vendi_at_k(X[rb], FIXED_K, rng) if len(rb) else {"value": None, "k": 0}
        rows.append({
            "branch": names[b],
            "node_id": tree.branches[b] if tree is not None else None,
            "samples": int(len(rb)),
            "share": len(rb) / n_all,
            "target": int(sum(bt)) if bt is not None else None,
            "leaves": int(len(lb)),
            "empty_leaves": int((sizes_arr[lb] == 0).sum()) if len(lb) else 0,
            "thin_leaves": bc["thin_leaves"] if bc else 0,
            "occupancy_entropy": num(bc["occupancy_entropy"]) if bc else None,
            "gini": num(bc["gini"]) if bc else None,
            "mean_similarity": num(M.mean_pairwise_cosine(X[rb])) if len(rb) > 1 else None,
            "within_leaf_similarity": num(bc["within_leaf_similarity"]) if bc else None,
            "between_leaf_similarity": num(bc["between_leaf_similarity"]) if bc else None,
            "vendi_at_k": num(vk["value"]),
            "vendi_k": int(vk["k"]),
            "n": int(len(rb)), "model": model, "seed": seed,
        })
    a.branches = rows
    if tree is not None:
        a.tree_nodes = tree_counts(tree, leaves, sizes)


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
