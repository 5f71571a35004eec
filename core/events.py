"""Typed, immutable engine events. Every front end (headless display, JSON events, TUI)
consumes this one stream through a single callback.

Totals are cumulative (usage, samples done), so a consumer that drops or coalesces
updates loses nothing: the latest event carries the whole state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, ClassVar

_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(v: Any) -> Any:
    """Nested event values as JSON-ready data (tuples of dataclasses, e.g. ChildInfo, become dicts)."""
    if isinstance(v, tuple) and v and is_dataclass(v[0]):
        return [asdict(x) for x in v]
    return v


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    kind: ClassVar[str] = "event"
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        # Shallow and per-class cached field names: dataclasses.asdict deep-copies recursively and
        # was a visible share of the engine's time on the event loop (one call per logged event).
        names = _FIELD_NAMES.get(type(self))
        if names is None:
            names = _FIELD_NAMES[type(self)] = tuple(f.name for f in fields(self))
        d = {n: _plain(getattr(self, n)) for n in names}
        d["event"] = self.kind
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_dir: str
    task: str
    model: str
    size: int
    depth: int
    budget: float | None
    resumed: bool
    samples_done: int = 0
    nodes_total: int = 1  # the tree as it stands at the start (a resumed run's tree may be grown already)
    nodes_expanded: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeStarted(Event):
    """A node begins expanding (stage: pivots, classify, supplement) or synthesising (stage: synthesis)."""

    kind: ClassVar[str] = "node_started"
    node_id: str
    parent_id: str | None
    depth: int
    stage: str
    path: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildInfo:
    node_id: str
    value: str
    source: str
    target: int
    open_ended: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeExpanded(Event):
    kind: ClassVar[str] = "node_expanded"
    node_id: str
    dimension: str
    coverage: str
    children: tuple[ChildInfo, ...]
    nodes_total: int
    nodes_expanded: int
    data_driven: bool = False  # the split came from embedding clusters, not from the model


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLeaf(Event):
    kind: ClassVar[str] = "node_leaf"
    node_id: str
    target: int
    reason: str | None = None  # set when it became a leaf before full depth


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFailed(Event):
    kind: ClassVar[str] = "node_failed"
    node_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodePruned(Event):
    """The node and its subtree get no samples (pruned, or its value removed)."""

    kind: ClassVar[str] = "node_pruned"
    node_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeReset(Event):
    """The node's children were dropped; it will expand again."""

    kind: ClassVar[str] = "node_reset"
    node_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafProgress(Event):
    kind: ClassVar[str] = "leaf_progress"
    node_id: str
    done: int
    target: int
    samples_done: int  # whole run, cumulative
    samples_target: int
    preview: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class SamplesTarget(Event):
    """The run's progress total changed: a balance run's plan fixes the rows its output will hold
    (originals kept plus rows to synthesise); ``samples_done`` counts the kept ones as done."""

    kind: ClassVar[str] = "samples_target"
    samples_done: int
    samples_target: int


@dataclass(frozen=True, slots=True)
class RoleCost:
    """One role's share of a run's calls (core/llm/types.py ``ROLES``: tree, rows, judge), cumulative."""

    role: str
    model: str
    requests: int
    tokens_in: int
    tokens_out: int
    cost_usd: float | None  # None: unknown (the model has no price)


_ROLE_ORDER = {"tree": 0, "rows": 1, "judge": 2}  # core/llm/types.py ROLES, as every front end lists them


def role_costs(roles: dict[str, Any]) -> tuple[RoleCost, ...]:
    """``UsageTotals.roles`` (RoleUsage values) as events' ``RoleCost``s, in the order tree, rows, judge."""
    return tuple(
        RoleCost(role=k, model=r.model, requests=r.requests, tokens_in=r.tokens_in, tokens_out=r.tokens_out, cost_usd=r.cost_usd)
        for k, r in sorted(roles.items(), key=lambda kv: _ROLE_ORDER.get(kv[0], 9))
    )


def roles_from_usage(usage: dict[str, Any]) -> tuple[RoleCost, ...]:
    """The ``RoleCost``s of a saved usage dict (state.json's ``usage``: core/llm/types.py ``UsageTotals.to_dict``)."""
    roles = usage.get("roles")
    if not isinstance(roles, dict):
        return ()
    out = []
    for k, r in sorted(roles.items(), key=lambda kv: _ROLE_ORDER.get(kv[0], 9)):
        if k not in _ROLE_ORDER or not isinstance(r, dict):
            continue
        num = {n: r[n] if isinstance(r.get(n), int) else 0 for n in ("requests", "tokens_in", "tokens_out")}
        cost = float(r["cost"]) if isinstance(r.get("cost"), (int, float)) and r.get("cost_known", True) else None
        out.append(RoleCost(role=k, model=str(r.get("model") or ""), cost_usd=cost, **num))
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage(Event):
    kind: ClassVar[str] = "usage"
    requests: int
    cache_hits: int
    tokens_in: int
    tokens_out: int
    cost_usd: float | None  # None: cost unknown for this model
    retries: int
    errors: int
    invalid: int  # answers rejected by parsing/validation
    elapsed_s: float
    # a gauge, not a total: calls sent and not answered yet, and how long the oldest of them has waited
    in_flight: int = 0
    oldest_in_flight_s: float | None = None
    # an endpoint embedder's calls (not in ``requests``; their cost is in ``cost_usd``)
    embed_requests: int = 0
    embed_cache_hits: int = 0  # texts whose vector the run's cache had: no call
    embed_tokens: int = 0
    embed_cost_usd: float = 0.0
    # gauges while the endpoint is unreachable (core/llm/outage.py): for how long, and when the next probe goes
    unreachable_s: float | None = None
    next_try_s: float | None = None
    # the same calls by role, each with its model (cumulative; a role that made no call yet is absent)
    roles: tuple[RoleCost, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Quality(Event):
    """What the quality gates did, cumulative over the run (resumes included): rows turned away by
    the validators and by semantic dedup before they were stored, rows the judge read, passed and
    failed (a failed row is replaced by a new one in its leaf)."""

    kind: ClassVar[str] = "quality"
    validator_rejected: int = 0
    near_duplicates: int = 0
    judged: int = 0
    passed: int = 0
    judge_rejected: int = 0
    generated: int = 0  # rows that entered the dedup gate in this process (cumulative)
    in_gates: int = 0  # rows in the dedup gate now: written by a call, not yet stored or turned away

    @property
    def regenerated(self) -> int:
        """Rows that had to be written again because a gate turned one away."""
        return self.validator_rejected + self.near_duplicates + self.judge_rejected


@dataclass(frozen=True, slots=True, kw_only=True)
class Batches(Event):
    """Calls sent through the provider's batch API (``--batch``), cumulative in this process: batches
    created, still running and finished, requests sent and answered, requests sent again (expired,
    cancelled, failed in a way that may pass) and made interactively after all, status polls, and the
    provider's status of the batch polled last."""

    kind: ClassVar[str] = "batches"
    submitted: int = 0
    running: int = 0
    finished: int = 0
    requests: int = 0
    answered: int = 0
    resubmitted: int = 0
    interactive_fallback: int = 0
    polls: int = 0
    last_status: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunWarning(Event):
    kind: ClassVar[str] = "warning"
    message: str
    node_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str  # complete | incomplete | stopped | budget
    run_dir: str
    rows: int
    size: int
    leaves: int
    nodes: int
    dataset: str | None
    cost_usd: float | None
    requests: int
    message: str = ""
    # an endpoint embedder's calls (not in ``requests``; their cost is in ``cost_usd``)
    embed_requests: int = 0
    embed_tokens: int = 0
    embed_cost_usd: float = 0.0
    roles: tuple[RoleCost, ...] = ()  # the calls by role (tree, rows, judge), each with its model and cost


EventCallback = Callable[[Event], None]

EVENT_TYPES: dict[str, type[Event]] = {
    c.kind: c for c in (
        RunStarted, NodeStarted, NodeExpanded, NodeLeaf, NodeFailed, NodePruned, NodeReset, LeafProgress, SamplesTarget, Usage, Quality, Batches, RunWarning,
        RunFinished
    )
}
