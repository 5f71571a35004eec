"""Filling a leaf: calls of ``samples_per_call`` rows conditioned on the leaf's path, side by side,
until the leaf has its target; rows get deterministic ids ``<leaf>/<slot>/<i>`` and exact duplicates
are dropped. After the main pass, quota that short leaves could not fill goes to the others."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from .. import events as ev
from ..allocate import allocate, calls_for
from ..ids import derive_seed
from ..llm import PRIORITY_LEAF, LLMRequest
from ..parsing import ParseError, parse_answer, parse_samples, salvage_items
from ..quality.gates import near_duplicate_records
from ..quality.pipeline import GateItem
from ..schemas import chars_per_token, samples_max_tokens, samples_schema
from ..store import LeafRecord
from ..text import truncate
from ..tree import FAILED, LEAF, Node
from .answers import Stale
from .base import EngineBase
from .ids import LeafJob


class Synthesis(EngineBase):
    def leaf_job(self, node: Node) -> LeafJob:
        rec = self.leaf_rec.get(node.id, LeafRecord())
        return LeafJob(
            leaf_id=node.id, path=self._path_tuple(node.id), open_values=tuple(node.values), target=node.target,
            first_slot=rec.max_slot + 1, skip_slots=frozenset(rec.empty_slots), revision=node.revision,
        )

    def _samples_schema(self, n: int) -> dict[str, Any]:
        s = self._samples_schemas.get(n)
        if s is None:
            s = self._samples_schemas[n] = samples_schema(self.cfg.fields, n, self.cfg.max_field_chars, self.cfg.field_patterns)
        return s

    def _samples_max_tokens(self, n: int) -> int:
        """A generation call's max_tokens: what ``n`` rows can need (core/schemas.py), at most ``max_tokens``."""
        t = self._samples_tokens.get(n)
        if t is None:
            cfg = self.cfg
            limits = {f: cfg.max_field_chars for f in cfg.fields}
            for v in cfg.validators:  # a longer field fails its max_chars check: tokens past it buy nothing
                if v.kind == "max_chars" and isinstance(v.value, int) and v.field in limits:
                    limits[v.field] = min(limits[v.field], v.value)
            written = " ".join([cfg.task, cfg.style or "", *cfg.field_descriptions.values(), *(x for e in cfg.examples for x in e.values())])
            t = self._samples_tokens[n] = samples_max_tokens(n, limits, cfg.max_tokens, chars_per_token(written))
        return t

    async def _synth(self, lid: str) -> None:
        if lid in self._synthesising:
            return
        self._synthesising.add(lid)
        try:
            async with self._leaf_gate:
                node = self.tree.nodes.get(lid)
                if node is None or node.status != LEAF:
                    return
                await self._settle(node, LEAF, self._synth_inner(node))
        finally:
            self._synthesising.discard(lid)

    async def _synth_inner(self, node: Node) -> None:
        cfg = self.cfg
        job = self.leaf_job(node)
        lid = job.leaf_id
        self._emit(ev.NodeStarted(node_id=lid, parent_id=node.parent, depth=node.depth, stage="synthesis", path=job.path))
        if job.leaf_id in self._unjudged:
            await self._judge_stored(job.leaf_id)
        m = cfg.samples_per_call
        slot_limit = job.first_slot + calls_for(max(0, job.target - self.rows_in(lid)), m) * 3 + 4
        slot = job.first_slot
        inflight: dict[asyncio.Task[None], int] = {}
        error: BaseException | None = None
        try:
            while True:
                if node.status != LEAF or node.revision != job.revision:
                    error = error or Stale()
                need = node.target - self.rows_in(lid) - sum(inflight.values())
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
        finally:
            # a slot is asked once per process: a later round on this leaf (top-up, a revision) starts
            # after every slot used here, so no row id is ever written twice
            rec = self.leaf_rec.setdefault(lid, LeafRecord())
            rec.max_slot = max(rec.max_slot, slot - 1)
        if error is not None:
            raise error
        if self.rows_in(lid) < node.target:
            self._short.add(lid)
            self.warn(f"leaf {lid}: only {self.rows_in(lid)} of {node.target} samples after {slot - job.first_slot} calls (duplicates or invalid answers)", lid)

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
            messages=self.prompts.generate(path, n, self.mode.examples_for(lid)),
            slot=f"{sid}:gen:{slot}", schema=self._samples_schema(n),
            schema_name="samples", temperature=cfg.temperature, max_tokens=self._samples_max_tokens(n),
            seed=derive_seed(cfg.seed, sid, "gen", slot), priority=PRIORITY_LEAF,
        )
        c = await self.client.complete(req)
        node = self.tree.nodes.get(lid)
        if node is None or node.status != LEAF or node.revision != job.revision:
            raise Stale()  # pruned or renamed while the call was in flight: nothing is written
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
        if samples:
            samples = self.mode.accept(lid, samples)
        gates = self.gates
        rejected: list[dict[str, Any]] = []
        if samples and gates.validators:
            samples, rejected = gates.validate(lid, slot, path, samples)
        if rejected:
            self.store.append_rejected(rejected)
            self._emit(gates.counts.event(**self._gate_state()))
        # exact duplicates (normalised) first: they are replaced by a later call, and cost no embedding
        # (sample, key, its index in the answer): the index names the row, so a slot asked again (a leaf
        # refilled after steering) never reuses an id
        keyed: list[tuple[dict[str, str], int, int]] = []
        seen: set[int] = set()
        for i, s in enumerate(samples):
            k = self.mode.dedup_key(s)
            if k not in self.keys and k not in seen:
                seen.add(k)
                keyed.append((s, k, i))
        pipeline = self.pipeline
        if keyed and pipeline is not None and gates.dedup is not None:
            # semantic dedup beside generation: this call waits for its verdict, the provider does not
            text_of = gates.dedup.text_of
            item = GateItem(lid, slot, path, keyed, [text_of(s) for s, _, _ in keyed], revision=job.revision)
            rows = await pipeline.submit(item)
        else:
            node = self.tree.nodes.get(lid)
            if node is None or node.status != LEAF or node.revision != job.revision:
                raise Stale()
            room = node.target - self.rows_in(lid) - self._judging.get(lid, 0)
            rows = self._store_rows(lid, slot, path, keyed[: max(0, room)])  # trim overshoot
        if rows and gates.judge is not None:
            rows = await self._judge_rows(lid, sid, slot, path, rows, held=True)  # the rows count once they pass
            self._count(lid, len(rows))
        node = self.tree.get(lid)
        preview = tuple(truncate(str(r[cfg.fields[0]]), 160) for r in rows[:2])
        self._emit(ev.LeafProgress(node_id=lid, done=self.rows_in(lid), target=node.target, samples_done=self.rows + self.samples_offset,
                                   samples_target=self.samples_target, preview=preview))

    def _count(self, lid: str, n: int) -> None:
        if n:
            self.leaf_rows[lid] = self.rows_in(lid) + n
            self.rows += n

    def _store_rows(
        self, lid: str, slot: int, path: list[dict[str, str]], keyed: list[tuple[dict[str, str], int, int]], vectors: Any = None,
    ) -> list[dict[str, Any]]:
        """Store the rows that passed validators and dedup (synchronous: the index, the vector log and
        samples.jsonl agree). Without a judge they count at once; with one they wait for its verdict."""
        rows: list[dict[str, Any]] = []
        for s, k, i in keyed:
            self.keys.add(k)
            rows.append({"id": f"{lid}/{slot}/{i}", "leaf_id": lid, "slot": slot, "path": path, **s, "_k": k})
        if rows:
            self.store.append_samples(rows)
            if vectors is not None and self.gates.dedup is not None:
                self.gates.dedup.stored(vectors)
        else:
            self.store.append_empty_slot(lid, slot)
        if self.gates.judge is not None:
            self._judging[lid] = self._judging.get(lid, 0) + len(rows)
        else:
            self._count(lid, len(rows))
        return rows

    # ------------------------------------------------------------------ the gate pipeline's callbacks
    def _plan_gated(self, batch: Sequence[GateItem]) -> list[list[int]]:
        """Which rows of each call in a batch go to the index: not stale, not an exact copy of a stored
        row or of an earlier row in the batch, and within the leaf's room."""
        taken: dict[str, int] = {}
        seen: set[int] = set()
        plan: list[list[int]] = []
        for item in batch:
            node = self.tree.nodes.get(item.leaf_id)
            if node is None or node.status != LEAF or node.revision != item.revision:
                plan.append([])
                continue
            room = node.target - self.rows_in(item.leaf_id) - self._judging.get(item.leaf_id, 0) - taken.get(item.leaf_id, 0)
            ks = [k for _s, k, _i in item.rows]
            if room >= len(ks) and self.keys.isdisjoint(ks) and seen.isdisjoint(ks) and len(set(ks)) == len(ks):
                seen.update(ks)  # the usual case: every row offered, set operations instead of a step a row
                taken[item.leaf_id] = taken.get(item.leaf_id, 0) + len(ks)
                plan.append(list(range(len(ks))))
                continue
            idx: list[int] = []
            for j, (_s, k, _i) in enumerate(item.rows):
                if len(idx) >= room:
                    break
                if k in self.keys or k in seen:
                    continue
                seen.add(k)
                idx.append(j)
            taken[item.leaf_id] = taken.get(item.leaf_id, 0) + len(idx)
            plan.append(idx)
        return plan

    def _commit_gated(self, item: GateItem, idx: list[int], keep: Any, sims: Any, vectors: Any) -> list[dict[str, Any]]:
        node = self.tree.nodes.get(item.leaf_id)
        if node is None or node.status != LEAF or node.revision != item.revision:
            raise Stale()  # pruned or renamed while the rows were gated: nothing is written
        offered = item.rows if len(idx) == len(item.rows) else [item.rows[j] for j in idx]  # idx rises: all of them
        if keep.all():  # the usual case: nothing to take apart
            return self._store_rows(item.leaf_id, item.slot, item.path, offered, vectors)
        dropped = (~keep).nonzero()[0].tolist()
        counts = self.gates.counts
        counts.near_duplicates += len(dropped)
        self.store.append_rejected(near_duplicate_records(
            item.leaf_id, item.slot, item.path, [offered[i][0] for i in dropped], [float(sims[i]) for i in dropped]))
        self._emit(counts.event(**self._gate_state()))
        kept = [r for r, ok in zip(offered, keep.tolist(), strict=True) if ok]
        return self._store_rows(item.leaf_id, item.slot, item.path, kept, vectors[keep])

    def _gate_state(self) -> dict[str, int]:
        p = self.pipeline
        return {} if p is None else {"generated": p.generated, "in_gates": p.waiting}

    def _gates_changed(self, force: bool = False) -> None:
        """The pipeline's rows changed: a Quality event now and then (at most every 0.2 s while rows
        flow, always when the gates fall empty), so the display shows rows waiting, never a stall."""
        now = time.monotonic()
        p = self.pipeline
        if not force and p is not None and p.waiting and now - self._gates_emitted < 0.2:
            self._gates_dirty = True  # the ticker sends it within 0.5 s
            return
        self._gates_emitted, self._gates_dirty = now, False
        self._emit(self.gates.counts.event(**self._gate_state()))

    async def _judge_rows(
        self, lid: str, sid: str, slot: int, path: list[dict[str, str]], rows: list[dict[str, Any]], held: bool = False,
    ) -> list[dict[str, Any]]:
        """The judge's verdicts on stored rows, recorded; returns the rows that passed (they count; a
        failed row's leaf writes another). A row is judged with the path it was written for."""
        judge = self.gates.judge
        assert judge is not None
        if not held:  # rows just stored are already held for their verdicts (_store_rows)
            self._judging[lid] = self._judging.get(lid, 0) + len(rows)
        try:
            verdicts = await judge.judge(sid, slot, path, rows)
        finally:
            self._judging[lid] -= len(rows)
        records = [v.record(r["id"], lid, path, judge.model) for v, r in zip(verdicts, rows, strict=True)]
        self.store.append_verdicts(records)
        failed = [r["id"] for v, r in zip(verdicts, rows, strict=True) if not v.passed]
        counts = self.gates.counts
        counts.judged += len(rows)
        counts.passed += len(rows) - len(failed)
        counts.judge_rejected += len(failed)
        if failed:
            self.store.append_rejected([
                {"gate": "judge", "id": r["id"], "leaf_id": lid, "slot": r["slot"], "path": path,
                 "sample": {f: r[f] for f in self.cfg.fields}, "detail": v.why(path)}
                for v, r in zip(verdicts, rows, strict=True) if not v.passed
            ])
        self._emit(counts.event(**self._gate_state()))
        return [r for v, r in zip(verdicts, rows, strict=True) if v.passed]

    async def _judge_stored(self, lid: str) -> None:
        """Judge the leaf's rows that were stored without a verdict (a run judged after it finished,
        or a crash between a row and its verdict), one call per generation call, as written."""
        rows = self._unjudged.pop(lid, None)
        if not rows:
            return
        by_slot: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            by_slot.setdefault(int(r["slot"]), []).append(r)
        node = self.tree.get(lid)
        sid = lid if not node.revision else f"{lid}~r{node.revision}"
        sem = asyncio.Semaphore(max(1, self.cfg.concurrency))

        async def one(slot: int, group: list[dict[str, Any]]) -> None:
            async with sem:
                path = group[0].get("path") or [{"dimension": d, "value": v} for d, v in self._path_tuple(lid)]
                passed = await self._judge_rows(lid, sid, slot, path, group)
                self._count(lid, len(passed))

        await asyncio.gather(*(one(slot, g) for slot, g in sorted(by_slot.items())))

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
        for n, extra in zip(full, allocate(deficit, [1] * len(full)), strict=True):
            if extra:
                n.target += extra
                self.journal(n)
                self._spawn(self._synth(n.id))
        return True
