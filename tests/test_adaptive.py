"""Concurrency against an endpoint that queues calls (core/llm/adaptive.py): the pure rule, the
resizable gate, and the client against a single-slot endpoint that times out queued calls, as
llama-cpp-python's server does with 16 calls in flight and a short timeout."""

from __future__ import annotations

import asyncio
import time

import pytest

from treesynth.core.errors import ProviderTimeout
from treesynth.core.llm import LLMClient
from treesynth.core.llm.adaptive import AdaptiveLimit
from treesynth.core.llm.types import Completion, LLMRequest
from treesynth.core.ratelimit import PrioritySemaphore


def test_a_timeout_with_calls_queued_halves_the_limit_and_one_alone_does_not():
    a = AdaptiveLimit(16, 120.0)
    assert a.on_timeout(1) is None and a.limit == 16  # slow, not crowded
    assert a.on_timeout(16) == 8 and a.on_timeout(8) == 4 and a.on_timeout(3) == 1
    assert a.on_timeout(2) is None and a.limit == 1  # never below 1
    a = AdaptiveLimit(4, 120.0)
    assert a.on_timeout(20) == 2  # half of at most the limit


def test_quick_answers_raise_the_limit_one_at_a_time_and_slow_ones_do_not():
    a = AdaptiveLimit(4, 30.0)
    a.on_timeout(4)
    assert a.limit == 2
    assert a.on_success(1.0) is None and a.on_success(1.0) == 3  # as many quick answers as the limit
    assert [a.on_success(1.0) for _ in range(3)] == [None, None, 4]
    assert a.on_success(0.1) is None and a.limit == 4  # the most
    a.on_timeout(4)
    assert a.on_success(1.0) is None and a.on_success(10.0) is None and a.on_success(1.0) is None  # a slow one (>= 10 s) resets
    assert a.limit == 2
    with pytest.raises(ValueError):
        AdaptiveLimit(0, 1.0)


async def test_the_gate_shrinks_under_its_holders_and_grows_to_wake_waiters():
    sem = PrioritySemaphore(3)
    for _ in range(3):
        await sem.acquire()
    sem.set_limit(1)  # three hold slots: none is taken back, nobody new gets one until two are released
    got: list[int] = []

    async def waiter(i: int) -> None:
        await sem.acquire()
        got.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await asyncio.sleep(0)
    sem.release()
    sem.release()
    await asyncio.sleep(0)
    assert got == []  # one holder left = the limit
    sem.release()
    await asyncio.sleep(0)
    assert got == [0]
    sem.set_limit(3)
    await asyncio.sleep(0)
    assert got == [0, 1, 2]
    await asyncio.gather(*tasks)


class SingleSlot:
    """An endpoint that decodes one call at a time (``service_s`` each) and times out any call not
    answered within ``timeout_s`` of being sent, still decoding it (as a real server does)."""

    model = "fake/single-slot"

    def __init__(self, service_s: float, timeout_s: float) -> None:
        self.service_s, self.timeout_s = service_s, timeout_s
        self.lock = asyncio.Lock()
        self.decoded = 0
        self.timeouts = 0
        self.max_in_flight = 0
        self.in_flight = 0

    async def _decode(self) -> None:
        async with self.lock:
            await asyncio.sleep(self.service_s)
            self.decoded += 1

    async def __call__(self, req: LLMRequest) -> Completion:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        job = asyncio.ensure_future(self._decode())
        try:
            await asyncio.wait_for(asyncio.shield(job), self.timeout_s)
        except asyncio.TimeoutError:
            self.timeouts += 1
            raise ProviderTimeout(f"no answer within {self.timeout_s}s") from None
        finally:
            self.in_flight -= 1
        return Completion("{}", "stop", 1, 1, 0.0)


def _req(i: int) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": str(i)}], slot=f"s{i}")


@pytest.mark.slow
async def test_against_a_single_slot_endpoint_the_client_backs_off_and_every_call_is_answered():
    ep = SingleSlot(service_s=0.02, timeout_s=0.1)  # 16 queued calls: the last would wait 0.32 s
    client = LLMClient(ep, concurrency=16, max_retries=6, backoff_base=0.01, adapt_timeout_s=0.1)
    t0 = time.monotonic()
    out = await asyncio.gather(*[client.complete(_req(i)) for i in range(40)])
    assert len(out) == 40 and time.monotonic() - t0 < 10
    assert client.sem.limit < 16 and client.notices and "the endpoint queues calls" in client.notices[0]
    assert ep.timeouts <= 25  # the first wave (already sent), then the backlog the endpoint still decodes

    fixed = SingleSlot(service_s=0.02, timeout_s=0.1)  # the same without adapting: timeouts pile up
    plain = LLMClient(fixed, concurrency=16, max_retries=50, backoff_base=0.01)
    await asyncio.gather(*[plain.complete(_req(i)) for i in range(40)])
    assert fixed.timeouts > 5 * ep.timeouts and not plain.notices  # measured: 18 against 360
