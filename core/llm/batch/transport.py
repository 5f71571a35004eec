"""``BatchTransport``: leaf, judge and baseline calls through the provider's batch API at batch prices;
tree calls (few, latency-bound) stay interactive.

Calls are collected while the engine issues them and sent as batch files (``lines.group_lines``) once
no new call has come for ``linger_s`` (or a file is full). Every step is written to the run's
``batches.jsonl`` before or as it happens (``journal``): the input file is in the run directory before
it is uploaded, the batch id as soon as the provider returns it, the output and error files before the
batch counts as finished. A resumed run polls the batches already created instead of creating them
again, finds a batch created just before a kill by its metadata, and sends only what never reached the
provider. Requests that expired, were cancelled or failed in a way that may pass later are sent again
in a new batch (``max_resubmits`` times), then interactively. The cost of a batch is estimated at batch
prices and reserved against the budget before it is sent.

The provider's wire format is a ``BatchAPI`` passed in (core/llm/batch/api.py: OpenAI's Files +
Batches, Anthropic's Message Batches); everything else is here, the same for both. Answers become
``Completion``s and go back through the client like interactive ones, so they are parsed, validated,
deduplicated, priced and cached alike. A run's transports (its model's and a judge model's) share one
``Ledger``: the counts shown and the cost reserved against the budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from ... import events as ev
from ...errors import BudgetExhausted, ProviderError, TransientProviderError
from ...files import atomic_write
from ..pricing import CallPrice
from ..types import PRIORITY_TREE, Completion, LLMRequest, Transport, UsageTotals
from .api import BatchAPI, BatchState
from .journal import BatchJournal, BatchRecord
from .lines import BatchResult, group_lines

BATCH_DIR = "batches"


class Ledger:
    """What a run's batch transports share: the counts shown (an ``ev.Batches``, replaced at every
    change) and the cost reserved against the budget for requests in batches."""

    def __init__(self) -> None:
        self.status = ev.Batches()
        self.reserved = 0.0


def custom_id(slot: str, body: dict[str, Any]) -> str:
    """A request's id in batch files: stable across resumes (the call's slot and its exact body)."""
    h = hashlib.sha256(slot.encode("utf-8") + b"\0" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return f"ts-{h}"


class BatchTransport:
    def __init__(
        self, interactive: Transport, api: BatchAPI, run_dir: Path, *, run_id: str, price: CallPrice | None,
        budget: float | None = None, usage: UsageTotals | None = None, linger_s: float = 2.0, max_linger_s: float = 30.0,
        max_requests: int | None = None, max_bytes: int | None = None, poll_min_s: float = 1.0, poll_max_s: float = 60.0,
        max_resubmits: int = 2, on_change: Callable[[], None] | None = None, tag: str = "b", ledger: Ledger | None = None,
    ) -> None:
        """``tag``: one letter naming this transport's batches (a judge model's transport has its own);
        ``ledger``: shared with the run's other batch transport."""
        self.interactive = interactive
        self.api = api
        self.root = Path(run_dir)
        self.journal = BatchJournal(self.root)
        self.run_id = run_id
        self.price = price
        self.budget = budget
        self.usage = usage
        self.linger_s, self.max_linger_s = linger_s, max_linger_s
        self.max_requests = min(max_requests or api.max_requests, api.max_requests)
        self.max_bytes = min(max_bytes or api.max_bytes, api.max_bytes)
        self.poll_min_s, self.poll_max_s = poll_min_s, poll_max_s
        self.max_resubmits = max_resubmits
        self.on_change = on_change or (lambda: None)
        if len(tag) != 1 or not tag.isalpha():
            raise ValueError("a batch transport's tag is one letter")
        self.tag = tag
        self.ledger = ledger or Ledger()
        self._futures: dict[str, asyncio.Future[Completion]] = {}
        self._reqs: dict[str, LLMRequest] = {}
        self._stored: dict[str, tuple[Path, int]] = {}  # answered ids not yet asked for: their line in a local file
        self._running: set[str] = set()  # ids in batches the provider holds
        self._attempts: dict[str, int] = {}  # batches an id was sent in
        self._est: dict[str, float] = {}  # cost reserved for an id while it is in a batch
        self._pending: list[tuple[str, bytes, float]] = []  # id, input line, estimated cost
        self._first_pending = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ready: asyncio.Task[None] | None = None
        self._seq = 0

    @property
    def model(self) -> str:
        return self.interactive.model

    @property
    def status(self) -> ev.Batches:
        """The counts so far (every batch transport of the run); a new event object at every change."""
        return self.ledger.status

    @property
    def reserved(self) -> float:
        return self.ledger.reserved

    # ---- the call ---------------------------------------------------------------------------
    async def __call__(self, req: LLMRequest) -> Completion:
        if req.priority == PRIORITY_TREE:
            return await self.interactive(req)
        if self._ready is None:
            self._ready = asyncio.ensure_future(self._reconcile())
        await asyncio.shield(self._ready)
        body = self.api.body(req)
        cid = custom_id(req.slot, body)
        self._reqs[cid] = req
        fut = self._futures.get(cid)
        if fut is None or fut.done():
            fut = asyncio.get_running_loop().create_future()
            self._futures[cid] = fut
            where = self._stored.pop(cid, None)
            if where is not None:
                self._settle_from_file(cid, where)
            elif cid not in self._running:
                self._enqueue(cid, self.api.line(cid, body), req)
        return await fut

    def _estimate(self, req: LLMRequest, line: bytes) -> float:
        if self.price is None:
            return 0.0
        return float(self.price(len(line) // 4, req.max_tokens) or 0.0)

    def _enqueue(self, cid: str, line: bytes, req: LLMRequest) -> None:
        loop = asyncio.get_running_loop()
        if not self._pending:
            self._first_pending = loop.time()
        est = self._estimate(req, line)
        self._est[cid] = est
        self._pending.append((cid, line, est))
        if self._timer is not None:
            self._timer.cancel()
        if len(self._pending) >= self.max_requests:
            self._flush()
            return
        wait = min(self.linger_s, max(0.0, self._first_pending + self.max_linger_s - loop.time()))
        self._timer = loop.call_later(wait, self._flush)

    def _flush(self) -> None:
        self._timer = None
        items, self._pending = self._pending, []
        if not items:
            return
        send: list[tuple[str, bytes]] = []
        for cid, line, est in items:
            if self.budget is not None and self.usage is not None and self.usage.cost_known \
                    and self.usage.cost + self.ledger.reserved + est > self.budget:
                self._est.pop(cid, None)
                self._fail(cid, BudgetExhausted())
                continue
            self.ledger.reserved += est
            send.append((cid, line))
        for group in group_lines(send, self.max_requests, self.max_bytes):
            self._spawn(self._submit(group))

    def _spawn(self, coro: Any) -> None:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # ---- sending ----------------------------------------------------------------------------
    def _name(self) -> str:
        self._seq += 1
        return f"{self.tag}{self._seq:05d}-{os.getpid()}-{int(time.time())}"

    async def _submit(self, group: list[tuple[str, bytes]]) -> None:
        name = self._name()
        ids = [cid for cid, _ in group]
        attempt = max(self._attempts.get(cid, 0) for cid in ids)
        rel = f"{BATCH_DIR}/{name}.jsonl"
        try:
            (self.root / BATCH_DIR).mkdir(exist_ok=True)
            atomic_write(self.root / rel, b"".join(line for _, line in group))
            self.journal.planned(name, rel, ids, attempt)
            self._running.update(ids)
            content = (self.root / rel).read_bytes()
            file_id: str | None = None
            if self.api.uploads:
                file_id = await self._retrying(lambda: self.api.upload(content, f"{name}.jsonl"))
                self.journal.uploaded(name, file_id)
            b = await self._retrying(lambda: self.api.create(file_id, content, name, {"treesynth_run": self.run_id}))
            self.journal.created(name, b.id)
        except (ProviderError, OSError) as e:
            self._running.difference_update(ids)
            err = e if isinstance(e, ProviderError) else ProviderError(f"cannot prepare batch {name}: {e}")
            for cid in ids:
                self._fail(cid, err)
            return
        for cid in ids:
            self._attempts[cid] = self._attempts.get(cid, 0) + 1
        self._bump(submitted=1, running=1, requests=len(ids))
        await self._poll(name, b.id, ids)

    async def _retrying(self, call: Callable[[], Any], tries: int = 6) -> Any:
        delay = 1.0
        for i in range(tries):
            try:
                return await call()
            except TransientProviderError as e:
                if i == tries - 1:
                    raise ProviderError(f"the batch API kept failing: {e}") from None
                await asyncio.sleep(max(delay, e.retry_after or 0.0))
                delay = min(delay * 2, 60.0)
        raise AssertionError("unreachable")

    # ---- waiting ----------------------------------------------------------------------------
    async def _poll(self, name: str, batch_id: str, ids: list[str]) -> None:
        delay = self.poll_min_s
        while True:
            await asyncio.sleep(delay)
            try:
                b = await self.api.retrieve(batch_id)
            except TransientProviderError as e:
                delay = min(self.poll_max_s, max(delay * 1.5, e.retry_after or 0.0))
                continue
            except ProviderError as e:
                self._running.difference_update(ids)
                for cid in ids:
                    self._fail(cid, e)
                return
            self._bump(polls=1, last_status=f"{batch_id}: {b.provider_status}")
            if b.final:
                break
            delay = min(self.poll_max_s, delay * 1.5)
        files: list[Path] = []
        refs = dict(b.results)
        for suffix, ref in b.results:
            content = await self._retrying(functools.partial(self.api.download, ref))
            p = self.root / BATCH_DIR / f"{name}.{suffix}.jsonl"
            atomic_write(p, content)
            files.append(p)
        self.journal.finished(name, b.status, refs.get("out"), refs.get("err"))
        self._bump(running=-1, finished=1)
        self._collect(name, ids, files, b.status, b.errors)

    def _collect(self, name: str, ids: list[str], files: list[Path], status: str, errors: str = "") -> None:
        """Hand every id of a finished batch its answer (or keep its place until it is asked for)."""
        self._running.difference_update(ids)
        want = set(ids)
        seen: set[str] = set()
        for p in files:
            offset = 0
            with open(p, "rb") as f:
                for line in f:
                    res, _problems = self.api.parse(line, expected=want)
                    for cid in res:
                        if cid not in seen:
                            seen.add(cid)
                            self._stored[cid] = (p, offset)
                    offset += len(line)
        for cid in ids:
            if cid not in seen:  # the provider said nothing about it (a failed batch): it never ran
                self._settle(cid, BatchResult(cid, None, None, f"batch_{status}", errors[:300]))
                continue
            if cid in self._futures and not self._futures[cid].done():
                self._settle_from_file(cid, self._stored.pop(cid))

    def _settle_from_file(self, cid: str, where: tuple[Path, int]) -> None:
        p, offset = where
        with open(p, "rb") as f:
            f.seek(offset)
            line = f.readline()
        res, _ = self.api.parse(line, expected=[cid])
        self._settle(cid, res.get(cid) or BatchResult(cid, None, None, "unreadable", f"{p.name} changed"))

    def _settle(self, cid: str, r: BatchResult) -> None:
        fut = self._futures.get(cid)
        req = self._reqs.get(cid)
        if fut is None or fut.done() or req is None:
            return
        self._bump(answered=1)
        self.ledger.reserved = max(0.0, self.ledger.reserved - self._est.pop(cid, 0.0))
        if r.ok and r.body is not None:
            try:
                c = self.api.completion(r.body, req, self.price)
            except TransientProviderError as e:
                fut.set_exception(e)
            else:
                fut.set_result(c)
            return
        if not r.retryable:
            fut.set_exception(ProviderError(f"the batch API rejected call {req.slot}: HTTP {r.status}: {r.message or r.error_code}"))
            return
        if self._attempts.get(cid, 0) <= self.max_resubmits:
            self._bump(resubmitted=1)
            self._enqueue(cid, self.api.line(cid, self.api.body(req)), req)
            return
        self._bump(interactive_fallback=1)
        self._spawn(self._interactive(cid, req, fut))

    async def _interactive(self, cid: str, req: LLMRequest, fut: asyncio.Future[Completion]) -> None:
        try:
            fut.set_result(await self.interactive(req))
        except BaseException as e:  # noqa: BLE001 - the caller gets what the interactive call raised
            if not fut.done():
                fut.set_exception(e)

    def _fail(self, cid: str, err: BaseException) -> None:
        self.ledger.reserved = max(0.0, self.ledger.reserved - self._est.pop(cid, 0.0))
        fut = self._futures.get(cid)
        if fut is not None and not fut.done():
            fut.set_exception(err)

    def _bump(self, last_status: str | None = None, **deltas: int) -> None:
        s = self.ledger.status
        changes: dict[str, Any] = {k: getattr(s, k) + d for k, d in deltas.items()}
        if last_status is not None:
            changes["last_status"] = last_status
        self.ledger.status = dataclasses.replace(s, ts=time.time(), **changes)
        self.on_change()

    # ---- resume -----------------------------------------------------------------------------
    async def _reconcile(self) -> None:
        """Pick up this transport's batches of an earlier process: poll those the provider holds,
        collect the finished, find those created but never recorded (the API's ``find``)."""
        every = self.journal.load()
        known = {r.batch_id for r in every.values() if r.batch_id}
        records = {k: r for k, r in every.items() if r.name.startswith(self.tag)}
        for r in records.values():
            self._seq = max(self._seq, int(r.name[1:6]) if r.name[1:6].isdigit() else 0)
            if r.stage in ("created", "finished"):
                for cid in r.ids:
                    self._attempts[cid] = self._attempts.get(cid, 0) + 1
        for r in records.values():
            if r.stage == "uploaded" or (r.stage == "planned" and not self.api.uploads):
                # the create call may have reached the provider: the batch is found, never created twice
                found: BatchState | None = await self._retrying(
                    functools.partial(self.api.find, r.name, r.planned_at, len(r.ids), known))
                if found is not None:
                    known.add(found.id)
                    self.journal.created(r.name, found.id)
                    for cid in r.ids:
                        self._attempts[cid] = self._attempts.get(cid, 0) + 1
                    self._resume_poll(r, found.id)
            elif r.stage == "created" and r.batch_id:
                self._resume_poll(r, r.batch_id)
            elif r.stage == "finished":
                files = [self.root / BATCH_DIR / f"{r.name}.{s}.jsonl" for s, fid in (("out", r.output_file_id), ("err", r.error_file_id)) if fid]
                self._collect(r.name, list(r.ids), [p for p in files if p.exists()], r.status or "completed")

    def _resume_poll(self, r: BatchRecord, batch_id: str) -> None:
        self._running.update(r.ids)
        self._bump(submitted=1, running=1, requests=len(r.ids))
        self._spawn(self._poll(r.name, batch_id, list(r.ids)))

    async def aclose(self) -> None:
        """Stop waiting (what the provider holds is picked up on resume) and close both clients."""
        from ..lifecycle import close_transport

        for t in list(self._tasks):
            t.cancel()
        if self._timer is not None:
            self._timer.cancel()
        await self.api.aclose()
        await close_transport(self.interactive)

    def close(self) -> None:
        from ..lifecycle import close_transport_sync

        close_transport_sync(self.interactive)
