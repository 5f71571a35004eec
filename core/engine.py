"""The TreeSynth engine: grows the partition tree and fills its leaves, pipelined.

A node expands as soon as its parent is done; a leaf starts synthesising as soon as it
exists. Sample quotas flow down the tree (each split divides its node's quota among the
children, open-ended children weighted by their value count), which is what lets a leaf
start before the whole tree is known.

Every leaf job is self-contained (path, target, prompt parameters) and its rows carry
deterministic ids ``<leaf>/<slot>/<i>``, so results merge by leaf id whatever runs them.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from . import events as ev
from .allocate import allocate, calls_for
from .errors import BudgetExhausted, SteeringError, StopRequested, StorageError, TransientProviderError
from .llm import PRIORITY_LEAF, PRIORITY_TREE, LLMClient, LLMRequest, clean_text, close_transport
from .parsing import ParseError, parse_json, parse_samples, salvage_items
from .clusters import is_fallback_dimension
from .criterion import assign_schema, build_split, criterion_schema, placeholder_reason, validate_assignment, validate_criterion
from .partition import Coverage, PartitionError, is_catch_all, plan_children, validate_coverage
from .prompts import Prompts
from .schemas import samples_schema, supplement_schema
from .store import LeafRecord, Recovered, RunStore
from .text import copies_example, normalise, sample_key, sample_plain_text, truncate
from .tree import EXPANDED, FAILED, LEAF, PENDING, PRUNED, Node, Tree


class _Stale(Exception):
    """The node was pruned, reset or renamed while a call was in flight: drop the answer."""


def _scrub(obj: Any) -> Any:
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, list):
        return [_scrub(x) for x in obj]
    if isinstance(obj, dict):
        return {_scrub(k) if isinstance(k, str) else k: _scrub(v) for k, v in obj.items()}
    return obj


def parse_answer(text: str | None) -> Any:
    """parse_json, minus lone surrogates that JSON escapes (\\ud800) can smuggle in: they cannot be
    written as UTF-8, so one would crash the journal or samples.jsonl."""
    obj = parse_json(text)
    if text and "\\u" in text and _SURROGATE_ESCAPE.search(text):
        obj = _scrub(obj)
    return obj


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
HEARTBEAT_S = 1.0  # while calls are in flight, a usage event at least this often (elapsed and waiting times tick)


def _is_storage_error(e: BaseException) -> bool:
    import sqlite3

    return isinstance(e, (OSError, sqlite3.Error)) and not isinstance(e, (ConnectionError, TimeoutError))


def storage_error(root: Path, e: BaseException) -> StorageError:
    """One line for a failed write: what failed, and that the run can be resumed once it is fixed."""
    if isinstance(e, OSError):
        what = e.strerror or str(e)
        if e.filename:
            what += f": {Path(str(e.filename)).name}"
    else:
        what = f"response cache: {' '.join(str(e).split())[:200]}"
    return StorageError(
        f"cannot write to run directory {str(root)!r} ({what}); everything up to the last finished call is saved;"
        f" fix the cause (free disk space, permissions) and resume with: treesynth run --resume {root}"
    )


def slot_id(node: Node) -> str:
    """The node's part of cache slots and seeds; a revision asks every call afresh."""
    return node.id if not node.revision else f"{node.id}~r{node.revision}"


def derive_seed(seed: int, *parts: Any) -> int:
    h = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=4).digest()
    return int.from_bytes(h, "little") & 0x7FFFFFFF


@dataclass(frozen=True)
class LeafJob:
    """Everything needed to synthesise one leaf, independent of the engine that made it."""

    leaf_id: str
    path: tuple[tuple[str, str], ...]
    open_values: tuple[str, ...]
    target: int
    first_slot: int
    skip_slots: frozenset[int]
    revision: int = 0


class DataOutputs:
    """Data mode's end of run (see core/balance.py)."""

    def complete(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def write(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class Engine:
    def __init__(
        self,
        cfg,
        store: RunStore,
        client: LLMClient,
        prompts: Prompts,
        recovered: Recovered,
        on_event: Callable[[ev.Event], None] | None = None,
        resumed: bool = False,
        embed: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.cfg = cfg
        # texts -> unit vectors: the data-driven split of a node's pivots when the model gives no valid split
        self.embed = embed
        self.patterns = {f: re.compile(rx) for f, rx in cfg.field_patterns.items()}  # every sample's fields must match
        # the prompts' examples, by their first field: a sample that copies one is rejected
        self._example_texts = [str(e.get(cfg.fields[0], "")) for e in cfg.examples]
        self.store = store
        self.client = client
        self.prompts = prompts
        self.tree: Tree = recovered.tree
        self.on_event = on_event or (lambda e: None)
        self.resumed = resumed
        self.leaf_rows: dict[str, int] = {k: v.rows for k, v in recovered.leaves.items()}
        self.leaf_rec: dict[str, LeafRecord] = dict(recovered.leaves)
        self.keys: set[int] = set(recovered.keys)
        self.rows = recovered.rows
        # what progress counts: rows + samples_offset of samples_target (a balance run: its kept originals, its plan)
        self.samples_offset = 0
        self.samples_target = cfg.size
        self._tasks: set[asyncio.Task] = set()
        self._task_finished = asyncio.Event()  # set by _task_done: _drain wakes in O(1), not O(tasks)
        self._leaf_gate = asyncio.Semaphore(max(2, cfg.concurrency))
        self._stop_reason: str | None = None
        self._fatal: BaseException | None = None
        self._short: set[str] = set()
        self._t0 = time.monotonic()
        self._usage_dirty = True
        self._last_usage = 0.0
        self._samples_schema_cache: dict[int, dict] = {}
        client.on_usage = self._on_usage
        self._startup_warnings = list(recovered.warnings)
        self._n_expanded = sum(1 for n in self.tree if n.status == EXPANDED)
        self._expanding: set[str] = set()
        self._synthesising: set[str] = set()
        # Data mode (treesynth balance): pivots come from the data, rows are routed to children,
        # leaves are filled only when the balancing plan says so. None/True: plain generation.
        self.pivot_source: Callable[[Node], list[dict[str, str]]] | None = None
        self.router: Callable[[Node, Any, list[Node]], Awaitable[None]] | None = None
        self.examples_for: Callable[[str], list[dict[str, str]]] | None = None
        self.accept_filter: Callable[[str, list[dict[str, str]]], list[dict[str, str]]] | None = None
        self.synthesise_leaves = True
        self.after_growth: Callable[[], None] | None = None  # data mode: plan, then start filling leaves
        # data mode: a split from the data itself when the model gives none (a model too weak to classify)
        self.split_fallback: Callable[[Node], Any] | None = None
        self.outputs: "DataOutputs | None" = None  # data mode: completion test and output writer
        self._warned_cost = not client.usage.cost_known  # already warned at start for resumed runs

    # ------------------------------------------------------------------ events
    def _emit(self, e: ev.Event) -> None:
        if not isinstance(e, ev.Usage):
            self.store.append_event(e.to_dict())
        try:
            self.on_event(e)
        except Exception as exc:  # noqa: BLE001 - a broken front end must not kill the run
            self.store.append_event({"event": "warning", "message": f"event consumer failed: {exc!r}"})

    def warn(self, message: str, node_id: str | None = None) -> None:
        self._emit(ev.RunWarning(message=message, node_id=node_id))

    def usage_event(self) -> ev.Usage:
        u = self.client.usage
        return ev.Usage(
            requests=u.requests, cache_hits=u.cache_hits, tokens_in=u.tokens_in, tokens_out=u.tokens_out,
            cost_usd=u.cost_usd, retries=u.retries, errors=u.errors, invalid=u.invalid,
            elapsed_s=time.monotonic() - self._t0,
            in_flight=self.client.calls_in_flight, oldest_in_flight_s=self.client.oldest_in_flight_s(),
        )

    def _on_usage(self) -> None:
        self._usage_dirty = True
        if self.cfg.budget is not None and not self.client.usage.cost_known and not self._warned_cost:
            self._warned_cost = True
            self.warn(f"cost is unknown for {self.cfg.model}: the budget cannot be enforced (tokens are still counted)")
        now = time.monotonic()
        if now - self._last_usage >= 0.1:
            self._last_usage = now
            self._usage_dirty = False
            self._emit(self.usage_event())

    async def _ticker(self) -> None:
        last_state = 0.0
        while True:
            await asyncio.sleep(0.5)
            try:
                # a heartbeat while calls are in flight: a slow first call (a local model, a cold server)
                # shows as a call waiting N s, not as a display frozen at 0 requests
                heartbeat = self.client.calls_in_flight > 0 and time.monotonic() - self._last_usage >= HEARTBEAT_S
                if self._usage_dirty or heartbeat:
                    self._usage_dirty = False
                    self._last_usage = time.monotonic()
                    self._emit(self.usage_event())
                job = self.store.prepare_snapshot(self.tree)
                if job is not None:  # serialised here; the write and its fsync off the loop
                    await asyncio.to_thread(self.store.write_snapshot, *job)
                if self.client.cache is not None:
                    self.client.cache.commit()  # answers that came in a burst are not held back
                if time.monotonic() - last_state >= 2.0:
                    last_state = time.monotonic()
                    self._save_state("running")
            except Exception as e:  # noqa: BLE001 - a failed write (disk full...) stops the run, never silently
                if self._fatal is None:
                    self._fatal = e
                    self.client.stop()
                return

    def _save_state(self, status: str) -> None:
        self.store.write_state(
            {"status": status, "rows": self.rows, "size": self.cfg.size, "usage": self.client.usage.to_dict(), "updated": time.time()}
        )

    # ------------------------------------------------------------------ tasks
    def _spawn(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task) -> None:
        self._tasks.discard(t)
        self._task_finished.set()
        if t.cancelled():
            return
        exc = t.exception()
        if exc is None:
            return
        if isinstance(exc, BudgetExhausted):
            self._stop_reason = self._stop_reason or "budget"
        elif isinstance(exc, StopRequested):
            self._stop_reason = self._stop_reason or "stopped"
        elif self._fatal is None:
            self._fatal = exc
            self.client.stop()

    def request_stop(self) -> None:
        """Graceful stop: no new calls; in-flight calls finish and are saved."""
        self._stop_reason = self._stop_reason or "stopped"
        self.client.stop()
        self._task_finished.set()  # wake _drain: it gives the calls in flight a grace period, then cancels

    def pause(self) -> None:
        self.client.pause()

    def resume(self) -> None:
        self.client.resume()

    @property
    def paused(self) -> bool:
        return self.client.paused

    # ------------------------------------------------------------------ steering
    # Edits made while a run goes on. Each is journaled, so a resumed run keeps it, and each
    # emits events, so every front end sees it. Only subtrees without samples may change.

    def _subtree_rows(self, node_id: str) -> int:
        return sum(self.leaf_rows.get(i, 0) for i in self.tree.subtree_ids(node_id))

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
                self._journal(n)
        self._emit(ev.NodePruned(node_id=node.id, reason=reason))

    def _reallocate(self, node: Node) -> None:
        """Re-split a node's quota over its live children (their subtrees have no samples)."""
        kids = [self.tree.get(c) for c in node.children if self.tree.get(c).status != PRUNED]
        for k, t in zip(kids, allocate(node.target, [float(len(k.values)) if k.values else 1.0 for k in kids])):
            if k.target != t:
                k.target = t
                if k.status == LEAF and t > 0 and k.reason and k.reason.startswith("no samples allocated"):
                    k.status, k.reason = PENDING, None
                self._journal(k)
            if k.status == EXPANDED:
                self._reallocate(k)
            elif k.status == PENDING and k.id not in self._expanding:
                self._schedule(k)
            elif k.status == LEAF and self.leaf_rows.get(k.id, 0) < k.target and k.id not in self._synthesising:
                self._spawn(self._synth(k.id))

    def _emit_children(self, node: Node) -> None:
        kids = [self.tree.get(c) for c in node.children if self.tree.get(c).status != PRUNED]
        self._emit(
            ev.NodeExpanded(
                node_id=node.id, dimension=node.split_dimension or "", coverage=node.coverage or "none",
                children=tuple(ev.ChildInfo(node_id=c.id, value=c.value or "", source=c.source, target=c.target, open_ended=c.open_ended) for c in kids),
                nodes_total=len(self.tree), nodes_expanded=self._n_expanded,
                data_driven=is_fallback_dimension(node.split_dimension),
            )
        )

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
        self._journal(child)
        node.children.append(child.id)
        node.split_values.append({"value": value, "source": "user", "pivots": []})
        self._journal(node)
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
        self._journal(parent)
        child.value = new_value
        if child.children or child.status in (EXPANDED, FAILED) or child.id in self._expanding:
            self._reset(child)
        else:
            child.revision += 1
            self._journal(child)
            if child.status == LEAF and child.target > 0:
                self._spawn(self._synth_after(child.id))
        self._emit_children(parent)

    async def _synth_after(self, lid: str) -> None:
        # a stale synthesis of the old value may still be winding down
        while lid in self._synthesising:
            await asyncio.sleep(0.01)
        await self._synth(lid)

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
        self._journal(node)
        self._emit(ev.NodeReset(node_id=node.id))
        self._schedule(node)

    # ------------------------------------------------------------------ run
    async def run(self, grace_s: float = 10.0) -> ev.RunFinished:
        cfg = self.cfg
        self._emit(
            ev.RunStarted(
                run_dir=str(self.store.root), task=cfg.task, model=cfg.model, size=self.samples_target, depth=cfg.depth,
                budget=cfg.budget, resumed=self.resumed, samples_done=self.rows + self.samples_offset,
            )
        )
        for w in self._startup_warnings:
            self.warn(w)
        if cfg.budget is not None and not self.client.usage.cost_known:
            self.warn(f"cost is unknown for {cfg.model}: the budget cannot be enforced")
        ticker = asyncio.ensure_future(self._ticker())
        try:
            self._schedule(self.tree.root)
            if self.after_growth is not None:
                await self._drain(grace_s)
                if not (self._fatal or self._stop_reason):
                    self.after_growth()
            for _round in range(3):  # the main pass, then at most two top-up rounds
                await self._drain(grace_s)
                if self._fatal or self._stop_reason or self.outputs is not None or self.rows >= cfg.size:
                    break
                if not self._top_up():
                    break
        finally:
            ticker.cancel()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._fatal is not None:
            try:
                self._finish_state("incomplete")
            except Exception:  # noqa: BLE001 - e.g. the disk is still full: the appends already hold everything
                if not _is_storage_error(self._fatal):
                    raise
            raise self._fatal
        return await self._finish()

    async def _drain(self, grace_s: float) -> None:
        while self._tasks:
            if self._stop_reason == "stopped" and self._fatal is None:
                done, _ = await asyncio.wait(set(self._tasks), timeout=grace_s)
                for t in list(self._tasks):
                    t.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                return
            # Wait for any task to finish. asyncio.wait over every task would register and remove a
            # callback on each of them per wake-up (O(tasks), ~6 ms with 4,096 leaf tasks).
            self._task_finished.clear()
            if self._tasks:
                await self._task_finished.wait()
            if self._fatal is not None:
                return

    def _finish_state(self, status: str) -> None:
        self.store.maybe_snapshot(self.tree, force=True)
        self._save_state(status)
        if self.client.cache is not None:
            self.client.cache.commit()

    async def _finish(self) -> ev.RunFinished:
        from .export import write_jsonl, write_parquet

        cfg = self.cfg
        failed = [n for n in self.tree if n.status == FAILED]
        filled = self.outputs.complete() if self.outputs is not None else self.rows >= cfg.size
        if filled and not failed:
            status = "complete"
        elif self._stop_reason == "budget":
            status = "budget"
        elif self._stop_reason == "stopped":
            status = "stopped"
        else:
            status = "incomplete"
        dataset = None
        self._emit(self.usage_event())
        if status == "complete" and self.outputs is not None:
            # The exports read files and write files (about 0.4 s per 100k rows): in a thread, so a
            # front end on this loop stays responsive. Every task has ended; nothing changes the run.
            dataset = await asyncio.to_thread(self.outputs.write)
        elif status == "complete":
            dest = self.store.p("dataset.jsonl")

            def export() -> None:
                write_jsonl(self.store.iter_samples(), dest, limit=cfg.size)
                write_parquet(dest, self.store.p("dataset.parquet"))

            await asyncio.to_thread(export)
            dataset = str(dest)
        self._finish_state(status)
        leaves = sum(1 for n in self.tree if n.status == LEAF)
        msg = {
            "complete": "",
            "budget": f"budget of ${cfg.budget} reached",
            "stopped": "stopped on request",
            "incomplete": (
                f"{len(failed)} node(s) failed; see events.jsonl" if failed else f"{cfg.size - self.rows} samples could not be generated"
            ),
        }[status]
        fin = ev.RunFinished(
            status=status, run_dir=str(self.store.root), rows=min(self.rows, cfg.size), size=cfg.size, leaves=leaves,
            nodes=len(self.tree), dataset=dataset, cost_usd=self.client.usage.cost_usd, requests=self.client.usage.requests,
            message=msg,
        )
        self._emit(fin)
        return fin

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, node: Node) -> None:
        cfg = self.cfg
        if node.status == PRUNED:
            return
        if node.status == FAILED:
            node.status, node.reason = PENDING, None
            self._journal(node)
        if node.status == EXPANDED:
            for cid in node.children:
                self._schedule(self.tree.get(cid))
        elif node.status == LEAF:
            if self.synthesise_leaves and self.leaf_rows.get(node.id, 0) < node.target:
                self._spawn(self._synth(node.id))
        elif node.target == 0 and node.parent is not None:
            self._make_leaf(node, "no samples allocated to this subtree")
        elif node.depth >= cfg.depth:
            self._make_leaf(node, None)
        elif node.open_ended:
            self._make_leaf(node, "open-ended value list: values are sampled at generation")
        else:
            self._spawn(self._expand(node.id))

    def _journal(self, node: Node) -> None:
        self.tree.upsert(node)
        self.store.journal_node(node)

    def _make_leaf(self, node: Node, reason: str | None) -> None:
        node.status, node.reason = LEAF, reason
        self._journal(node)
        self._emit(ev.NodeLeaf(node_id=node.id, target=node.target, reason=reason))
        if self.synthesise_leaves and node.target > self.leaf_rows.get(node.id, 0):
            self._spawn(self._synth(node.id))

    def _fail(self, node: Node, reason: str) -> None:
        node.status, node.reason = FAILED, reason
        self._journal(node)
        self._emit(ev.NodeFailed(node_id=node.id, reason=reason))

    def _path_tuple(self, node_id: str) -> tuple[tuple[str, str], ...]:
        return tuple((p["dimension"], p["value"]) for p in self.tree.path(node_id))

    # ------------------------------------------------------------------ expansion
    async def _ask_once(self, node: Node, step: str, attempt: int, messages, schema, validate, temperature: float, part: int = 0):
        """One call, parsed and validated: (result, None) or (None, what was wrong). ``part`` numbers
        the calls of one step that run side by side (pivots asked in several calls)."""
        sid, rev = slot_id(node), node.revision
        tag = f"{attempt}" if not part else f"{attempt}.{part}"
        req = LLMRequest(
            messages=messages, slot=f"{sid}:{step}:{tag}", schema=schema, schema_name=step,
            temperature=temperature, max_tokens=self.cfg.max_tokens,
            seed=derive_seed(self.cfg.seed, sid, step, tag) if part else derive_seed(self.cfg.seed, sid, step, attempt),
            priority=PRIORITY_TREE,
        )
        c = await self.client.complete(req)
        if node.status != PENDING or node.revision != rev or self.tree.nodes.get(node.id) is not node:
            raise _Stale()
        if c.finish_reason == "length":
            err = "the answer was cut off before it ended; answer more briefly"
            if step == "pivots":  # the samples it finished are whole: keep them
                try:
                    return validate({"samples": salvage_items(c.text)}), None
                except (ParseError, PartitionError):
                    pass
        else:
            try:
                return validate(parse_answer(c.text)), None
            except (ParseError, PartitionError) as e:
                err = str(e)
        if not c.cached:  # a cached answer was counted when it was first made (a resumed run asks again)
            self.client.usage.invalid += 1
        self.warn(f"node {node.id} {step}: invalid answer (attempt {attempt + 1}): {truncate(err, 300)}", node.id)
        return None, (err, c.text)

    async def _ask(self, node: Node, step: str, messages, schema, validate, temperature: float, part: int = 0):
        """Call, parse and validate, retrying with the error fed back. Returns (result, last error)."""
        base = messages
        err = "no answer"
        for attempt in range(self.cfg.validation_retries + 1):
            result, why = await self._ask_once(node, step, attempt, messages, schema, validate, temperature, part)
            if why is None:
                return result, None
            err, text = why
            messages = self.prompts.retry(base, text, err)
        return None, err

    async def _criterion(self, node: Node, path, pivots, ancestors):
        """The criterion step in two calls (core/criterion.py): a dimension and its values, then one
        value per pivot from an enum of them. An invalid answer is not argued with: a fresh answer at a
        higher temperature is drawn instead (small models copy their mistake when it is fed back).
        Returns (split, values no pivot took, None) or (None, [], last error)."""
        cfg = self.cfg
        err = "no answer"
        for attempt in range(cfg.validation_retries + 1):
            temperature = min(1.3, 0.3 + 0.5 * attempt)
            crit, why = await self._ask_once(
                node, "criterion", attempt, self.prompts.criterion(path, pivots, ancestors, cfg.max_values),
                criterion_schema(cfg.max_values),
                lambda obj: validate_criterion(obj, ancestors, cfg.max_values, cfg.fields, cfg.task), temperature,
            )
            if why is not None:
                err = why[0]
                continue
            dimension, values = crit
            made, why = await self._ask_once(
                node, "assign", attempt, self.prompts.assign(path, pivots, dimension, values),
                assign_schema(len(pivots), values),
                lambda obj: build_split(dimension, values, validate_assignment(obj, len(pivots), values)), 0.2,
            )
            if why is not None:
                err = why[0]
                continue
            return made[0], made[1], None
        return None, [], err

    async def _expand(self, nid: str) -> None:
        node = self.tree.get(nid)
        self._expanding.add(nid)
        try:
            await self._expand_inner(node)
        except _Stale:
            pass
        except TransientProviderError as e:
            if node.status == PENDING:
                self._fail(node, f"provider error after retries: {e}")
        finally:
            self._expanding.discard(nid)

    async def _fallback_split(self, node: Node, why: str):
        """A data-driven split when the model gives none: balance mode clusters the node's rows (its
        hook), run mode the node's pivots (``embed``). CPU work, so off the loop. None: no honest split."""
        if self.split_fallback is not None:
            split = await asyncio.to_thread(self.split_fallback, node)
            what = "rows"
        elif self.embed is not None and node.pivots:
            split = await asyncio.to_thread(self._pivot_clusters, node)
            what = "pivots"
        else:
            return None
        if split is not None:
            self.warn(f"node {node.id}: {truncate(why, 200)}; split by embedding clusters of its {what} instead (data-driven)", node.id)
        return split

    def _pivot_clusters(self, node: Node):
        from .clusters import cluster_split, pivot_k

        texts = [sample_plain_text(p) for p in node.pivots or []]
        k = pivot_k(len({normalise(t) for t in texts}), self.cfg.max_values)
        if k < 2:
            return None
        try:
            X = self.embed(texts)
        except Exception as e:  # noqa: BLE001 - no embedder (e.g. not installed): the node stays a leaf, with the reason
            self.warn(f"node {node.id}: cannot embed its pivots for a data-driven split ({truncate(str(e), 200)})", node.id)
            return None
        return cluster_split(texts, X, k, derive_seed(self.cfg.seed, node.id, "clusters", node.revision), node.depth)

    def _no_split_reason(self, node: Node, err: str | None) -> str:
        distinct = len({normalise(str(p)) for p in node.pivots or []})
        if distinct < 4:
            return f"only {distinct} distinct pivot(s): nothing honest to split (the model's last answer: {truncate(err or '', 200)})"
        return f"no valid split: {err}"

    async def _expand_inner(self, node: Node) -> None:
        cfg = self.cfg
        path = self.tree.path(node.id)
        ptuple = tuple((p["dimension"], p["value"]) for p in path)
        ancestors = [p["dimension"] for p in path]

        # 1. pivots
        self._emit(ev.NodeStarted(node_id=node.id, parent_id=node.parent, depth=node.depth, stage="pivots", path=ptuple))

        def v_pivots(obj):
            samples, _ = parse_samples(obj, cfg.fields, max_items=cfg.pivots, max_chars=cfg.max_field_chars, patterns=self.patterns)
            samples = self._not_copies(samples)
            if not samples:
                raise ParseError(f"no valid samples with fields {', '.join(cfg.fields)}")
            return samples

        if self.pivot_source is not None:
            pivots = self.pivot_source(node)
            if len(pivots) < 2:
                self._make_leaf(node, f"only {len(pivots)} row(s) reached this node; nothing to split")
                return
        else:
            # in calls of pivots_per_call samples (a small model writes a few well, a dozen badly), at once
            per = cfg.pivots_per_call or cfg.pivots
            sizes = [per] * (cfg.pivots // per) + ([cfg.pivots % per] if cfg.pivots % per else [])
            answers = await asyncio.gather(*(
                self._ask(
                    node, "pivots", self.prompts.pivots(path, n),
                    samples_schema(cfg.fields, n, cfg.max_field_chars, cfg.field_patterns), v_pivots, cfg.temperature, part=i,
                )
                for i, n in enumerate(sizes)
            ))
            pivots, seen = [], set()
            for got, _ in answers:
                for s in got or []:
                    k = sample_key(s, cfg.fields)
                    if k not in seen:
                        seen.add(k)
                        pivots.append(s)
            if len(pivots) < 2:
                errs = "; ".join(sorted({e for _, e in answers if e}))
                self._make_leaf(node, f"no usable pivots: {len(pivots)} distinct sample(s) ({truncate(errs, 300)})")
                return
        node.pivots = pivots

        # 2. criterion: a dimension and its values, then every pivot assigned to one of them
        self._emit(ev.NodeStarted(node_id=node.id, parent_id=node.parent, depth=node.depth, stage="classify", path=ptuple))
        split, unused, err = await self._criterion(node, path, pivots, ancestors)
        fell_back = False
        if split is None:
            split = await self._fallback_split(node, f"no valid split: {err}")
            fell_back = split is not None
        if split is None:
            self._make_leaf(node, self._no_split_reason(node, err))
            return

        # 3. coverage supplement: the criterion's values no pivot took, then what the model adds
        existing = [v.value for v in split.values] + list(unused)
        max_new = cfg.max_values - len(existing)
        coverage = Coverage("complete", tuple(unused)) if unused else Coverage("none")
        if max_new > 0 and not fell_back:  # clusters of the data: no model can name the values they lack
            self._emit(ev.NodeStarted(node_id=node.id, parent_id=node.parent, depth=node.depth, stage="supplement", path=ptuple))
            cov, err = await self._ask(
                node, "supplement", self.prompts.supplement(path, split.dimension, existing, max_new),
                supplement_schema(max_new), lambda obj: validate_coverage(obj, existing, max_new), 0.3,
            )
            if cov is None:
                self.warn(f"node {node.id}: coverage supplement failed ({truncate(err, 200)}); keeping the pivots' values", node.id)
            else:
                for r in cov.rejected:
                    self.warn(f"node {node.id} supplement: dropped {r}", node.id)
                added = list(unused)
                for a in cov.added:
                    why = placeholder_reason(a, cfg.fields, cfg.task)
                    if why:
                        self.warn(f"node {node.id} supplement: dropped {why}", node.id)
                    else:
                        added.append(a)
                kind = cov.kind if cov.kind != "none" or not unused else "complete"
                coverage = Coverage(kind, tuple(added), cov.rejected)

        # 4. children
        specs = plan_children(split, coverage, cfg.open_ended_threshold)
        if len(specs) < 2 and not (specs and specs[0].source == "open_ended") and self.split_fallback is not None:
            fallback = await self._fallback_split(node, f"dimension {split.dimension!r} has a single value")
            if fallback is not None:
                split, coverage = fallback, Coverage("none")
                specs = plan_children(split, coverage, cfg.open_ended_threshold)
        if len(specs) < 2 and not (specs and specs[0].source == "open_ended"):
            self._make_leaf(node, f"dimension {split.dimension!r} has a single value; nothing to split")
            return
        targets = allocate(node.target, [s.weight for s in specs])
        children: list[Node] = []
        for i, (spec, tgt) in enumerate(zip(specs, targets)):
            children.append(
                Node(
                    id=f"{node.id}.{i}", parent=node.id, depth=node.depth + 1, dimension=split.dimension,
                    value=spec.value, values=list(spec.values), source=spec.source, target=tgt,
                )
            )
        if self.router is not None:
            await self.router(node, split, children)  # sets each child's target to its row count
            if node.status != PENDING:
                return
        for c in children:
            self._journal(c)
        node.status = EXPANDED
        node.split_dimension = split.dimension
        node.split_values = [{"value": v.value, "source": v.source, "pivots": list(v.pivots)} for v in split.values] + [
            {"value": a, "source": "coverage", "pivots": []} for a in coverage.added
        ]
        node.coverage = coverage.kind
        node.children = [c.id for c in children]
        self._journal(node)
        self._n_expanded += 1
        self._emit(
            ev.NodeExpanded(
                node_id=node.id, dimension=split.dimension, coverage=coverage.kind,
                children=tuple(ev.ChildInfo(node_id=c.id, value=c.value or "", source=c.source, target=c.target, open_ended=c.open_ended) for c in children),
                nodes_total=len(self.tree), nodes_expanded=self._n_expanded,
                data_driven=is_fallback_dimension(split.dimension),
            )
        )
        for c in children:
            self._schedule(c)

    # ------------------------------------------------------------------ synthesis
    def _not_copies(self, samples: list[dict[str, str]]) -> list[dict[str, str]]:
        if not self._example_texts:
            return samples
        f = self.cfg.fields[0]
        return [s for s in samples if not copies_example(s[f], self._example_texts)]

    def leaf_job(self, node: Node) -> LeafJob:
        rec = self.leaf_rec.get(node.id, LeafRecord())
        return LeafJob(
            leaf_id=node.id, path=self._path_tuple(node.id), open_values=tuple(node.values), target=node.target,
            first_slot=rec.max_slot + 1, skip_slots=frozenset(rec.empty_slots), revision=node.revision,
        )

    def _samples_schema(self, n: int) -> dict:
        s = self._samples_schema_cache.get(n)
        if s is None:
            s = self._samples_schema_cache[n] = samples_schema(self.cfg.fields, n, self.cfg.max_field_chars, self.cfg.field_patterns)
        return s

    async def _synth(self, lid: str) -> None:
        if lid in self._synthesising:
            return
        self._synthesising.add(lid)
        try:
            async with self._leaf_gate:
                node = self.tree.nodes.get(lid)
                if node is None or node.status != LEAF:
                    return
                try:
                    await self._synth_inner(node)
                except _Stale:
                    pass
                except TransientProviderError as e:
                    if node.status == LEAF:
                        self._fail(node, f"provider error after retries: {e}")
        finally:
            self._synthesising.discard(lid)

    async def _synth_inner(self, node: Node) -> None:
        cfg = self.cfg
        job = self.leaf_job(node)
        lid = job.leaf_id
        self._emit(ev.NodeStarted(node_id=lid, parent_id=node.parent, depth=node.depth, stage="synthesis", path=job.path))
        m = cfg.samples_per_call
        slot_limit = job.first_slot + calls_for(max(0, job.target - self.leaf_rows.get(lid, 0)), m) * 3 + 4
        slot = job.first_slot
        inflight: dict[asyncio.Task, int] = {}
        error: BaseException | None = None
        try:
            while True:
                if node.status != LEAF or node.revision != job.revision:
                    error = error or _Stale()
                need = node.target - self.leaf_rows.get(lid, 0) - sum(inflight.values())
                while error is None and need > 0 and len(inflight) < cfg.concurrency and slot < slot_limit:
                    n = min(m, need)
                    inflight[asyncio.ensure_future(self._gen(job, slot, n))] = n
                    need -= n
                    slot += 1
                if not inflight:
                    break
                done, _ = await asyncio.wait(set(inflight), return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    inflight.pop(t)
                    exc = t.exception()
                    if exc is not None and error is None:
                        error = exc
        except asyncio.CancelledError:
            for t in inflight:
                t.cancel()
            raise
        if error is not None:
            raise error
        if self.leaf_rows.get(lid, 0) < node.target:
            self._short.add(lid)
            self.warn(f"leaf {lid}: only {self.leaf_rows.get(lid, 0)} of {node.target} samples after {slot - job.first_slot} calls (duplicates or invalid answers)", lid)

    def _slot_path(self, job: LeafJob, slot: int) -> list[dict[str, str]]:
        path = [{"dimension": d, "value": v} for d, v in job.path]
        if job.open_values and path:
            pick = derive_seed(self.cfg.seed, job.leaf_id, "value", slot) % len(job.open_values)
            path[-1] = {"dimension": path[-1]["dimension"], "value": job.open_values[pick]}
        return path

    async def _gen(self, job: LeafJob, slot: int, n: int) -> None:
        cfg = self.cfg
        lid = job.leaf_id
        if slot in job.skip_slots:
            return
        path = self._slot_path(job, slot)
        sid = lid if not job.revision else f"{lid}~r{job.revision}"
        req = LLMRequest(
            messages=self.prompts.generate(path, n, self.examples_for(lid) if self.examples_for else None),
            slot=f"{sid}:gen:{slot}", schema=self._samples_schema(n),
            schema_name="samples", temperature=cfg.temperature, max_tokens=cfg.max_tokens,
            seed=derive_seed(cfg.seed, sid, "gen", slot), priority=PRIORITY_LEAF,
        )
        c = await self.client.complete(req)
        node = self.tree.nodes.get(lid)
        if node is None or node.status != LEAF or node.revision != job.revision:
            raise _Stale()  # pruned or renamed while the call was in flight: nothing is written
        samples: list[dict[str, str]] = []
        try:
            # an answer cut off by the token limit still holds the samples it finished
            obj = {"samples": salvage_items(c.text, n)} if c.finish_reason == "length" else parse_answer(c.text)
            samples, _rejected = parse_samples(obj, cfg.fields, max_items=n, max_chars=cfg.max_field_chars, patterns=self.patterns)
            samples = self._not_copies(samples)
        except ParseError:
            pass
        if not samples and not c.cached:
            self.client.usage.invalid += 1
        if self.accept_filter is not None and samples:
            samples = self.accept_filter(lid, samples)
        room = node.target - self.leaf_rows.get(lid, 0)
        rows: list[dict[str, Any]] = []
        for i, s in enumerate(samples):
            if len(rows) >= room:
                break  # trim overshoot
            k = sample_key(s, cfg.fields)
            if k in self.keys:
                continue  # exact duplicate (normalised): replaced by a later call
            self.keys.add(k)
            rows.append({"id": f"{lid}/{slot}/{i}", "leaf_id": lid, "slot": slot, "path": path, **s, "_k": k})
        if rows:
            self.store.append_samples(rows)
        else:
            self.store.append_empty_slot(lid, slot)
        done = self.leaf_rows[lid] = self.leaf_rows.get(lid, 0) + len(rows)
        self.rows += len(rows)
        preview = tuple(truncate(str(r[cfg.fields[0]]), 160) for r in rows[:2])
        self._emit(ev.LeafProgress(node_id=lid, done=done, target=node.target, samples_done=self.rows + self.samples_offset,
                                   samples_target=self.samples_target, preview=preview))

    def set_samples_target(self, offset: int, target: int) -> None:
        """Data mode: progress counts ``offset`` rows more than those synthesised, out of ``target``."""
        self.samples_offset, self.samples_target = offset, target
        self._emit(ev.SamplesTarget(samples_done=self.rows + offset, samples_target=target))

    def _top_up(self) -> bool:
        """Give the samples short leaves could not produce to the leaves that filled up."""
        deficit = self.cfg.size - self.rows
        if deficit <= 0 or any(n.status == FAILED for n in self.tree):
            return False
        full = [n for n in self.tree.walk() if n.status == LEAF and n.id not in self._short and n.target > 0]
        if not full:
            full = [n for n in self.tree.walk() if n.status == LEAF]
        if not full:
            return False
        self.warn(f"topping up {deficit} samples across {len(full)} leaves")
        self._short.clear()
        for n, extra in zip(full, allocate(deficit, [1] * len(full))):
            if extra:
                n.target += extra
                self._journal(n)
                self._spawn(self._synth(n.id))
        return True


# ---------------------------------------------------------------------------
# Run: the API front ends use
# ---------------------------------------------------------------------------


def make_transport(cfg):
    """The transport for ``cfg.executor``: in this process (the native OpenAI-compatible client or
    litellm, see ``make_local_transport``), or a pool of Ray workers (each making the same choice)."""
    if getattr(cfg, "executor", "local") == "ray":
        from .llm.transports.ray import RayTransport

        return RayTransport(cfg)
    from .llm import make_local_transport

    return make_local_transport(cfg)


class Run:
    """A run bound to its directory: ``await Run.create(...).execute(on_event)``."""

    kind = "run"  # the command that made it and resumes it (a BalanceRun says "balance")

    def __init__(self, cfg, store: RunStore, recovered: Recovered, transport=None, resumed: bool = False, embed=None) -> None:
        from .cache import ResponseCache
        from .llm import UsageTotals

        self.cfg = cfg
        if embed is None:
            from .balance import LazyEmbedder

            embed = LazyEmbedder()
        self.embed = embed  # texts -> vectors, for a data-driven split when the model gives none
        self.store = store
        self.recovered = recovered
        self.resumed = resumed
        cache = None
        try:
            cache_path = Path(cfg.cache_path) if cfg.cache_path else store.p("cache.sqlite")
            cache = ResponseCache(cache_path)
        except Exception:
            store.close()
            raise
        if transport is None:
            try:
                transport = make_transport(cfg)
            except BaseException:
                cache.close()
                store.close()
                raise
        self.client = LLMClient(
            transport, concurrency=cfg.concurrency, rpm=cfg.rpm, tpm=cfg.tpm,
            max_retries=cfg.max_retries, budget=cfg.budget, cache=cache, read_cache=cfg.cache,
            usage=UsageTotals.from_dict(recovered.state.get("usage") or {}),
        )
        self.prompts = Prompts(cfg)
        self.engine: Engine | None = None

    @classmethod
    def create(cls, cfg, out: Path, transport=None, embed=None) -> "Run":
        from .tree import Tree

        store = RunStore.create(out, cfg.redacted())
        try:
            recovered = Recovered(Tree.new(cfg.size), 0, {}, set(), 0, store.read_state(), [])
            return cls(cfg, store, recovered, transport, embed=embed)
        except BaseException:
            store.close()
            raise

    @classmethod
    def resume(cls, run_dir: Path, overrides: dict[str, Any] | None = None, transport=None, embed=None) -> "Run":
        from .config import RESUMABLE_OVERRIDES, build_config
        from .errors import ConfigError, RunDirError

        store = RunStore.open(run_dir)
        try:
            store.check_writable()
            saved = store.read_config()
            overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
            bad = sorted(k for k, v in overrides.items() if k not in RESUMABLE_OVERRIDES and saved.get(k) != v)
            if bad:
                raise ConfigError(f"cannot change {', '.join(bad)} when resuming (allowed: {', '.join(sorted(RESUMABLE_OVERRIDES))})")
            saved.pop("preset", None)  # the preset's values are already resolved into the saved config
            try:
                cfg = build_config(base=saved, flags=overrides)
            except ConfigError as e:
                raise RunDirError(f"{str(run_dir)!r} is corrupt: its config.json is invalid ({e})") from None
            try:
                recovered = store.recover(cfg.size)
            except OSError as e:  # e.g. a file made read-only: its torn tail cannot be cut
                raise storage_error(store.root, e) from None
            return cls(cfg, store, recovered, transport, resumed=True, embed=embed)
        except BaseException:
            store.close()
            raise

    @property
    def finished(self) -> bool:
        return self.recovered.state.get("status") == "complete"

    async def execute(
        self, on_event: Callable[[ev.Event], None] | None = None, configure: Callable[[Engine], None] | None = None
    ) -> ev.RunFinished:
        self.engine = Engine(self.cfg, self.store, self.client, self.prompts, self.recovered, on_event, self.resumed, self.embed)
        if configure is not None:
            configure(self.engine)
        try:
            return await self.engine.run()
        except Exception as e:
            if _is_storage_error(e):
                raise storage_error(self.store.root, e) from None
            raise
        finally:
            try:
                await close_transport(self.client.transport)  # e.g. the http transport's connection pool
            finally:
                self.close()

    def request_stop(self) -> None:
        if self.engine is not None:
            self.engine.request_stop()

    def summary(self) -> dict[str, Any] | None:
        """A mode's own closing figures (a balance run's before/after); a plain run has none."""
        return None

    def close(self) -> None:
        if self.client.cache is not None:
            try:
                self.client.cache.close()
            except Exception:  # noqa: BLE001
                pass
            self.client.cache = None
        closer = getattr(self.client.transport, "close", None)
        if callable(closer):  # e.g. the Ray executor's worker pool, the http transport's connections
            try:
                closer()
            except Exception:  # noqa: BLE001
                pass
        self.store.close()
