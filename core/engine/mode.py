"""The engine's one extension point.

A mode says where a node's pivots come from, how rows reach the children of a split, what to do when
the model gives no split, what happens once the tree has grown, which examples go into generation
prompts, which new rows are kept, and how the result is written. ``GenerationMode`` (``treesynth run``)
generates everything; ``BalanceMode`` (core/balance) rebalances an existing dataset.

The engine calls a mode only through ``Mode``; a mode acts on the engine only through ``EngineAccess``,
the engine's public surface for modes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..clusters import cluster_split, label_words, pivot_k
from ..rundir import DATASET, DATASET_PARQUET
from ..text import identity_fields, normalise, sample_key, sample_plain_text, truncate
from .ids import derive_seed

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..partition import Split
    from ..store import RunStore
    from ..tree import Node, Tree

Sample = dict[str, str]
Embed = Callable[[list[str]], Any]


class EngineAccess(Protocol):
    """What a mode may read and do on the engine running it."""

    @property
    def tree(self) -> Tree: ...

    @property
    def keys(self) -> set[int]:
        """Normalised keys of every row the run holds: a new row repeating one is dropped."""

    def rows_in(self, leaf_id: str) -> int:
        """Rows synthesised so far in a leaf."""

    def journal(self, node: Node) -> None:
        """Record a changed node (the journal makes it survive a crash)."""

    def warn(self, message: str, node_id: str | None = None) -> None: ...

    def set_samples_target(self, offset: int, target: int) -> None:
        """Progress counts ``offset`` rows more than those synthesised, out of ``target``."""

    def fill_leaves(self) -> None:
        """Start synthesising every leaf whose target is above its rows (after growth)."""

    async def ask(
        self, node: Node, step: str, messages: list[dict[str, str]], schema: dict[str, Any],
        validate: Callable[[Any], Any], temperature: float,
    ) -> tuple[Any, str | None]:
        """One validated structured call about ``node``, retried with the error fed back:
        (result, None) or (None, the last error)."""


class Mode(Protocol):
    #: what a data-driven fallback split clusters ("rows", "pivots"), said in its warning
    fallback_of: str
    #: a split whose values collapse to one is replaced by the fallback split
    refine_single_value: bool
    #: after the main pass, quota that short leaves could not fill goes to the others
    tops_up: bool

    def attach(self, engine: EngineAccess) -> None:
        """Called once, before the run starts (a resumed engine has recovered its state)."""

    def synthesise_during_growth(self) -> bool:
        """Whether a leaf synthesises as soon as it exists (else once ``after_growth`` fills leaves)."""

    def pivots(self, node: Node) -> list[Sample] | None:
        """The node's pivots from data, or None: the model writes them."""

    def fallback_split(self, node: Node) -> Split | None:
        """A data-driven split when the model gives no valid one (CPU work: called in a thread)."""

    async def route(self, node: Node, split: Split, children: list[Node]) -> None:
        """Send the node's data rows to its children (setting their targets); nothing to do without data."""

    def after_growth(self) -> None:
        """Once every node is expanded or a leaf, unless the run was stopped."""

    def examples_for(self, leaf_id: str) -> list[Sample] | None:
        """Examples for a leaf's generation prompt (None: the config's examples)."""

    def accept(self, leaf_id: str, samples: list[Sample]) -> list[Sample]:
        """The new rows worth keeping."""

    def dedup_key(self, sample: Sample) -> int:
        """A row's exact-duplicate key (normalised): a new row whose key the run holds is dropped."""

    def dedup_text(self, sample: dict[str, Any]) -> str:
        """What of a row semantic dedup compares."""

    def dedup_seed(self) -> Any:
        """Vectors (unit rows) every new row must also not nearly repeat, or None (CPU work: in a thread)."""

    def complete(self, rows: int) -> bool:
        """Whether the run has everything it needs, given the rows synthesised."""

    def write(self) -> str:
        """Write the finished outputs (called in a thread); returns the main output's path."""

    def close(self) -> None:
        """Release what the mode holds open."""


class GenerationMode:
    """``treesynth run``: the model writes the pivots and every row; the dataset is the rows."""

    fallback_of = "pivots"
    refine_single_value = False
    tops_up = True

    def __init__(self, cfg: RunConfig, store: RunStore, embed: Embed | None) -> None:
        self.cfg = cfg
        self.store = store
        # texts -> unit vectors: the data-driven split of a node's pivots when the model gives none
        self.embed = embed
        self._engine: EngineAccess | None = None
        # exact dedup: the prompt fields a preset declares (one question with two answers is one
        # problem), else every field
        self.identity = identity_fields(cfg.fields, cfg.prompt_fields)
        self.label_ignore = label_words(cfg.task, *cfg.fields)  # words that name no cluster

    def attach(self, engine: EngineAccess) -> None:
        self._engine = engine

    def synthesise_during_growth(self) -> bool:
        return True

    def pivots(self, node: Node) -> list[Sample] | None:
        return None

    def fallback_split(self, node: Node) -> Split | None:
        """The node's pivots in embedding clusters (deterministic: the run's seed, the node)."""
        if self.embed is None or not node.pivots:
            return None
        texts = [sample_plain_text(p) for p in node.pivots]
        k = pivot_k(len({normalise(t) for t in texts}), self.cfg.max_values)
        if k < 2:
            return None
        try:
            X = self.embed(texts)
        except Exception as e:  # noqa: BLE001 - no embedder (e.g. not installed): the node stays a leaf, with the reason
            if self._engine is not None:
                self._engine.warn(f"node {node.id}: cannot embed its pivots for a data-driven split ({truncate(str(e), 200)})", node.id)
            return None
        return cluster_split(texts, X, k, derive_seed(self.cfg.seed, node.id, "clusters", node.revision), node.depth,
                             ignore=self.label_ignore)

    async def route(self, node: Node, split: Split, children: list[Node]) -> None:
        return None  # no data rows: each child keeps the quota the split gave it

    def after_growth(self) -> None:
        pass

    def examples_for(self, leaf_id: str) -> list[Sample] | None:
        return None

    def accept(self, leaf_id: str, samples: list[Sample]) -> list[Sample]:
        return samples

    def dedup_key(self, sample: Sample) -> int:
        return sample_key(sample, self.identity)

    def dedup_text(self, sample: dict[str, Any]) -> str:
        """Every field's text, and nothing else of a stored row (its id, path, key). The whole row, not
        the prompt fields alone: on GSM8K train, questions alone catch fewer hand-made paraphrases at
        the same rate of human rows flagged (benchmarks/README.md, "Semantic dedup")."""
        return sample_plain_text(sample, self.cfg.fields)

    def dedup_seed(self) -> Any:
        return None

    def complete(self, rows: int) -> bool:
        return rows >= self.cfg.size

    def write(self) -> str:
        from ..export import write_jsonl, write_parquet

        dest = self.store.p(DATASET)
        write_jsonl(self.store.iter_samples(judged_only=self.cfg.judge), dest, limit=self.cfg.size)
        write_parquet(dest, self.store.p(DATASET_PARQUET))
        return str(dest)

    def close(self) -> None:
        pass
