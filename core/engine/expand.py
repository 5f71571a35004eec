"""Expanding a node: pivots, the criterion (a dimension, its values, every pivot assigned), the coverage
supplement, then the children with their share of the node's quota. Where pivots come from, how rows
reach the children and what happens when the model gives no split are the mode's (mode.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from .. import events as ev
from ..allocate import allocate
from ..clusters import MIN_SPLIT_PIVOTS, distinct_pivots, is_fallback_dimension
from ..criterion import assign_schema, build_split, criterion_schema, placeholder_reason, validate_assignment, validate_criterion
from ..ids import derive_seed
from ..llm import PRIORITY_TREE, LLMRequest
from ..parsing import ParseError, parse_answer, parse_samples, salvage_items
from ..partition import ChildSpec, Coverage, PartitionError, Split, plan_children, validate_coverage
from ..schemas import samples_schema, supplement_schema
from ..text import sample_key, truncate
from ..tree import EXPANDED, PENDING, Node
from .answers import Stale
from .base import EngineBase
from .ids import slot_id

Messages = list[dict[str, str]]


def _split_validator(dimension: str, values: list[str], n_pivots: int) -> Callable[[Any], Any]:
    """Validates an assignment of ``n_pivots`` pivots to ``values``; returns (split, values no pivot took)."""
    return lambda obj: build_split(dimension, values, validate_assignment(obj, n_pivots, values))


# the rounds of pivot calls a node makes at most to reach MIN_SPLIT_PIVOTS distinct ones (the first, then the
# missing ones asked again)
PIVOT_ROUNDS = 3


def call_sizes(n: int, per: int) -> list[int]:
    """``n`` pivots asked in calls of at most ``per``: [per, per, ..., rest]."""
    per = max(1, per)
    return [per] * (n // per) + ([n % per] if n % per else [])


class Expansion(EngineBase):
    async def _ask_once(
        self, node: Node, step: str, attempt: int, messages: Messages, schema: dict[str, Any],
        validate: Callable[[Any], Any], temperature: float, part: int = 0,
    ) -> tuple[Any, tuple[str, str | None] | None]:
        """One call, parsed and validated: (result, None) or (None, (what was wrong, the answer)).
        ``part`` numbers the calls of one step that run side by side (pivots asked in several calls)."""
        sid, rev = slot_id(node), node.revision
        tag = f"{attempt}" if not part else f"{attempt}.{part}"
        req = LLMRequest(
            messages=messages, slot=f"{sid}:{step}:{tag}", schema=schema, schema_name=step,
            temperature=temperature, max_tokens=self.cfg.max_tokens,
            seed=derive_seed(self.cfg.seed, sid, step, tag) if part else derive_seed(self.cfg.seed, sid, step, attempt),
            priority=PRIORITY_TREE,
        )
        c = await self.tree_client.complete(req)
        if node.status != PENDING or node.revision != rev or self.tree.nodes.get(node.id) is not node:
            raise Stale()
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
            self.tree_client.usage.invalid += 1
        self.warn(f"node {node.id} {step}: invalid answer (attempt {attempt + 1}): {truncate(err, 300)}", node.id)
        return None, (err, c.text)

    async def ask(
        self, node: Node, step: str, messages: Messages, schema: dict[str, Any],
        validate: Callable[[Any], Any], temperature: float, part: int = 0,
    ) -> tuple[Any, str | None]:
        """Call, parse and validate, retrying with the error fed back. Returns (result, last error)."""
        base = messages
        err = "no answer"
        for attempt in range(self.cfg.validation_retries + 1):
            result, why = await self._ask_once(node, step, attempt, messages, schema, validate, temperature, part)
            if why is None:
                return result, None
            err, text = why
            messages = self.prompts.retry(base, text or "", err)
        return None, err

    async def _criterion(
        self, node: Node, path: list[dict[str, str]], pivots: list[dict[str, str]], ancestors: list[str],
    ) -> tuple[Split | None, list[str], str | None]:
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
                _split_validator(dimension, values, len(pivots)), 0.2,
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
            await self._settle(node, PENDING, self._expand_inner(node))
        finally:
            self._expanding.discard(nid)

    async def _fallback_split(self, node: Node, why: str) -> Split | None:
        """The mode's data-driven split when the model gives none (CPU work, so off the loop)."""
        split = await asyncio.to_thread(self.mode.fallback_split, node)
        if split is not None:
            self.warn(
                f"node {node.id}: {truncate(why, 200)}; split by embedding clusters of its {self.mode.fallback_of} instead (data-driven)", node.id
            )
        return split

    def _no_split_reason(self, node: Node, err: str | None) -> str:
        distinct = distinct_pivots(node.pivots or [])
        if distinct < MIN_SPLIT_PIVOTS:
            return f"only {distinct} distinct pivot(s): nothing honest to split (the model's last answer: {truncate(err or '', 200)})"
        return f"no valid split: {err}"

    async def _write_pivots(self, node: Node, path: list[dict[str, str]]) -> list[dict[str, str]] | None:
        """Pivots written by the model, in calls of pivots_per_call samples (a small model writes a few
        well, a dozen badly), side by side. While too few distinct ones came back to split (``MIN_SPLIT_PIVOTS``:
        a model that repeats itself, answers that fail their fields), the missing ones are asked for again, in
        calls of their own, up to ``PIVOT_ROUNDS`` rounds in all. None (the node became a leaf): too few to split."""
        cfg = self.cfg

        def v_pivots(obj: Any) -> list[dict[str, str]]:
            samples, _ = parse_samples(obj, cfg.fields, max_items=cfg.pivots, max_chars=cfg.max_field_chars, patterns=self.patterns)
            samples = self._not_copies(samples)
            if not samples:
                raise ParseError(f"no valid samples with fields {', '.join(cfg.fields)}")
            return samples

        per = cfg.pivots_per_call or cfg.pivots
        enough = min(cfg.pivots, MIN_SPLIT_PIVOTS)
        pivots: list[dict[str, str]] = []
        seen: set[int] = set()
        errors: set[str] = set()
        part = 0
        for rnd in range(PIVOT_ROUNDS):
            sizes = call_sizes(max(1, cfg.pivots - len(pivots)), per)
            answers = await asyncio.gather(*(
                self.ask(
                    node, "pivots", self.prompts.pivots(path, n),
                    samples_schema(cfg.fields, n, cfg.max_field_chars, cfg.field_patterns), v_pivots, cfg.temperature, part=part + i,
                )
                for i, n in enumerate(sizes)
            ))
            part += len(sizes)
            errors |= {e for _, e in answers if e}
            for got, _ in answers:
                for s in got or []:
                    k = sample_key(s, cfg.fields)
                    if k not in seen:
                        seen.add(k)
                        pivots.append(s)
            distinct = distinct_pivots(pivots)
            if distinct >= enough:
                break
            if rnd + 1 < PIVOT_ROUNDS:
                self.warn(
                    f"node {node.id}: only {distinct} distinct pivot(s) of {cfg.pivots}, too few to split; "
                    f"asking for {max(1, cfg.pivots - len(pivots))} more", node.id,
                )
        if len(pivots) < 2:
            self._make_leaf(node, f"no usable pivots: {len(pivots)} distinct sample(s) ({truncate('; '.join(sorted(errors)), 300)})")
            return None
        return pivots

    async def _supplement(self, node: Node, path: list[dict[str, str]], split: Split, unused: list[str]) -> Coverage:
        """The coverage supplement: the criterion's values no pivot took, then the values the model adds."""
        cfg = self.cfg
        existing = [v.value for v in split.values] + list(unused)
        max_new = cfg.max_values - len(existing)
        coverage = Coverage("complete", tuple(unused)) if unused else Coverage("none")
        if max_new <= 0:
            return coverage
        self._emit(ev.NodeStarted(node_id=node.id, parent_id=node.parent, depth=node.depth, stage="supplement", path=self._path_tuple(node.id)))
        cov, err = await self.ask(
            node, "supplement", self.prompts.supplement(path, split.dimension, existing, max_new),
            supplement_schema(max_new), lambda obj: validate_coverage(obj, existing, max_new), 0.3,
        )
        if cov is None:
            self.warn(f"node {node.id}: coverage supplement failed ({truncate(err or '', 200)}); keeping the pivots' values", node.id)
            return coverage
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
        return Coverage(kind, tuple(added), cov.rejected)

    async def _expand_inner(self, node: Node) -> None:
        cfg = self.cfg
        path = self.tree.path(node.id)
        ptuple = tuple((p["dimension"], p["value"]) for p in path)
        ancestors = [p["dimension"] for p in path]

        # 0. a split the mode already knows (a supplied taxonomy): no pivots, no calls
        given = self.mode.given_split(node)
        if given is not None:
            if not given.values:
                self._make_leaf(node, None)
                return
            if given.open_ended:  # one child drawing from the list, however short it is
                coverage = Coverage("open_ended")
                await self._add_children(node, given, coverage, plan_children(given, coverage, 1))
                return
            await self._add_children(node, given, Coverage("none"))
            return

        # 1. pivots: the mode's (rows of the data) or the model's
        self._emit(ev.NodeStarted(node_id=node.id, parent_id=node.parent, depth=node.depth, stage="pivots", path=ptuple))
        pivots = self.mode.pivots(node)
        if pivots is not None and len(pivots) < 2:
            self._make_leaf(node, f"only {len(pivots)} row(s) reached this node; nothing to split")
            return
        if pivots is None:
            pivots = await self._write_pivots(node, path)
            if pivots is None:
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

        # 3. coverage supplement (clusters of the data: no model can name the values they lack)
        coverage = Coverage("none") if fell_back else await self._supplement(node, path, split, unused)

        # 4. children
        specs = plan_children(split, coverage, cfg.open_ended_threshold)
        if len(specs) < 2 and not (specs and specs[0].source == "open_ended") and self.mode.refine_single_value:
            fallback = await self._fallback_split(node, f"dimension {split.dimension!r} has a single value")
            if fallback is not None:
                split, coverage = fallback, Coverage("none")
                specs = plan_children(split, coverage, cfg.open_ended_threshold)
        if len(specs) < 2 and not (specs and specs[0].source == "open_ended"):
            self._make_leaf(node, f"dimension {split.dimension!r} has a single value; nothing to split")
            return
        await self._add_children(node, split, coverage, specs)

    async def _add_children(self, node: Node, split: Split, coverage: Coverage, specs: list[ChildSpec] | None = None) -> None:
        """The node's children from its split and coverage, each with its share of the node's quota."""
        if specs is None:
            specs = plan_children(split, coverage, self.cfg.open_ended_threshold)
        targets = allocate(node.target, [s.weight for s in specs])
        children = [
            Node(
                id=f"{node.id}.{i}", parent=node.id, depth=node.depth + 1, dimension=split.dimension,
                value=spec.value, values=list(spec.values), source=spec.source, target=tgt,
            )
            for i, (spec, tgt) in enumerate(zip(specs, targets, strict=True))
        ]
        await self.mode.route(node, split, children)  # with data: each child's target becomes its row count
        if node.status != PENDING:
            return
        for c in children:
            self.journal(c)
        node.status = EXPANDED
        node.split_dimension = split.dimension
        node.split_values = [{"value": v.value, "source": v.source, "pivots": list(v.pivots)} for v in split.values] + [
            {"value": a, "source": "coverage", "pivots": []} for a in coverage.added
        ]
        node.coverage = coverage.kind
        node.children = [c.id for c in children]
        self.journal(node)
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
