"""``BalanceMode``: the engine's mode for ``treesynth balance``. Pivots are rows of the data routed to
the node; each split routes every row to one child; after growth, a plan per leaf keeps the most
mutually distant rows of crowded leaves and synthesises into sparse ones; new rows that nearly copy a
real row or each other are rewritten (semantic dedup, seeded with the real rows); the outputs are the balanced dataset and its before/after."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from ..clusters import label_words
from ..config import RunConfig
from ..engine.ids import derive_seed
from ..engine.mode import EngineAccess, Sample
from ..files import atomic_write
from ..partition import Split
from ..prompts import Prompts
from ..rundir import PLAN
from ..store import RunStore
from ..text import sample_key
from ..tree import LEAF, Node
from .data import Data
from .fallback import RowClusters
from .outputs import write_outputs
from .plan import LeafPlan, farthest_point_keep, leaf_targets, plan_totals
from .route import Router
from .rows import RowIndex
from .spec import BalanceSpec


class BalanceMode:
    fallback_of = "rows"
    refine_single_value = True
    tops_up = False

    def __init__(
        self, cfg: RunConfig, store: RunStore, prompts: Prompts, data: Data, spec: BalanceSpec,
        embed: Callable[[list[str]], Any],
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.data = data
        self.spec = spec
        self.embed = embed
        self.rows = RowIndex(store, data, embed)
        self.clusters = RowClusters(self.rows, cfg.seed, cfg.max_values, label_words(cfg.task, *cfg.fields))
        self.router = Router(self.rows, self.clusters, prompts, spec.route, spec.route_batch)
        self._plan: dict[str, LeafPlan] | None = None
        self._engine: EngineAccess | None = None

    @property
    def engine(self) -> EngineAccess:
        if self._engine is None:
            raise RuntimeError("the balance mode is not attached to an engine")
        return self._engine

    def attach(self, engine: EngineAccess) -> None:
        self._engine = engine
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

    def close(self) -> None:
        self.rows.close()
