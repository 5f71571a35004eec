"""The TreeSynth engine: grows the partition tree and fills its leaves, pipelined.

A node expands as soon as its parent is done; a leaf starts synthesising as soon as it exists (when
the mode says so). Sample quotas flow down the tree (each split divides its node's quota among the
children, open-ended children weighted by their value count), which is what lets a leaf start before
the whole tree is known. This file holds the run loop: start, drain, top up, finish."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from .. import events as ev
from ..tree import FAILED, LEAF
from .expand import Expansion
from .steering import Steering
from .synth import Synthesis

TOP_UP_ROUNDS = 2
HEARTBEAT_S = 1.0  # while calls are in flight, a usage event at least this often (elapsed and waiting times tick)


def is_storage_error(e: BaseException) -> bool:
    """A failed write to the run directory (disk full, permissions, the cache's SQLite)."""
    return isinstance(e, (OSError, sqlite3.Error)) and not isinstance(e, (ConnectionError, TimeoutError))


class Engine(Steering, Expansion, Synthesis):
    # ------------------------------------------------------------------ control
    def request_stop(self) -> None:
        """Graceful stop: no new calls; in-flight calls finish and are saved."""
        self._stop_reason = self._stop_reason or "stopped"
        for c in self.clients:
            c.stop()
        self._task_finished.set()  # wake _drain: it gives the calls in flight a grace period, then cancels

    def pause(self) -> None:
        for c in self.clients:
            c.pause()

    def resume(self) -> None:
        for c in self.clients:
            c.resume()

    @property
    def paused(self) -> bool:
        return self.client.paused

    # ------------------------------------------------------------------ run
    async def run(self, grace_s: float = 10.0) -> ev.RunFinished:
        cfg = self.cfg
        self._started = True
        self._emit(
            ev.RunStarted(
                run_dir=str(self.store.root), task=cfg.task, model=cfg.model, size=self.samples_target, depth=cfg.depth,
                budget=cfg.budget, resumed=self.resumed, samples_done=self.rows + self.samples_offset,
                nodes_total=len(self.tree), nodes_expanded=self._n_expanded,
            )
        )
        for w in self._startup_warnings:
            self.warn(w)
        if self.gates.active:
            self._emit(self.gates.counts.event())
        # the preflight refuses a budget for an unpriced model (core/preflight.py check_prices): only a transport the
        # caller gives (one that answers no cost), or a run resumed from one made without a price, comes here
        if cfg.budget is not None and not self.client.usage.cost_known:
            self.warn(f"cost is unknown for {cfg.model}: the budget cannot be enforced")
        if self.pipeline is not None:
            self.pipeline.prestart()  # a large run's helper processes start while the tree grows
        ticker = asyncio.ensure_future(self._ticker())
        from ..export import warm_up

        warm = warm_up()  # the export's polars, imported while rows are written
        try:
            self._schedule(self.tree.root)
            await self._drain(grace_s)
            if not (self._fatal or self._stop_reason):
                self.mode.after_growth()
            for _round in range(TOP_UP_ROUNDS + 1):  # the main pass, then the top-up rounds
                await self._drain(grace_s)
                if self._fatal or self._stop_reason or not self.mode.tops_up or self.rows >= cfg.size:
                    break
                if not self._top_up():
                    break
        finally:
            ticker.cancel()
            for t in list(self._tasks):
                t.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.pipeline is not None:
                await self.pipeline.aclose()
        if self._fatal is not None:
            warm.cancel()  # no export follows
            try:
                self._finish_state("incomplete")
            except Exception:  # noqa: BLE001 - e.g. the disk is still full: the appends already hold everything
                if not is_storage_error(self._fatal):
                    raise
            raise self._fatal
        return await self._finish()

    def _emit_batches(self) -> None:
        """The batch transport's counts (an ``ev.Batches``) when they changed (``--batch`` runs only)."""
        if self._batch_status is None:
            return
        s = self._batch_status()
        if s is not self._batch_seen:
            self._batch_seen = s
            self._emit(s)

    def _flush_notices(self) -> None:
        """What the client and the embedder changed or met on their own, logged as warnings once each."""
        for i, c in enumerate(self.clients):
            # the client's notices, then its transport's (a stream negotiated away); the rows' client says
            # its own plainly, the tree's and the judge's name their model
            who = "" if i == 0 else f"{c.transport.model}: "
            for notices in (c.notices, getattr(c.transport, "notices", None)):
                if notices is None:
                    continue
                key = id(notices)
                seen = self._notices_seen.get(key, 0)
                while seen < len(notices):
                    self.warn(who + notices[seen])
                    seen += 1
                self._notices_seen[key] = seen
        emb = self.gates.embedder
        while emb is not None and self._embed_notices_seen < len(emb.notices):
            self.warn(emb.notices[self._embed_notices_seen])
            self._embed_notices_seen += 1

    async def _ticker(self) -> None:
        last_state = 0.0
        while True:
            await asyncio.sleep(0.5)
            try:
                # a heartbeat while calls are in flight: a slow first call (a local model, a cold server)
                # shows as a call waiting N s, not as a display frozen at 0 requests
                heartbeat = any(c.calls_in_flight for c in self.clients) and time.monotonic() - self._last_usage >= HEARTBEAT_S
                if self._usage_dirty or heartbeat:
                    self._usage_dirty = False
                    self._last_usage = time.monotonic()
                    self._emit(self.usage_event())
                self._emit_batches()
                if self._gates_dirty:  # the gate pipeline's latest counts (its own events are throttled)
                    self._gates_changed(force=True)
                self._flush_notices()
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

    async def _drain(self, grace_s: float) -> None:
        while self._tasks:
            if self._stop_reason == "stopped" and self._fatal is None:
                await asyncio.wait(set(self._tasks), timeout=grace_s)
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
        cfg = self.cfg
        failed = [n for n in self.tree if n.status == FAILED]
        if self.mode.complete(self.rows) and not failed:
            status = "complete"
        elif self._stop_reason == "budget":
            status = "budget"
        elif self._stop_reason == "stopped":
            status = "stopped"
        else:
            status = "incomplete"
        dataset = None
        self._flush_notices()
        self._emit(self.usage_event())
        self._emit_batches()
        if status == "complete":
            if self.gates.dedup is not None:
                self.gates.dedup.release()  # every row is in; the export gets the index's memory
            # The exports read files and write files (about 0.4 s per 100k rows): in a thread, so a
            # front end on this loop stays responsive. Every task has ended; nothing changes the run.
            dataset = await asyncio.to_thread(self.mode.write)
        self._finish_state(status)
        leaves = sum(1 for n in self.tree if n.status == LEAF)
        msg = {
            "complete": "",
            "budget": f"budget of ${cfg.budget} reached",
            "stopped": "stopped on request",
            "incomplete": (
                self._outage_message if self._stop_reason == "outage"
                else f"{len(failed)} node(s) failed; see events.jsonl" if failed else f"{cfg.size - self.rows} samples could not be generated"
            ),
        }[status]
        fin = ev.RunFinished(
            status=status, run_dir=str(self.store.root), rows=min(self.rows, cfg.size), size=cfg.size, leaves=leaves,
            nodes=len(self.tree), dataset=dataset, cost_usd=self.client.usage.cost_usd, requests=self.client.usage.requests,
            message=msg, embed_requests=self.client.usage.embed_requests, embed_tokens=self.client.usage.embed_tokens,
            embed_cost_usd=self.client.usage.embed_cost, roles=ev.role_costs(self.client.usage.roles),
        )
        self._emit(fin)
        return fin
