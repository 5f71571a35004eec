"""The TUI's view of a run: a mirror of the tree built from engine events (pure; no Textual).

The engine's event stream is the only input while a run goes on; ``seed_from_tree`` fills the
mirror from a saved tree when a run is resumed or browsed. ``RunModel.apply`` returns what
changed, so the tree widget can update only those nodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.cells import cell_len

from treesynth.core import events as ev
from treesynth.core.text import truncate
from treesynth.core.tree import EXPANDED, FAILED, LEAF, PRUNED, Tree

# Display states (the engine's persistent statuses plus the transient stages of its events).
QUEUED = "queued"
PIVOTS = "pivots"
CLASSIFY = "classify"
SUPPLEMENT = "supplement"
SPLIT = "split"  # expanded; its subtree is still being grown or filled
SYNTH = "synth"
DONE = "done"
FAILED_S = "failed"
PRUNED_S = "pruned"

STAGE_STATE = {"pivots": PIVOTS, "classify": CLASSIFY, "supplement": SUPPLEMENT, "synthesis": SYNTH}

# glyph, style, description (the help screen's legend is built from this table)
GLYPHS: dict[str, tuple[str, str, str]] = {
    QUEUED: ("○", "dim", "queued"),
    PIVOTS: ("◔", "bold cyan", "writing pivot samples"),
    CLASSIFY: ("◑", "bold cyan", "classifying the pivots (choosing a dimension)"),
    SUPPLEMENT: ("◕", "bold cyan", "supplementing values (coverage)"),
    SPLIT: ("◆", "blue", "split into children; subtree in progress"),
    SYNTH: ("●", "bold yellow", "synthesising samples"),
    DONE: ("✓", "bold green", "done"),
    FAILED_S: ("✗", "bold red", "failed (a resume retries it)"),
    PRUNED_S: ("⊘", "dim", "pruned (gets no samples)"),
}

VALUE_CHARS = 60
PREVIEWS_PER_LEAF = 3


@dataclass(slots=True, eq=False)
class ViewNode:
    id: str
    parent: str | None
    depth: int
    dimension: str | None = None
    value: str | None = None
    source: str = "root"
    open_values: int = 0  # > 0: open-ended node whose value is sampled from this many values
    target: int = 0
    done: int = 0  # samples in this subtree
    state: str = QUEUED
    leaf: bool = False
    reason: str | None = None
    split_dimension: str | None = None
    coverage: str | None = None
    children: list[str] = field(default_factory=list)
    preview: list[str] = field(default_factory=list)
    text: str = ""  # the label without glyph and counts, cached
    counts: str = ""  # "done/target", cached
    width: int = 0  # cell width of the whole label, cached

    def relabel(self) -> None:
        if self.parent is None:
            head = "(root)"
        else:
            head = f"{self.dimension} = {truncate(self.value or '', VALUE_CHARS)}"
            if self.source == "data":  # a data-driven split (embedding clusters): say so on the node itself
                head = f"[data-driven] {truncate(self.value or '', VALUE_CHARS)}"
        self.text = head
        self.counts = f"{self.done:,}/{self.target:,}"
        self.width = 3 + cell_len(head) + len(self.counts)


@dataclass
class Changes:
    """What one batch of events changed."""

    dirty: set[str] = field(default_factory=set)  # labels to redraw
    added: list[tuple[str, list[str]]] = field(default_factory=list)  # (parent, new child ids), in order
    restructured: set[str] = field(default_factory=set)  # nodes whose children must be reconciled
    removed: set[str] = field(default_factory=set)  # ids no longer in the model
    steering: bool = False  # targets may have moved anywhere: resync them from the live tree
    n_added: int = 0  # nodes added (a bound on the widget work one batch may cause)
    log: list[tuple[str, str]] = field(default_factory=list)  # (level, line)
    finished: ev.RunFinished | None = None

    @property
    def structural(self) -> bool:
        return bool(self.added or self.restructured or self.removed)


class RunModel:
    def __init__(self, size: int = 0) -> None:
        self.nodes: dict[str, ViewNode] = {}
        root = ViewNode(id="0", parent=None, depth=0, target=size)
        root.relabel()
        self.nodes["0"] = root

    def __len__(self) -> int:
        return len(self.nodes)

    def get(self, node_id: str) -> ViewNode | None:
        return self.nodes.get(node_id)

    def path(self, node_id: str) -> list[ViewNode]:
        out = []
        n = self.nodes.get(node_id)
        while n is not None and n.parent is not None:
            out.append(n)
            n = self.nodes.get(n.parent)
        out.reverse()
        return out

    def walk(self, node_id: str = "0") -> Iterable[ViewNode]:
        stack = [node_id]
        while stack:
            n = self.nodes.get(stack.pop())
            if n is None:
                continue
            yield n
            stack.extend(reversed(n.children))

    # ------------------------------------------------------------------ seeding
    def seed_from_tree(self, tree: Tree, rows: dict[str, int], previews: dict[str, list[str]] | None = None) -> None:
        """Fill the mirror from a saved tree and per-leaf sample counts (resume, browse)."""
        self.nodes.clear()
        for n in tree.walk():
            vn = ViewNode(
                id=n.id, parent=n.parent, depth=n.depth, dimension=n.dimension, value=n.value, source=n.source,
                open_values=len(n.values), target=n.target, reason=n.reason, split_dimension=n.split_dimension,
                coverage=n.coverage, children=[c for c in n.children if c in tree.nodes],
            )
            vn.leaf = n.status == LEAF
            vn.done = rows.get(n.id, 0) if vn.leaf else 0
            if previews and n.id in previews:
                vn.preview = list(previews[n.id])[-PREVIEWS_PER_LEAF:]
            if n.status == PRUNED:
                vn.state = PRUNED_S
            elif n.status == FAILED:
                vn.state = FAILED_S
            elif n.status == EXPANDED:
                vn.state = SPLIT
            elif vn.leaf:
                vn.state = DONE if vn.done >= vn.target else QUEUED
            self.nodes[n.id] = vn
        if "0" not in self.nodes:
            self.nodes["0"] = ViewNode(id="0", parent=None, depth=0)
        for vn in reversed(list(self.walk())):  # children before parents: subtree sums
            if vn.children:
                vn.done = sum(self.nodes[c].done for c in vn.children if c in self.nodes)
                if vn.state == SPLIT and vn.target and vn.done >= vn.target:
                    vn.state = DONE
            vn.relabel()

    # ------------------------------------------------------------------ events
    def apply(self, events: Iterable[ev.Event], ch: Changes | None = None) -> Changes:
        ch = ch or Changes()
        for e in events:
            self.apply_one(e, ch)
        return ch

    def _touch(self, vn: ViewNode, ch: Changes) -> None:
        vn.relabel()
        ch.dirty.add(vn.id)

    def _node(self, node_id: str, parent: str | None = None, depth: int = 0) -> ViewNode:
        vn = self.nodes.get(node_id)
        if vn is None:  # an event for a node the mirror has not seen (should not happen): add it
            vn = self.nodes[node_id] = ViewNode(id=node_id, parent=parent, depth=depth)
            vn.relabel()
        return vn

    def _add_done(self, vn: ViewNode, delta: int, ch: Changes) -> None:
        """Propagate a change of samples done up to the root; ancestors may become done."""
        p = self.nodes.get(vn.parent) if vn.parent else None
        while p is not None:
            p.done += delta
            if p.state == SPLIT and p.target and p.done >= p.target:
                p.state = DONE
            elif p.state == DONE and p.children and p.done < p.target:
                p.state = SPLIT
            self._touch(p, ch)
            p = self.nodes.get(p.parent) if p.parent else None

    def _drop_children(self, vn: ViewNode, ch: Changes) -> None:
        gone = 0
        for c in vn.children:
            for d in list(self.walk(c)):
                if d.leaf:
                    gone += d.done
                del self.nodes[d.id]
                ch.removed.add(d.id)
        vn.children = []
        if gone:
            vn.done -= gone
            self._add_done(vn, -gone, ch)
        ch.restructured.add(vn.id)

    def apply_one(self, e: ev.Event, ch: Changes) -> None:
        if isinstance(e, ev.NodeStarted):
            vn = self._node(e.node_id, e.parent_id, e.depth)
            st = STAGE_STATE.get(e.stage)
            if st is not None and vn.state != PRUNED_S:
                vn.state = st
                if st == SYNTH:
                    vn.leaf = True
                self._touch(vn, ch)
        elif isinstance(e, ev.NodeExpanded):
            self._expanded(e, ch)
        elif isinstance(e, ev.NodeLeaf):
            vn = self._node(e.node_id)
            vn.leaf = True
            vn.target = e.target
            vn.reason = e.reason
            if vn.state != PRUNED_S:
                vn.state = DONE if vn.done >= vn.target else QUEUED
            self._touch(vn, ch)
            if e.reason and not e.reason.startswith(("no samples allocated", "open-ended value list")):
                ch.log.append(("leaf", f"node {e.node_id} became a leaf early: {e.reason}"))
        elif isinstance(e, ev.NodeFailed):
            vn = self._node(e.node_id)
            vn.state, vn.reason = FAILED_S, e.reason
            self._touch(vn, ch)
            ch.log.append(("error", f"node {e.node_id} failed: {e.reason}"))
        elif isinstance(e, ev.LeafProgress):
            vn = self._node(e.node_id)
            delta = e.done - vn.done
            vn.done, vn.target, vn.leaf = e.done, e.target, True
            if vn.state != PRUNED_S:
                vn.state = DONE if e.done >= e.target else SYNTH
            if e.preview:
                vn.preview = (vn.preview + list(e.preview))[-PREVIEWS_PER_LEAF:]
            self._touch(vn, ch)
            if delta:
                self._add_done(vn, delta, ch)
        elif isinstance(e, ev.NodePruned):
            vn = self.nodes.get(e.node_id)
            if vn is not None:
                for d in self.walk(e.node_id):
                    d.state, d.reason = PRUNED_S, e.reason
                    self._touch(d, ch)
            ch.steering = True
            ch.log.append(("steer", f"node {e.node_id} pruned ({e.reason})"))
        elif isinstance(e, ev.NodeReset):
            vn = self._node(e.node_id)
            self._drop_children(vn, ch)
            vn.state, vn.leaf, vn.reason = QUEUED, False, None
            vn.split_dimension = vn.coverage = None
            self._touch(vn, ch)
            ch.steering = True
            ch.log.append(("steer", f"node {e.node_id} reset: it will be expanded again"))
        elif isinstance(e, ev.RunWarning):
            ch.log.append(("warn", e.message))
        elif isinstance(e, ev.RunFinished):
            ch.finished = e

    def _expanded(self, e: ev.NodeExpanded, ch: Changes) -> None:
        vn = self._node(e.node_id)
        again = bool(vn.children)  # a re-emission after a steering edit
        vn.split_dimension, vn.coverage, vn.leaf = e.dimension, e.coverage, False
        if vn.state != PRUNED_S:
            vn.state = DONE if vn.target and vn.done >= vn.target else SPLIT
        new_ids = [c.node_id for c in e.children]
        fresh: list[str] = []
        for c in e.children:
            cn = self.nodes.get(c.node_id)
            if cn is None:
                cn = self.nodes[c.node_id] = ViewNode(id=c.node_id, parent=vn.id, depth=vn.depth + 1)
                fresh.append(c.node_id)
            cn.dimension, cn.value, cn.source, cn.target = e.dimension, c.value, c.source, c.target
            if c.open_ended and not cn.open_values:
                cn.open_values = -1  # the count is read from the live tree
            self._touch(cn, ch)
        if again:
            ch.steering = True
            keep = set(new_ids)
            kept: list[str] = []
            for cid in vn.children:
                if cid in keep:
                    continue
                c = self.nodes.get(cid)
                if c is not None and c.state == PRUNED_S:
                    kept.append(cid)  # pruned or removed values stay visible, greyed out
                elif c is not None:
                    for d in list(self.walk(cid)):
                        self.nodes.pop(d.id, None)
                        ch.removed.add(d.id)
            ordered = sorted(set(kept) | keep, key=id_key)
            if ordered != vn.children:
                vn.children = ordered
                ch.restructured.add(vn.id)
        else:
            vn.children = list(new_ids)
            if fresh:
                ch.added.append((vn.id, fresh))
        ch.n_added += len(fresh)
        self._touch(vn, ch)

    # ------------------------------------------------------------------ live tree
    def sync_from_tree(self, tree: Tree, ids: Iterable[str] | None = None) -> set[str]:
        """Copy targets and open-ended value counts from the engine's live tree; returns changed ids."""
        changed: set[str] = set()
        for nid in ids if ids is not None else list(self.nodes):
            vn, n = self.nodes.get(nid), tree.nodes.get(nid)
            if vn is None or n is None:
                continue
            ov = len(n.values)
            if vn.target != n.target or (vn.open_values != ov and (ov or vn.open_values < 0)):
                vn.target, vn.open_values = n.target, ov
                if vn.leaf and vn.state in (QUEUED, DONE):
                    vn.state = DONE if vn.done >= vn.target else QUEUED
                vn.relabel()
                changed.add(nid)
        return changed


def id_key(node_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in node_id.split(".") if p.isdigit())
