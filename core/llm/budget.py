"""A budget that holds: calls in flight count at the most they can cost.

The spend is known only once a call answers, so a gate that compared the spend alone with the budget let
every call in flight pass it (16 calls at once: up to 16 calls' cost past the budget). Instead every call
holds a reservation while it is in flight: the most it can cost, its prompt's estimated tokens in and
``max_tokens`` out at the model's price (``call_ceiling``). A call starts only while ``spent + reserved <
budget`` (``budget_state``); when it answers, its reservation is replaced by what it cost (which is at
most the reservation, up to the prompt estimate). Every call started saw room under the budget and
reservations only shrink into costs, so the spend passes the budget by at most one call's most, however
many calls are in flight.

A call that finds the budget taken by reservations (not yet spent) waits for a call in flight to answer
(``Reservations.wait_for``) rather than stopping the run: the answers may cost far less than their most.
The run's LLM clients (its model's and a judge model's) and an endpoint embedder share one
``Reservations`` through the run's ``UsageTotals``, so each sees what the others hold.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import RunConfig
    from .pricing import CallPrice

GO = "go"  # a call may start
WAIT = "wait"  # the budget is held by calls in flight: wait for one to answer
SPENT = "spent"  # the budget is spent: no call starts

CHARS_PER_TOKEN = 3  # English prompts run ~4 characters a token, JSON and code nearer 3: the larger count
# text that is not all ASCII, by its UTF-8 bytes: cl100k and o200k take 0.3-0.51 tokens a byte of Chinese, Japanese,
# Korean, Hindi, Thai, Arabic, Russian and Greek (Greek densest), where characters / 3 was up to 4x low
# (tests/test_prices.py counts them with the real tokenizers)
BYTES_PER_TOKEN = 1.5


def text_tokens(text: str) -> float:
    """A text's tokens, estimated high: ASCII by its characters, other text by its UTF-8 bytes."""
    if text.isascii():
        return len(text) / CHARS_PER_TOKEN
    return len(text.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN


def prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """A prompt's tokens, estimated from its text (``text_tokens``, rounded up: a reservation errs high)."""
    return math.ceil(sum(text_tokens(str(m.get("content") or "")) for m in messages))


def call_ceiling(price: CallPrice | None, tokens_in: int, max_tokens: int) -> float:
    """The most a call can cost: ``tokens_in`` in and ``max_tokens`` out at ``price``; 0 when unpriced."""
    if price is None:
        return 0.0
    cost = price(max(0, tokens_in), max(0, max_tokens))
    return float(cost) if cost is not None and cost > 0 else 0.0


def reservation_price(cfg: RunConfig, model: str) -> CallPrice | None:
    """The price a client of ``model`` reserves each call's most at: the config's or litellm's
    (core/llm/pricing.py). None without a budget, and in a --batch run: the batch transport reserves a
    batch's cost before sending it (core/llm/batch/transport.py), and calls waiting in batches would
    otherwise hold the budget twice."""
    if cfg.batch or cfg.budget is None:
        return None
    from .pricing import call_price

    return call_price(model, cfg.prices)


def budget_state(budget: float | None, spent: float, reserved: float, cost_known: bool = True) -> str:
    """``GO``, ``WAIT`` or ``SPENT`` for a call about to start. No budget, or an unknown cost (a model
    without a price, which the preflight refuses with a budget), never stops a call."""
    if budget is None or not cost_known:
        return GO
    if spent >= budget:
        return SPENT
    if spent + reserved >= budget:
        return WAIT
    return GO


class Reservations:
    """What a run's calls in flight hold against its budget (``total``), and the calls waiting for some
    of it to be released. Safe across threads and event loops (an embedder's calls from a worker thread
    run on a loop of their own)."""

    def __init__(self) -> None:
        self.total = 0.0
        self.calls = 0
        self._lock = threading.Lock()
        self._waiters: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    def hold(self, amount: float) -> float:
        """Reserve ``amount`` for a call starting now; returns it, for ``release``."""
        with self._lock:
            self.total += amount
            self.calls += 1
        return amount

    def release(self, amount: float) -> None:
        """The call holding ``amount`` is no longer in flight (its cost, if any, is counted by now)."""
        with self._lock:
            self.calls = max(0, self.calls - 1)
            # no call in flight: exactly nothing held (the float sums' rounding does not linger)
            self.total = max(0.0, self.total - amount) if self.calls else 0.0
        self._wake_one()

    async def wait_for(self, ready: Callable[[], bool]) -> None:
        """Return once ``ready()`` (checked each time a reservation is released). Waiters are woken one at a
        time, first come first served: one that returns wakes the next, so a release that frees room for
        several lets them all through, and one that frees none costs one check, not one per waiter."""
        loop = asyncio.get_running_loop()
        first = True
        while True:
            if ready():
                if not first:
                    self._wake_one()  # room for this one: perhaps for the next too
                return
            fut: asyncio.Future[None] = loop.create_future()
            with self._lock:
                (self._waiters.append if first else self._waiters.appendleft)((loop, fut))
            first = False
            try:
                await fut
            except asyncio.CancelledError:
                with self._lock:
                    try:
                        self._waiters.remove((loop, fut))
                    except ValueError:
                        pass
                if fut.done() and not fut.cancelled():
                    self._wake_one()  # it was woken: the wake-up goes on to the next
                raise

    def _wake_one(self) -> None:
        with self._lock:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                if fut.done():
                    continue
                try:
                    loop.call_soon_threadsafe(self._deliver, fut)
                except RuntimeError:  # its loop is closed
                    continue
                return

    def _deliver(self, fut: asyncio.Future[None]) -> None:
        """On the waiter's loop: wake it, or the next one if it was cancelled on the way."""
        if fut.done():
            self._wake_one()
        else:
            fut.set_result(None)
