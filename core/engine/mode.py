"""The engine's one extension point.

A mode says where a node's pivots come from, how rows reach the children of a split, what to do when
the model gives no split, what happens once the tree has grown, which examples go into generation
prompts, which new rows are kept, and how the result is written. ``GenerationMode`` (``treesynth run``)
generates everything; ``BalanceMode`` (core/balance) rebalances an existing dataset.

The engine calls a mode only through ``Mode``; a mode acts on the engine only through ``EngineAccess``,
the engine's public surface for modes. ``Mode`` is a base whose defaults are plain generation: a mode
overrides what it changes (core/modes.py finds a mode by its kind)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..clusters import cluster_split, distinct_pivots, label_words, pivot_k
from ..errors import ConfigError
from ..ids import derive_seed
from ..rundir import DATASET, DATASET_PARQUET
from ..text import copies_example, identity_fields, sample_key, sample_plain_text, truncate
from ..treesource import saved_given_tree

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..partition import Split
    from ..prompts import Prompts
    from ..store import RunStore
    from ..taxonomy import Taxonomy
    from ..tree import Node, Tree

Sample = dict[str, str]
Embed = Callable[[list[str]], Any]
ModeFactory = Callable[["ModeHost"], "Mode"]


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


class ModeHost(Protocol):
    """What a mode is built from: the parts of the run that holds it (``treesynth.core.run.Run``)."""

    cfg: RunConfig
    store: RunStore
    prompts: Prompts
    embed: Embed


class Mode:
    """The engine's one extension point: a base whose defaults are plain generation (``treesynth run``);
    a mode overrides only what it changes. It owns its kind (recorded in the run's config, so a resume
    finds it again), how a resumed run rebuilds it, its closing figures and its outputs.

    A new mode is one class plus a registration (``treesynth.core.modes.register_mode``, an entry point
    in the ``treesynth.modes`` group, or ``--mode module:Class``)."""

    #: the name a run records (``mode`` in config.json) and a registry finds the class by
    kind: ClassVar[str] = "run"
    #: the command that resumes such a run: ``treesynth <command> --resume RUN_DIR``
    command: ClassVar[str] = "run"
    #: the finished run's main output in its directory (JSONL) and its Parquet twin
    output: ClassVar[str] = DATASET
    output_parquet: ClassVar[str] = DATASET_PARQUET
    #: whether ``treesynth judge`` may carry the run on with the judge
    judgeable: ClassVar[bool] = True
    #: whether ``treesynth baseline`` makes a plain-sampling baseline of the run
    has_baseline: ClassVar[bool] = True
    #: whether ``treesynth extend`` may grow the finished run to a larger size on the same tree
    extendable: ClassVar[bool] = True
    #: what a data-driven fallback split clusters ("rows", "pivots"), said in its warning
    fallback_of: ClassVar[str] = "pivots"
    #: a split whose values collapse to one is replaced by the fallback split
    refine_single_value: ClassVar[bool] = False
    #: after the main pass, quota that short leaves could not fill goes to the others
    tops_up: ClassVar[bool] = True

    def __init__(self, host: ModeHost) -> None:
        self.cfg = host.cfg
        self.store = host.store
        self.prompts = host.prompts
        # texts -> unit vectors: the data-driven split of a node's pivots when the model gives none
        self.embed: Embed | None = host.embed
        self._engine: EngineAccess | None = None
        # exact dedup: the prompt fields a preset declares (one question with two answers is one
        # problem), else every field
        self.identity = identity_fields(self.cfg.fields, self.cfg.prompt_fields)
        self.label_ignore = label_words(self.cfg.task, *self.cfg.fields)  # words that name no cluster

    # ---- how a run finds and rebuilds the mode ---------------------------
    @classmethod
    def embedder_for(cls, root: Path, given: Embed | None) -> Embed | None:
        """The embedder a resumed run of this mode uses (None: the run's default)."""
        return given

    @classmethod
    def check_resume(cls, root: Path, overrides: dict[str, Any]) -> None:
        """Refuse overrides this mode cannot take on resume (one line, ``ConfigError``)."""
        if overrides.get("judge") and not cls.judgeable:
            raise ConfigError(f"{str(root)!r} is a {cls.kind} run; treesynth judge works on runs made by treesynth run")

    @property
    def engine(self) -> EngineAccess:
        if self._engine is None:
            raise RuntimeError(f"the {self.kind} mode is not attached to an engine")
        return self._engine

    # ---- the engine's hooks ----------------------------------------------
    def attach(self, engine: EngineAccess) -> None:
        """Called once, before the run starts (a resumed engine has recovered its state)."""
        self._engine = engine

    def synthesise_during_growth(self) -> bool:
        """Whether a leaf synthesises as soon as it exists (else once ``after_growth`` fills leaves)."""
        return True

    def given_split(self, node: Node) -> Split | None:
        """A split the mode already knows for the node (a supplied taxonomy): the engine takes it as it is,
        with no pivots and no calls; a split with no values makes the node a leaf. None: the model splits."""
        return None

    def pivots(self, node: Node) -> list[Sample] | None:
        """The node's pivots from data, or None: the model writes them."""
        return None

    def fallback_split(self, node: Node) -> Split | None:
        """A data-driven split when the model gives no valid one (CPU work: called in a thread). By default
        the node's pivots in embedding clusters (deterministic: the run's seed, the node)."""
        if self.embed is None or not node.pivots:
            return None
        texts = [sample_plain_text(p) for p in node.pivots]
        k = pivot_k(distinct_pivots(node.pivots), self.cfg.max_values)
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
        """Send the node's data rows to its children (setting their targets); without data each child keeps
        the quota the split gave it."""
        return None

    def after_growth(self) -> None:
        """Once every node is expanded or a leaf, unless the run was stopped."""

    def examples_for(self, leaf_id: str) -> list[Sample] | None:
        """Examples for a leaf's generation prompt (None: the config's examples)."""
        return None

    def accept(self, leaf_id: str, samples: list[Sample]) -> list[Sample]:
        """The new rows worth keeping."""
        return samples

    def dedup_key(self, sample: Sample) -> int:
        """A row's exact-duplicate key (normalised): a new row whose key the run holds is dropped."""
        return sample_key(sample, self.identity)

    def dedup_text(self, sample: dict[str, Any]) -> str:
        """What of a row semantic dedup compares: every field's text, and nothing else of a stored row (its
        id, path, key). The whole row, not the prompt fields alone: on GSM8K train, questions alone catch
        fewer hand-made paraphrases at the same rate of human rows flagged (benchmarks/README.md)."""
        return sample_plain_text(sample, self.cfg.fields)

    def dedup_seed(self) -> Any:
        """Vectors (unit rows) every new row must also not nearly repeat, or None (CPU work: in a thread)."""
        return None

    def complete(self, rows: int) -> bool:
        """Whether the run has everything it needs, given the rows synthesised."""
        return rows >= self.cfg.size

    def write(self) -> str:
        """Write the finished outputs (called in a thread); returns the main output's path."""
        from ..export import write_jsonl, write_parquet

        dest = self.store.p(self.output)
        write_jsonl(self.store.iter_samples(judged_only=self.cfg.judge), dest, limit=self.cfg.size)
        write_parquet(dest, self.store.p(self.output_parquet))
        return str(dest)

    # ---- what front ends print -------------------------------------------
    def rows_text(self, rows: int, size: int, leaves: int, nodes: int) -> str:
        """The closing summary's rows line."""
        return f"{rows}/{size} in {leaves} leaves ({nodes} nodes)"

    def summary(self) -> dict[str, Any] | None:
        """The mode's own closing figures (e.g. a balance run's before/after), or None."""
        return None

    def summary_rows(self) -> list[tuple[str, str]]:
        """The mode's own closing figures as (label, text) rows for the CLI, the TUI and the card."""
        return []

    def close(self) -> None:
        """Release what the mode holds open."""


class GenerationMode(Mode):
    """``treesynth run``: the model writes the pivots and every row; the dataset is the rows. Every
    default of ``Mode`` is this mode's, and one addition: a run given a tree (``tree_from``) takes that
    tree's splits as they are, shows its leaves' examples to their prompts and drops rows that copy them."""

    def __init__(self, host: ModeHost) -> None:
        super().__init__(host)
        self.given: Taxonomy | None = None
        if self.cfg.tree_from:  # the copy the run keeps (core/treesource.py): a resume finds the same splits
            self.given = saved_given_tree(self.store.root, task=self.cfg.task, fields=self.cfg.fields, depth=self.cfg.depth)

    def _path(self, node_id: str) -> tuple[tuple[str, str], ...]:
        return tuple((p["dimension"], p["value"]) for p in self.engine.tree.path(node_id))

    def given_split(self, node: Node) -> Split | None:
        # matched by path, and only as first made: a value the user renames or re-expands is the model's again
        if self.given is None or node.revision:
            return None
        return self.given.split_for(self._path(node.id))

    def examples_for(self, leaf_id: str) -> list[Sample] | None:
        return None if self.given is None else self.given.examples_for(self._path(leaf_id))

    def accept(self, leaf_id: str, samples: list[Sample]) -> list[Sample]:
        shown = self.examples_for(leaf_id)
        if not shown:
            return samples
        first = self.cfg.fields[0]
        texts = [e[first] for e in shown]
        return [s for s in samples if not copies_example(str(s.get(first, "")), texts)]
