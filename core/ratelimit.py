"""Concurrency and rate limits for LLM calls (asyncio)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time


class PrioritySemaphore:
    """A semaphore whose waiters are served lowest priority number first, FIFO within a priority.

    Tree expansion (priority 0) goes ahead of leaf synthesis (priority 1), so the tree keeps
    growing while leaves are being filled.
    """

    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError("value must be >= 1")
        self.limit = value
        self._free = value  # below 0 after the limit shrank under the slots in use: releases pay it back first
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def set_limit(self, value: int) -> None:
        """Change how many holders may hold a slot at once; holders above a smaller limit keep their
        slots until they release them, and nobody new gets one until the count is under the limit."""
        if value < 1:
            raise ValueError("value must be >= 1")
        self._free += value - self.limit
        self.limit = value
        while self._free > 0 and self._wake_one():
            self._free -= 1

    def _wake_one(self) -> bool:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)
                return True
        return False

    async def acquire(self, priority: int = 0) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # we were handed the slot but are leaving: pass it on
            raise

    def release(self) -> None:
        if self._free < 0 or not self._wake_one():
            self._free += 1


class RateLimiter:
    """Token bucket: ``per_minute`` units per minute, bursts up to one second's worth (at least 1)."""

    def __init__(self, per_minute: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.tokens = self.capacity
        self.updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        async with self._lock:
            need = min(amount, self.capacity)
            while True:
                self._refill()
                if self.tokens >= need:
                    self.tokens -= amount  # may go negative for large requests: later callers wait
                    return
                await asyncio.sleep((need - self.tokens) / self.rate)

    def adjust(self, delta: float) -> None:
        """Charge (positive) or refund (negative) units after the fact, e.g. actual vs estimated tokens."""
        self._refill()
        self.tokens = min(self.capacity, self.tokens - delta)
