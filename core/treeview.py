"""Plain-text rendering of a tree with sample counts (used by `treesynth tree`)."""

from __future__ import annotations

from .clusters import is_fallback_dimension
from .text import truncate
from .tree import EXPANDED, Node, Tree


def subtree_counts(tree: Tree, leaf_counts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in reversed(list(tree.walk())):
        out[n.id] = leaf_counts.get(n.id, 0) + sum(out.get(c, 0) for c in n.children)
    return out


def render_tree(tree: Tree, leaf_counts: dict[str, int], max_depth: int | None = None,
                leaf_targets: dict[str, int] | None = None) -> str:
    """``leaf_targets`` replaces the tree's own targets (a balance run's planned rows per leaf): a node's
    target is then the sum over the leaves under it."""
    counts = subtree_counts(tree, leaf_counts)
    targets = subtree_counts(tree, leaf_targets) if leaf_targets is not None else {n.id: n.target for n in tree}
    lines: list[str] = []

    def label(n: Node) -> str:
        head = "(root)" if n.parent is None else f"{n.dimension} = {truncate(n.value or '', 60)}"
        extra = f" [{n.status}]" if n.status not in (EXPANDED, "leaf") else ""
        split = f"  -> split by {n.split_dimension!r}" if n.status == EXPANDED and n.split_dimension else ""
        if split and is_fallback_dimension(n.split_dimension):
            split += " [data-driven: embedding clusters; the model gave no valid split]"
        src = " [data-driven]" if n.source == "data" else ""
        oe = f" (sampled from {len(n.values)} values)" if n.values else ""
        reason = f"  ({truncate(n.reason, 80)})" if n.reason else ""
        return f"{head}{src}{oe}  {counts.get(n.id, 0)}/{targets.get(n.id, 0)}{extra}{split}{reason}"

    def rec(nid: str, prefix: str, last: bool, root: bool) -> None:
        n = tree.get(nid)
        if root:
            lines.append(label(n))
        else:
            lines.append(f"{prefix}{'└── ' if last else '├── '}{label(n)}")
        if max_depth is not None and n.depth >= max_depth:
            return
        kids = [c for c in n.children if c in tree.nodes]
        for i, c in enumerate(kids):
            rec(c, prefix if root else prefix + ("    " if last else "│   "), i == len(kids) - 1, False)

    rec("0", "", True, True)
    leaves = sum(1 for n in tree if n.status == "leaf")
    lines.append(f"{len(tree)} nodes, {leaves} leaves, {sum(leaf_counts.values())} samples")
    return "\n".join(lines)
