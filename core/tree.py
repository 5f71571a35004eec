"""The partition tree: nodes, paths, and (de)serialisation. No I/O here."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

TREE_FORMAT = "treesynth.tree/1"

# Persistent node states. Transient stages (writing pivots, classifying, ...) live only in events.
PENDING = "pending"  # not expanded yet (or expansion interrupted)
EXPANDED = "expanded"  # internal node with children
LEAF = "leaf"  # a leaf: samples are generated here
FAILED = "failed"  # a provider failure stopped it; a resume retries it
PRUNED = "pruned"  # removed by the user; gets no samples
STATUSES = (PENDING, EXPANDED, LEAF, FAILED, PRUNED)


@dataclass
class Node:
    id: str
    parent: str | None
    depth: int
    dimension: str | None = None  # the parent's dimension this node constrains
    value: str | None = None  # this node's attribute value
    values: list[str] = field(default_factory=list)  # open-ended node: values sampled at generation
    source: str = "root"  # pivots | coverage | open_ended | root
    target: int = 0  # samples allocated to this subtree
    status: str = PENDING
    split_dimension: str | None = None
    split_values: list[dict[str, Any]] = field(default_factory=list)  # [{value, source, pivots}]
    coverage: str | None = None  # none | complete | open_ended
    pivots: list[dict[str, str]] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    reason: str | None = None  # why it became a leaf early or failed
    revision: int = 0  # bumped when the user re-expands or renames it: its calls are asked afresh

    @property
    def open_ended(self) -> bool:
        return bool(self.values)

    def to_dict(self) -> dict[str, Any]:
        """Shallow: the lists are the node's own, so serialise the result before changing the node
        (dataclasses.asdict deep-copies and took ~120 ms for a 4,681-node tree snapshot)."""
        return {n: getattr(self, n) for n in _NODE_FIELDS}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        if not isinstance(d, dict):
            raise ValueError("node is not an object")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"node has unknown keys {sorted(unknown)}")
        n = cls(**d)
        if not isinstance(n.id, str) or n.status not in STATUSES or not isinstance(n.depth, int):
            raise ValueError(f"node {n.id!r} has an invalid id, status or depth")
        if not isinstance(n.children, list) or not all(isinstance(c, str) for c in n.children):
            raise ValueError(f"node {n.id!r} has invalid children")
        if not isinstance(n.target, int) or n.target < 0:
            raise ValueError(f"node {n.id!r} has an invalid target")
        return n


_NODE_FIELDS = tuple(Node.__dataclass_fields__)


class Tree:
    """Nodes keyed by id. Ids are positional ("0", "0.2", "0.2.1") so reruns give the same ids."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    @classmethod
    def new(cls, size: int) -> Tree:
        t = cls()
        t.nodes["0"] = Node(id="0", parent=None, depth=0, target=size)
        return t

    @property
    def root(self) -> Node:
        return self.nodes["0"]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def get(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def upsert(self, node: Node) -> None:
        self.nodes[node.id] = node

    def path(self, node_id: str) -> list[dict[str, str]]:
        """Root-to-node constraints as [{dimension, value}] (the root has none)."""
        out: list[dict[str, str]] = []
        n: Node | None = self.nodes[node_id]
        while n is not None and n.parent is not None:
            out.append({"dimension": n.dimension or "", "value": n.value or ""})
            n = self.nodes.get(n.parent)
        out.reverse()
        return out

    def remove(self, ids: list[str]) -> None:
        for i in ids:
            self.nodes.pop(i, None)

    def ancestor_dimensions(self, node_id: str) -> list[str]:
        return [p["dimension"] for p in self.path(node_id)]

    def leaves(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.status == LEAF]

    def walk(self, node_id: str = "0") -> Iterator[Node]:
        """Depth-first, children in order."""
        stack = [node_id]
        while stack:
            n = self.nodes[stack.pop()]
            yield n
            stack.extend(reversed([c for c in n.children if c in self.nodes]))

    def subtree_ids(self, node_id: str) -> list[str]:
        return [n.id for n in self.walk(node_id)]

    # ---- serialisation -------------------------------------------------
    def to_dict(self, seq: int = 0) -> dict[str, Any]:
        return {"format": TREE_FORMAT, "seq": seq, "nodes": [n.to_dict() for n in self.walk()] + self._orphans()}

    def _orphans(self) -> list[dict[str, Any]]:
        reachable = {n.id for n in self.walk()} if "0" in self.nodes else set()
        return [n.to_dict() for n in self.nodes.values() if n.id not in reachable]

    @classmethod
    def from_dict(cls, d: Any) -> tuple[Tree, int]:
        if not isinstance(d, dict) or d.get("format") != TREE_FORMAT:
            raise ValueError(f"not a {TREE_FORMAT} document")
        t = cls()
        nodes = d.get("nodes")
        if not isinstance(nodes, list):
            raise ValueError("'nodes' is not a list")
        for nd in nodes:
            n = Node.from_dict(nd)
            t.nodes[n.id] = n
        t.check()
        seq = d.get("seq", 0)
        return t, seq if isinstance(seq, int) else 0

    def check(self) -> None:
        """Structural invariants: a root, parents exist, children point back, ids positional."""
        if "0" not in self.nodes or self.nodes["0"].parent is not None:
            raise ValueError("the tree has no root node '0'")
        for n in self.nodes.values():
            if n.parent is not None:
                p = self.nodes.get(n.parent)
                if p is None:
                    raise ValueError(f"node {n.id!r} has a missing parent {n.parent!r}")
                if not n.id.startswith(n.parent + "."):
                    raise ValueError(f"node id {n.id!r} does not extend its parent's id")
                if n.depth != p.depth + 1:
                    raise ValueError(f"node {n.id!r} has depth {n.depth}, parent {p.depth}")
            for c in n.children:
                if c not in self.nodes or self.nodes[c].parent != n.id:
                    raise ValueError(f"node {n.id!r} lists child {c!r} that does not point back")

