"""``LLMClient``: the one object every LLM call goes through, in front of a transport.

The client adds the response cache, pause/stop/budget gates, a priority concurrency
limit, RPM/TPM limits, retries with exponential backoff and jitter that honour
Retry-After, and usage accounting. The transport does the call itself: in the product the
native OpenAI-compatible client (core/llm/transports/openai_http.py) for openai/ and hosted_vllm/
models and litellm (core/llm/transports/litellm.py) for every other provider (``make_local_transport``),
a pool of Ray workers (core/llm/transports/ray.py), a scripted fake in tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..cache import ResponseCache, cache_key
from ..errors import BudgetExhausted, ProviderError, ProviderTimeout, StopRequested, TransientProviderError, first_line
from ..ratelimit import PrioritySemaphore, RateLimiter
from ..text import clean_text
from .adaptive import AdaptiveLimit
from .budget import GO, SPENT, WAIT, budget_state, call_ceiling, prompt_tokens
from .outage import DEFAULT_OUTAGE_TIMEOUT_S, Outage
from .pricing import CallPrice
from .types import PRIORITY_TREE, Completion, LLMRequest, Transport, UsageTotals, role_of


class LLMClient:
    def __init__(
        self,
        transport: Transport,
        *,
        concurrency: int = 16,
        rpm: int | None = None,
        tpm: int | None = None,
        max_retries: int = 6,
        budget: float | None = None,
        cache: ResponseCache | None = None,
        read_cache: bool = True,
        usage: UsageTotals | None = None,
        on_usage: Callable[[], None] | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        adapt_timeout_s: float | None = None,
        price: CallPrice | None = None,
        outage_timeout_s: float = DEFAULT_OUTAGE_TIMEOUT_S,
    ) -> None:
        """``adapt_timeout_s``: the transport's call timeout; given, the concurrency limit adapts to an
        endpoint that queues calls (core/llm/adaptive.py) and each change is noted in ``notices``.
        ``price``: the model's (core/llm/pricing.py ``call_price``); given, each call in flight holds the most
        it can cost against the budget (core/llm/budget.py), so the spend passes it by one call at most.
        ``outage_timeout_s``: how long the endpoint may stay unreachable before the run stops
        (core/llm/outage.py)."""
        self.transport = transport
        self.sem = PrioritySemaphore(concurrency)
        self.adaptive = AdaptiveLimit(concurrency, adapt_timeout_s) if adapt_timeout_s else None
        self.notices: list[str] = []  # what the client changed on its own, for the run's log (read by the engine)
        self.rpm = RateLimiter(rpm) if rpm else None
        self.tpm = RateLimiter(tpm) if tpm else None
        self.max_retries = max_retries
        self.budget = budget
        self.price = price
        self.cache = cache
        self.read_cache = read_cache
        self.usage = usage or UsageTotals()
        self.on_usage = on_usage or (lambda: None)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._running = asyncio.Event()
        self._running.set()
        self._stopping = False
        self.budget_hit = False
        self._call_started: dict[int, float] = {}  # in-flight calls: id -> time.monotonic() when it started
        self._call_seq = 0
        self.outage = Outage(outage_timeout_s, base_s=backoff_base, cap_s=max(backoff_cap / 2, backoff_base))

    @property
    def calls_in_flight(self) -> int:
        """Calls sent to the provider and not answered yet (``usage.in_flight`` also counts those holding a slot at the gate)."""
        return len(self._call_started)

    def oldest_in_flight_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest call still in flight started (None when none is)."""
        if not self._call_started:
            return None
        oldest = next(iter(self._call_started.values()))  # insertion order is start order
        return max(0.0, (time.monotonic() if now is None else now) - oldest)

    # ---- steering --------------------------------------------------------
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def stop(self) -> None:
        """No new calls start; waiting callers get StopRequested."""
        self._stopping = True
        self._running.set()

    def budget_left(self) -> bool:
        return self._budget_state() != SPENT

    def _budget_state(self) -> str:
        u = self.usage
        return budget_state(self.budget, u.cost, u.reserved.total, u.cost_known)

    def _room(self) -> bool:
        """A call holding a slot may go on: the budget has room beyond what calls in flight hold (or the run
        stops, or the budget is spent: the gate says so)."""
        return self._stopping or self._budget_state() != WAIT

    async def gate(self, room: bool = False) -> None:
        """What every call passes before it starts, an endpoint embedder's included: waits while the run is
        paused; raises ``StopRequested`` once it is stopping, ``BudgetExhausted`` once its budget is spent.
        ``room``: the call is about to start (it holds its slot): it also waits while calls in flight hold
        the rest of the budget (core/llm/budget.py)."""
        await self._gate(room)

    async def _gate(self, room: bool = False) -> None:
        if not self._running.is_set():
            await self._running.wait()
        if self._stopping:
            raise StopRequested()
        if not self.budget_left():
            self.budget_hit = True
            raise BudgetExhausted()
        if room and self._budget_state() != GO:
            await self.usage.reserved.wait_for(self._room)
            await self._gate(room)  # paused, stopping or spent meanwhile

    def _hold(self, req: LLMRequest) -> float | None:
        """Reserve the most ``req`` can cost against the budget while it is in flight (None: nothing held,
        without a budget or a price)."""
        if self.budget is None or self.price is None:
            return None
        return self.usage.reserved.hold(call_ceiling(self.price, prompt_tokens(req.messages), req.max_tokens))

    # ---- the call --------------------------------------------------------
    def _params(self, req: LLMRequest) -> dict[str, Any]:
        return {"temperature": req.temperature, "max_tokens": req.max_tokens, "seed": req.seed, "schema": req.schema}

    async def complete(self, req: LLMRequest) -> Completion:
        key = None
        if self.cache is not None:
            key = cache_key(self.transport.model, req.messages, self._params(req), req.slot)
            if self.read_cache:
                hit = self.cache.get(key)
                if hit is not None:
                    self.usage.cache_hits += 1
                    self.on_usage()
                    return Completion(hit.text, hit.finish_reason, hit.tokens_in, hit.tokens_out, 0.0, cached=True)
        attempt = 0
        me = object()  # this call, for the outage's prober (core/llm/outage.py)
        try:
            while True:
                await self._gate()
                await self.outage.wait(me, lambda: self._stopping)
                est_tokens = sum(len(m["content"]) for m in req.messages) // 4 + req.max_tokens // 2
                if self.rpm:
                    await self.rpm.acquire(1)
                if self.tpm:
                    await self.tpm.acquire(est_tokens)
                await self.sem.acquire(req.priority)
                self.usage.in_flight += 1
                self._call_seq += 1
                call = self._call_seq
                delay = 0.0
                held: float | None = None
                try:
                    await self._gate(room=True)  # state may have changed while we waited for a slot
                    held = self._hold(req)
                    self.usage.requests += 1
                    self.usage.role(role_of(req.priority), self.transport.model).requests += 1
                    started = self._call_started[call] = time.monotonic()
                    result = await self.transport(req)
                except TransientProviderError as e:
                    self.usage.errors += 1
                    partial = getattr(e, "partial", None)
                    if partial is not None:  # a call cut off midway: the tokens it received were spent (cost, budget)
                        self._account(partial, est_tokens, req)
                    if e.unreachable:  # the endpoint, not this call: no retry spent (core/llm/outage.py)
                        began = not self.outage.active
                        probe_in = self.outage.failed(me, first_line(e, 200))
                        if began:
                            self.notices.append(
                                f"the endpoint is unreachable ({first_line(e, 200)}): calls wait while it is probed, "
                                f"for up to {self.outage.timeout_s:g} s (--outage-timeout)"
                            )
                        self.usage.retries += 1  # the call is sent again, without spending one of its own retries
                        self.on_usage()
                        delay = probe_in or 0.0  # None: another call probes; this one waits at the top
                    else:
                        self._answered()
                        if isinstance(e, ProviderTimeout):
                            self._adapt_down()
                        if attempt >= self.max_retries:
                            self.on_usage()
                            raise
                        attempt += 1
                        self.usage.retries += 1
                        self.on_usage()
                        delay = self._backoff(attempt, e.retry_after)
                except ProviderError:
                    self._answered()  # the server answered, if with a refusal
                    raise
                else:
                    self._answered()
                    self._adapt_up(time.monotonic() - started)
                    if not result.text.isascii():
                        cleaned = clean_text(result.text)
                        if cleaned is not result.text:
                            result = replace(result, text=cleaned)
                    self._account(result, est_tokens, req)
                    if self.cache is not None and key is not None:
                        self.cache.put(key, result.text, result.finish_reason, result.tokens_in, result.tokens_out)
                        if req.priority == PRIORITY_TREE:
                            # a tree step's answer is persisted nowhere else until its node is done: commit it
                            # now, so a crash never asks it again (generation answers land in samples.jsonl)
                            self.cache.commit()
                    self.on_usage()
                    return result
                finally:
                    if held is not None:  # its cost is counted by now (_account): the reservation goes
                        self.usage.reserved.release(held)
                    self.usage.in_flight -= 1
                    self._call_started.pop(call, None)
                    self.sem.release()
                if delay:
                    await asyncio.sleep(delay)
        finally:
            self.outage.release(me)

    def _answered(self) -> None:
        """The endpoint answered something: an outage, if one was on, is over."""
        lasted = self.outage.answered()
        if lasted is not None:
            self.notices.append(f"the endpoint answered again after {lasted:.0f} s unreachable; the calls that waited go on")
            self.on_usage()

    def _adapt_down(self) -> None:
        if self.adaptive is None:
            return
        in_flight = len(self._call_started)
        new = self.adaptive.on_timeout(in_flight)
        if new is not None:
            self.sem.set_limit(new)
            self.notices.append(
                f"a call got no answer in time with {in_flight} calls in flight: the endpoint queues calls, so at most "
                f"{new} go at once from now on (raised again while answers come quickly; --concurrency sets the most)"
            )

    def _adapt_up(self, latency_s: float) -> None:
        if self.adaptive is not None:
            new = self.adaptive.on_success(latency_s)
            if new is not None:
                self.sem.set_limit(new)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        expo = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        delay = random.uniform(expo / 2, expo)  # "equal jitter"
        if retry_after is not None:
            delay = max(delay, min(retry_after, 600.0))
        return delay

    def _account(self, c: Completion, est_tokens: int, req: LLMRequest) -> None:
        u = self.usage
        r = u.role(role_of(req.priority), self.transport.model)
        u.tokens_in += c.tokens_in
        u.tokens_out += c.tokens_out
        r.tokens_in += c.tokens_in
        r.tokens_out += c.tokens_out
        if c.cost is None:
            u.cost_known = r.cost_known = False
        else:
            u.cost += c.cost
            r.cost += c.cost
        if self.tpm:
            self.tpm.adjust(c.tokens_in + c.tokens_out - est_tokens)
