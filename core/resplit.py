"""Re-splitting a grown tree's quotas for a new total (``treesynth extend``), pure: no I/O here.

An extended run keeps its tree and its rows, so its quotas are split again by the rule that made them
(core/allocate.py, top-down, each live child weighted as its parent split it: an open-ended child by its
value count, any other by one). A row already written is never taken back, so a leaf that holds more rows
than its new share keeps them, and the rows still to make are spread over the shares left unfilled
(largest remainder again, weighted by what each lacks). The result sums to exactly the new total.

It depends only on the tree's shape, the new total and the rows each leaf holds, never on the targets the
tree holds now: run again after a crash part-way through journaling it, it gives the same targets."""

from __future__ import annotations

from collections.abc import Mapping

from .allocate import allocate
from .tree import EXPANDED, PRUNED, Node, Tree


def child_weight(node: Node) -> float:
    """The weight a split gives a child (core/partition.py ``plan_children``): its value count when it is
    open-ended, else one."""
    return float(len(node.values)) if node.values else 1.0


def _live_children(tree: Tree, node: Node) -> list[Node]:
    return [tree.get(c) for c in node.children if c in tree.nodes and tree.get(c).status != PRUNED]


def ideal_shares(tree: Tree, size: int) -> dict[str, int]:
    """Every live node's share of ``size`` by the allocation rule alone (rows held aside)."""
    shares = {tree.root.id: size}
    for n in tree.walk():
        if n.status == PRUNED or n.id not in shares:
            continue
        kids = _live_children(tree, n) if n.status == EXPANDED else []
        if kids:
            for k, t in zip(kids, allocate(shares[n.id], [child_weight(k) for k in kids]), strict=True):
                shares[k.id] = t
    return shares


def resplit_targets(tree: Tree, held: Mapping[str, int], size: int) -> dict[str, int]:
    """The new target of every live node for a total of ``size``: a unit (a leaf, or a node not expanded
    yet) gets its rows ``held`` plus its part of the rows still to make; an expanded node the sum of its
    live children; the root exactly ``size``."""
    shares = ideal_shares(tree, size)
    units = [n for n in tree.walk() if n.id in shares and not (n.status == EXPANDED and _live_children(tree, n))]
    have = [max(0, int(held.get(u.id, 0))) for u in units]
    lack = [max(0, shares[u.id] - h) for u, h in zip(units, have, strict=True)]
    todo = size - sum(have)
    extra = allocate(todo, lack) if todo > 0 and sum(lack) > 0 else [0] * len(units)
    targets = {u.id: h + e for u, h, e in zip(units, have, extra, strict=True)}
    for n in reversed(list(tree.walk())):  # children before their parent
        if n.id in shares and n.id not in targets:
            targets[n.id] = sum(targets[k.id] for k in _live_children(tree, n))
    targets[tree.root.id] = size
    return targets


def resplit(tree: Tree, held: Mapping[str, int], size: int) -> list[Node]:
    """Set the new targets on ``tree``; returns the nodes that changed, the root last (journaled in this
    order, a root with the new total means every other node already has its new target)."""
    targets = resplit_targets(tree, held, size)
    changed = []
    for n in tree.walk():
        t = targets.get(n.id)
        if t is not None and n.target != t:
            n.target = t
            changed.append(n)
    changed.sort(key=lambda n: n.parent is None)  # stable: the root goes last
    return changed
