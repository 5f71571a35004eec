"""``BalanceMode``: the engine's mode for ``treesynth balance``. Pivots are rows of the data routed to
the node; each split routes every row to one child; after growth, a plan per leaf keeps the most
mutually distant rows of crowded leaves and synthesises into sparse ones; new rows that nearly copy a
real row or each other are rewritten (semantic dedup, seeded with the real rows); the outputs are the balanced dataset and its before/after."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson

from ..engine.mode import Embed, EngineAccess, Mode, ModeHost, Sample
from ..errors import RunDirError
from ..files import atomic_write
from ..ids import derive_seed
from ..lazy_embed import LazyEmbedder
from ..partition import Split
from ..reader import read_json
from ..rundir import BALANCE_SUMMARY, BALANCED, BALANCED_PARQUET, PLAN
from ..text import sample_key
from ..tree import LEAF, Node
from .data import Data, load_data
from .fallback import RowClusters
from .outputs import write_outputs
from .plan import LeafPlan, farthest_point_keep, leaf_targets, plan_totals
from .route import Router
from .rows import RowIndex
from .spec import BalanceSpec


class BalanceMode(Mode):
    kind = "balance"
    command = "balance"
    output = BALANCED
    output_parquet = BALANCED_PARQUET
    judgeable = False
    has_baseline = False
    extendable = False
    fallback_of = "rows"
    refine_single_value = True
    tops_up = False

    def __init__(self, host: ModeHost, data: Data | None = None, spec: BalanceSpec | None = None) -> None:
        super().__init__(host)
        if spec is None:  # a resumed run: what it was asked to do, and its data unchanged since
            spec = BalanceSpec.read(self.store.root)
        if data is None:
            data = load_data(spec.data, spec.field, spec.fields)
            if data.digest != spec.digest:
                raise RunDirError(f"{spec.data!r} changed since this balance run began; start a new run")
        self.data = data
        self.spec = spec
        self.rows = RowIndex(self.store, data, host.embed)
        self.clusters = RowClusters(self.rows, self.cfg.seed, self.cfg.max_values, self.label_ignore)
        self.router = Router(self.rows, self.clusters, self.prompts, spec.route, spec.route_batch)
        self._plan: dict[str, LeafPlan] | None = None

    @classmethod
    def embedder_for(cls, root: Path, given: Embed | None) -> Embed | None:
        """The embedder the balance run was made with (its spec names it), unless one is given."""
        return given or LazyEmbedder(BalanceSpec.read(root).embedder)

    def attach(self, engine: EngineAccess) -> None:
        super().attach(engine)
        # progress: rows of the balanced output out of its size (known from --size, else once planned)
        if self.planned:
            engine.set_samples_target(*plan_totals(self.load_plan()))
        else:
            engine.set_samples_target(0, int(self.spec.size or 0))
        # originals count as seen: a synthesised row may not repeat one
        for i in range(len(self.data)):
            engine.keys.add(self.dedup_key(self.data.sample(i)))

    @property
    def planned(self) -> bool:
        return self.store.p(PLAN).exists()

    def synthesise_during_growth(self) -> bool:
        return self.planned  # a resumed run that had planned fills its leaves at once

    # ---- growth ------------------------------------------------------------
    def pivots(self, node: Node) -> list[Sample]:
        rows = self.rows.at(node.id)
        rng = random.Random(derive_seed(self.cfg.seed, node.id, "pivots", node.revision))
        pick = sorted(rng.sample(rows, min(self.cfg.pivots, len(rows))))
        self.rows.pivot_rows[node.id] = pick
        return [self.data.sample(i) for i in pick]

    def fallback_split(self, node: Node) -> Split | None:
        return self.clusters.split(node)

    async def route(self, node: Node, split: Split, children: list[Node]) -> None:
        await self.router.route(self.engine, node, split, children)

    # ---- balancing ---------------------------------------------------------
    def leaves(self) -> list[Node]:
        return [n for n in self.engine.tree.walk() if n.status == LEAF]

    def after_growth(self) -> None:
        """Decide what each leaf keeps and how many rows it needs; start synthesis."""
        leaves = self.leaves()
        desired = leaf_targets(leaves, self.spec.target_per_leaf, self.spec.size)
        plan: dict[str, LeafPlan] = {}
        for n in leaves:
            rows = self.rows.at(n.id)
            want = desired[n.id]
            if len(rows) > want:
                keep = [rows[i] for i in farthest_point_keep(self.rows.emb[rows], want, self.cfg.seed)]
            else:
                keep = list(rows)
            synth = max(0, want - len(rows))
            plan[n.id] = {"before": len(rows), "keep": keep, "synth": synth}
            if n.target != synth:
                n.target = synth
                self.engine.journal(n)
        atomic_write(self.store.p(PLAN), orjson.dumps(plan))
        self._plan = plan
        self.engine.set_samples_target(*plan_totals(plan))
        self.engine.fill_leaves()

    def load_plan(self) -> dict[str, LeafPlan]:
        if self._plan is None:
            self._plan = orjson.loads(self.store.p(PLAN).read_bytes())
        return self._plan

    def examples_for(self, leaf_id: str) -> list[Sample]:
        rows = self.rows.at(leaf_id)
        if not rows:
            return []
        # str hash() is salted per process: a resumed run would pick other examples (and miss the cache)
        rng = random.Random(derive_seed(self.cfg.seed, leaf_id, "examples"))
        return [self.data.sample(i) for i in sorted(rng.sample(rows, min(3, len(rows))))]

    def accept(self, leaf_id: str, samples: list[Sample]) -> list[Sample]:
        """Every new row: near-copies of real rows (any leaf) and of each other are semantic dedup's job
        (core/quality), which records what it turns away."""
        return samples

    def dedup_key(self, sample: Sample) -> int:
        return sample_key(sample, self.data.fields)

    def dedup_text(self, sample: dict[str, Any]) -> str:
        """The text field, as the real rows were embedded."""
        return str(sample.get(self.data.field, next(iter(sample.values()), "")))

    def dedup_seed(self) -> Any:
        """Every real row: a new row may not nearly repeat one, in any leaf."""
        return self.rows.emb

    # ---- outputs -----------------------------------------------------------
    def complete(self, rows: int) -> bool:
        if not self.planned:
            return False
        return all(self.engine.rows_in(n.id) >= n.target for n in self.leaves())

    def write(self) -> str:
        return write_outputs(self.store, self.data, self.engine.tree, [n.id for n in self.leaves()], self.load_plan(), self.router.calls)

    # ---- what front ends print ---------------------------------------------
    def rows_text(self, rows: int, size: int, leaves: int, nodes: int) -> str:
        # the engine counts synthesised rows; the input's rows are the size
        return f"{rows} synthesised in {leaves} leaves ({nodes} nodes), input {size} rows"

    def summary(self) -> dict[str, Any] | None:
        """balance_summary.json once the outputs are written."""
        return read_json(self.store.p(BALANCE_SUMMARY)) or None

    def summary_rows(self) -> list[tuple[str, str]]:
        info = self.summary()
        if not info:
            return []
        b, a = info.get("before") or {}, info.get("after") or {}
        return [
            ("balance", f"{info.get('input_rows', 0):,} rows in {info.get('leaves', 0):,} leaves -> {info.get('rows_after', 0):,} "
                        f"({info.get('dropped', 0):,} dropped, {info.get('synthesised', 0):,} synthesised)"),
            ("entropy", f"{b.get('entropy')} -> {a.get('entropy')} (leaf occupancy, 1 = even)"),
            ("Gini", f"{b.get('gini')} -> {a.get('gini')} (0 = even); empty leaves {b.get('empty')} -> {a.get('empty')}"),
            ("table", "before_after.csv in the run dir"),
        ]

    def close(self) -> None:
        self.rows.close()
