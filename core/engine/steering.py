"""Edits made while a run goes on: prune, add/rename/remove a value, re-expand. Each is journaled, so a
resumed run keeps it, and each emits events, so every front end sees it. Only subtrees without samples
may change."""

from __future__ import annotations

import asyncio

from .. import events as ev
from ..allocate import allocate
from ..errors import SteeringError
from ..partition import is_catch_all
from ..text import normalise
from ..tree import EXPANDED, FAILED, LEAF, PENDING, PRUNED, Node
from .base import EngineBase


class Steering(EngineBase):
    def prune(self, node_id: str) -> None:
        """Give a subtree no samples; the quota goes to the other leaves at the end of the run."""
        if node_id == "0":
            raise SteeringError("the root cannot be pruned")
        node = self._editable(node_id, "prune")
        self._prune_subtree(node, "pruned by user")

    def add_value(self, node_id: str, value: str) -> str:
        """Add an attribute value (a new child) to an expanded node; returns the child's id."""
        node = self._editable(node_id, "edit")
        if node.status != EXPANDED:
            raise SteeringError(f"node {node_id} has no values to edit (it is {node.status})")
        value = self._check_value(node, value)
        child = Node(
            id=f"{node.id}.{len(node.children)}", parent=node.id, depth=node.depth + 1,
            dimension=node.split_dimension, value=value, source="user",
        )
        self.journal(child)
        node.children.append(child.id)
        node.split_values.append({"value": value, "source": "user", "pivots": []})
        self.journal(node)
        self._reallocate(node)
        self._emit_children(node)
        return child.id

    def rename_value(self, child_id: str, new_value: str) -> None:
        """Rename a child's value; its subtree is asked again under the new value."""
        child = self._editable(child_id, "rename")
        if child.parent is None:
            raise SteeringError("the root has no value")
        parent = self.tree.get(child.parent)
        new_value = self._check_value(parent, new_value, ignore=child.id)
        old = child.value
        for sv in parent.split_values:
            if sv.get("value") == old:
                sv["value"] = new_value
        self.journal(parent)
        child.value = new_value
        if child.children or child.status in (EXPANDED, FAILED) or child.id in self._expanding:
            self._reset(child)
        else:
            child.revision += 1
            self.journal(child)
            if child.status == LEAF and child.target > 0:
                self._spawn(self._synth_after(child.id))
        self._emit_children(parent)

    def remove_value(self, child_id: str) -> None:
        """Remove a child's value; its quota is re-split over its siblings."""
        child = self._editable(child_id, "remove")
        if child.parent is None:
            raise SteeringError("the root cannot be removed")
        parent = self.tree.get(child.parent)
        live = [c for c in parent.children if self.tree.get(c).status != PRUNED]
        if len(live) <= 1:
            raise SteeringError(f"{child.value!r} is the last value of node {parent.id}; prune the node instead")
        self._prune_subtree(child, "value removed by user")
        self._reallocate(parent)
        self._emit_children(parent)

    def reexpand(self, node_id: str) -> None:
        """Drop a node's children and expand it again with fresh calls."""
        node = self._editable(node_id, "re-expand")
        if node.depth >= self.cfg.depth:
            raise SteeringError(f"node {node_id} is at the maximum depth ({self.cfg.depth}); it can only be a leaf")
        if node_id in self._expanding:
            raise SteeringError(f"node {node_id} is expanding right now")
        self._reset(node)

    # ------------------------------------------------------------------ helpers
    def _subtree_rows(self, node_id: str) -> int:
        return sum(self.rows_in(i) for i in self.tree.subtree_ids(node_id))

    def _editable(self, node_id: str, what: str) -> Node:
        node = self.tree.nodes.get(node_id)
        if node is None:
            raise SteeringError(f"no node {node_id!r}")
        if node.status == PRUNED:
            raise SteeringError(f"node {node_id} is pruned")
        if self._subtree_rows(node_id):
            raise SteeringError(f"cannot {what} node {node_id}: its subtree already has samples")
        return node

    def _check_value(self, parent: Node, value: str, ignore: str | None = None) -> str:
        value = " ".join(str(value).split())
        if not normalise(value):
            raise SteeringError("the value is empty")
        if len(value) > 120:
            raise SteeringError("the value is longer than 120 characters")
        if is_catch_all(value):
            raise SteeringError(f"{value!r} is a catch-all value; name a concrete one")
        for cid in parent.children:
            c = self.tree.get(cid)
            if cid != ignore and c.status != PRUNED and normalise(c.value or "") == normalise(value):
                raise SteeringError(f"{value!r} repeats the existing value {c.value!r}")
        return value

    def _prune_subtree(self, node: Node, reason: str) -> None:
        for nid in self.tree.subtree_ids(node.id):
            n = self.tree.get(nid)
            if n.status != PRUNED:
                n.status, n.reason = PRUNED, reason
                self.journal(n)
        self._emit(ev.NodePruned(node_id=node.id, reason=reason))

    def _reallocate(self, node: Node) -> None:
        """Re-split a node's quota over its live children (their subtrees have no samples)."""
        kids = [self.tree.get(c) for c in node.children if self.tree.get(c).status != PRUNED]
        for k, t in zip(kids, allocate(node.target, [float(len(k.values)) if k.values else 1.0 for k in kids]), strict=True):
            if k.target != t:
                k.target = t
                if k.status == LEAF and t > 0 and k.reason and k.reason.startswith("no samples allocated"):
                    k.status, k.reason = PENDING, None
                self.journal(k)
            if k.status == EXPANDED:
                self._reallocate(k)
            elif k.status == PENDING and k.id not in self._expanding:
                self._schedule(k)
            elif k.status == LEAF and self.rows_in(k.id) < k.target and k.id not in self._synthesising:
                self._spawn(self._synth(k.id))

    async def _synth_after(self, lid: str) -> None:
        # a stale synthesis of the old value may still be winding down
        while lid in self._synthesising:
            await asyncio.sleep(0.01)
        await self._synth(lid)

    def _reset(self, node: Node) -> None:
        drop = [i for i in self.tree.subtree_ids(node.id) if i != node.id]
        if node.status == EXPANDED:
            self._n_expanded -= 1
        self._n_expanded -= sum(1 for i in drop if self.tree.get(i).status == EXPANDED)
        if drop:
            self.tree.remove(drop)
            self.store.journal_delete(drop)
        node.children, node.pivots, node.split_values = [], [], []
        node.split_dimension = node.coverage = node.reason = None
        node.status = PENDING
        node.revision += 1
        self.journal(node)
        self._emit(ev.NodeReset(node_id=node.id))
        self._schedule(node)
