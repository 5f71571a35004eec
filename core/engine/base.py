"""The engine's state and the plumbing every part of it shares: events, tasks, the journal, scheduling.

``Engine`` (engine.py) is this plus expansion (expand.py), synthesis (synth.py) and steering
(steering.py); each of those adds one job's methods over the state kept here."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import events as ev
from ..clusters import is_fallback_dimension
from ..config import RunConfig
from ..errors import BudgetExhausted, EndpointUnreachable, StopRequested, TransientProviderError
from ..llm import LLMClient
from ..prompts import Prompts
from ..quality.gates import QualityCounts, QualityGates
from ..quality.pipeline import GatePipeline
from ..store import LeafRecord, Recovered, RunStore
from ..text import copies_example
from ..tree import EXPANDED, FAILED, LEAF, PENDING, PRUNED, Node, Tree
from .answers import Stale
from .mode import Mode


class EngineBase:
    def __init__(
        self,
        cfg: RunConfig,
        store: RunStore,
        client: LLMClient,
        prompts: Prompts,
        recovered: Recovered,
        mode: Mode,
        on_event: Callable[[ev.Event], None] | None = None,
        resumed: bool = False,
        gates: QualityGates | None = None,
        batch_status: Callable[[], Any] | None = None,
        tree_client: LLMClient | None = None,
    ) -> None:
        """``client``: the rows' calls; ``tree_client``: the tree's steps (default: ``client``); both share one
        cache, usage and budget (core/run.py)."""
        self.cfg = cfg
        # --batch: the batch transport's counts, an ev.Batches replaced at every change (core/llm/batch/transport.py)
        self._batch_status = batch_status
        self._batch_seen: Any = None
        # notices already logged as warnings, by the list they are in (id): the clients' and their transports'
        # (core/llm/transports/: a stream negotiated away)
        self._notices_seen: dict[int, int] = {}
        self._embed_notices_seen = 0  # the row embedder's
        self.mode = mode
        # validators, semantic dedup and the judge: what a new row passes before it counts
        self.gates = gates or QualityGates()
        self.gates.counts = QualityCounts.recovered(recovered.rejected, recovered.verdicts)
        self._unjudged: dict[str, list[dict[str, Any]]] = dict(recovered.unjudged) if self.gates.judge is not None else {}
        self._judging: dict[str, int] = {}  # leaf -> rows stored and waiting for their verdicts
        # semantic dedup runs beside generation (core/quality/pipeline.py)
        self.pipeline: GatePipeline | None = None
        self._gates_emitted = 0.0
        self._gates_dirty = False
        if self.gates.dedup is not None and self.gates.embedder is not None:
            self.pipeline = GatePipeline(
                self.gates.dedup, self.gates.embedder, self._plan_gated, self._commit_gated, on_change=self._gates_changed,  # type: ignore[attr-defined]
                group=lambda: self.store.one_write(),
            )
        self.patterns = {f: re.compile(rx) for f, rx in cfg.field_patterns.items()}  # every sample's fields must match
        # the prompts' examples, by their first field: a sample that copies one is rejected
        self._example_texts = [str(e.get(cfg.fields[0], "")) for e in cfg.examples]
        self.store = store
        self.client = client
        self.tree_client = tree_client or client
        self.prompts = prompts
        self._tree: Tree = recovered.tree
        self.on_event = on_event or (lambda e: None)
        self.resumed = resumed
        self.leaf_rows: dict[str, int] = {k: v.rows for k, v in recovered.leaves.items()}
        self.leaf_rec: dict[str, LeafRecord] = dict(recovered.leaves)
        self._keys: set[int] = set(recovered.keys)
        self.rows = recovered.rows
        # what progress counts: rows + samples_offset of samples_target (a balance run: its kept originals, its plan)
        self.samples_offset = 0
        self.samples_target = cfg.size
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._task_finished = asyncio.Event()  # set by _task_done: _drain wakes in O(1), not O(tasks)
        self._leaf_gate = asyncio.Semaphore(max(2, cfg.concurrency))
        self._stop_reason: str | None = None
        self._outage_message = ""  # why an outage stopped the run (EndpointUnreachable)
        self._fatal: BaseException | None = None
        self._short: set[str] = set()
        self._t0 = time.monotonic()
        self._usage_dirty = True
        self._last_usage = 0.0
        self._samples_schemas: dict[int, dict[str, Any]] = {}  # by rows per call
        self._samples_tokens: dict[int, int] = {}  # a generation call's max_tokens, by rows per call
        for c in self.clients:
            c.on_usage = self._on_usage
        self._startup_warnings = list(recovered.warnings)
        self._n_expanded = sum(1 for n in self._tree if n.status == EXPANDED)
        self._expanding: set[str] = set()
        self._synthesising: set[str] = set()
        self._filling = mode.synthesise_during_growth()  # leaves synthesise as soon as they exist
        self._warned_cost = not client.usage.cost_known  # already warned at start for resumed runs
        mode.attach(self)

    @property
    def clients(self) -> list[LLMClient]:
        """Every client of the run, each once: the rows', the tree's and the judge's (when they are others)."""
        out = [self.client]
        for c in (self.tree_client, self.gates.judge.client if self.gates.judge is not None else None):
            if c is not None and all(c is not o for o in out):
                out.append(c)
        return out

    # ------------------------------------------------------------------ what modes see (EngineAccess)
    @property
    def tree(self) -> Tree:
        return self._tree

    @property
    def keys(self) -> set[int]:
        return self._keys

    def rows_in(self, leaf_id: str) -> int:
        return self.leaf_rows.get(leaf_id, 0)

    def journal(self, node: Node) -> None:
        self._tree.upsert(node)
        self.store.journal_node(node)

    def warn(self, message: str, node_id: str | None = None) -> None:
        self._emit(ev.RunWarning(message=message, node_id=node_id))

    def set_samples_target(self, offset: int, target: int) -> None:
        self.samples_offset, self.samples_target = offset, target
        if self._started:
            self._emit(ev.SamplesTarget(samples_done=self.rows + offset, samples_target=target))

    def fill_leaves(self) -> None:
        self._filling = True
        for n in self._tree.walk():
            if n.status == LEAF and self._needs_work(n):
                self._spawn(self._synth(n.id))

    def _needs_work(self, leaf: Node) -> bool:
        """A leaf with rows to write, or rows to judge. A generation run that holds its size writes no more
        (leaves left short by failed rows gave their quota to others in the top-up rounds)."""
        if leaf.id in self._unjudged:
            return True
        if self.mode.tops_up and self.rows >= self.cfg.size:
            return False
        return leaf.target > self.rows_in(leaf.id)

    # ------------------------------------------------------------------ events
    def _emit(self, e: ev.Event) -> None:
        if not isinstance(e, ev.Usage):
            self.store.append_event(e.to_dict())
        try:
            self.on_event(e)
        except Exception as exc:  # noqa: BLE001 - a broken front end must not kill the run
            self.store.append_event({"event": "warning", "message": f"event consumer failed: {exc!r}"})

    def usage_event(self) -> ev.Usage:
        u = self.client.usage
        clients = self.clients
        out = next((v for v in (c.outage.view() for c in clients) if v is not None), None)
        oldest = [s for s in (c.oldest_in_flight_s() for c in clients) if s is not None]
        return ev.Usage(
            requests=u.requests, cache_hits=u.cache_hits, tokens_in=u.tokens_in, tokens_out=u.tokens_out,
            cost_usd=u.cost_usd, retries=u.retries, errors=u.errors, invalid=u.invalid,
            elapsed_s=time.monotonic() - self._t0,
            in_flight=sum(c.calls_in_flight for c in clients), oldest_in_flight_s=max(oldest) if oldest else None,
            embed_requests=u.embed_requests, embed_cache_hits=u.embed_cache_hits, embed_tokens=u.embed_tokens,
            embed_cost_usd=u.embed_cost,
            unreachable_s=None if out is None else out.since_s, next_try_s=None if out is None else out.next_try_s,
            roles=ev.role_costs(u.roles),
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

    def _emit_children(self, node: Node) -> None:
        kids = [self._tree.get(c) for c in node.children if self._tree.get(c).status != PRUNED]
        self._emit(
            ev.NodeExpanded(
                node_id=node.id, dimension=node.split_dimension or "", coverage=node.coverage or "none",
                children=tuple(ev.ChildInfo(node_id=c.id, value=c.value or "", source=c.source, target=c.target, open_ended=c.open_ended) for c in kids),
                nodes_total=len(self._tree), nodes_expanded=self._n_expanded,
                data_driven=is_fallback_dimension(node.split_dimension),
            )
        )

    def _save_state(self, status: str) -> None:
        self.store.write_state(
            {"status": status, "rows": self.rows, "size": self.cfg.size, "usage": self.client.usage.to_dict(), "updated": time.time()}
        )

    # ------------------------------------------------------------------ tasks
    def _spawn(self, coro: Awaitable[None]) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task[None]) -> None:
        self._tasks.discard(t)
        self._task_finished.set()
        if t.cancelled():
            return
        exc = t.exception()
        if exc is None:
            return
        if isinstance(exc, BudgetExhausted):
            self._stop_reason = self._stop_reason or "budget"
        elif isinstance(exc, EndpointUnreachable):  # a clean stop, resumable: no node failed for it
            if self._stop_reason is None:
                self._stop_reason = "outage"
                self._outage_message = str(exc)
            for c in self.clients:
                c.stop()
        elif isinstance(exc, StopRequested):
            self._stop_reason = self._stop_reason or "stopped"
        elif self._fatal is None:
            self._fatal = exc
            for c in self.clients:
                c.stop()

    # ------------------------------------------------------------------ scheduling
    def _schedule(self, node: Node) -> None:
        if node.status == PRUNED:
            return
        if node.status == FAILED:
            node.status, node.reason = PENDING, None
            self.journal(node)
        if node.status == EXPANDED:
            for cid in node.children:
                self._schedule(self._tree.get(cid))
        elif node.status == LEAF:
            if self._filling and self._needs_work(node):
                self._spawn(self._synth(node.id))
        elif node.target == 0 and node.parent is not None:
            self._make_leaf(node, "no samples allocated to this subtree")
        elif node.depth >= self.cfg.depth:
            self._make_leaf(node, None)
        elif node.open_ended:
            self._make_leaf(node, "open-ended value list: values are sampled at generation")
        else:
            self._spawn(self._expand(node.id))

    def _make_leaf(self, node: Node, reason: str | None) -> None:
        node.status, node.reason = LEAF, reason
        self.journal(node)
        self._emit(ev.NodeLeaf(node_id=node.id, target=node.target, reason=reason))
        if self._filling and node.target > self.rows_in(node.id):
            self._spawn(self._synth(node.id))

    def _fail(self, node: Node, reason: str) -> None:
        node.status, node.reason = FAILED, reason
        self.journal(node)
        self._emit(ev.NodeFailed(node_id=node.id, reason=reason))

    def _not_copies(self, samples: list[dict[str, str]]) -> list[dict[str, str]]:
        """The samples that do not copy one of the prompts' examples."""
        if not self._example_texts:
            return samples
        f = self.cfg.fields[0]
        return [s for s in samples if not copies_example(s[f], self._example_texts)]

    async def _settle(self, node: Node, status: str, work: Awaitable[None]) -> None:
        """Run a node's work: a stale answer is dropped; a provider that kept failing fails the node
        (if it is still in ``status``); anything else ends the run."""
        try:
            await work
        except Stale:
            pass
        except TransientProviderError as e:
            if node.status == status:
                self._fail(node, f"provider error after retries: {e}")

    def _path_tuple(self, node_id: str) -> tuple[tuple[str, str], ...]:
        return tuple((p["dimension"], p["value"]) for p in self._tree.path(node_id))

    # what the parts below define (expand.py, synth.py)
    async def _expand(self, nid: str) -> None:
        raise NotImplementedError

    async def _synth(self, lid: str) -> None:
        raise NotImplementedError

    async def ask(
        self, node: Node, step: str, messages: list[dict[str, str]], schema: dict[str, Any],
        validate: Callable[[Any], Any], temperature: float, part: int = 0,
    ) -> tuple[Any, str | None]:
        raise NotImplementedError
