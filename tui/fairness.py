"""Keep the UI responsive while the engine shares its event loop.

The engine runs as an async worker on the app's loop. With a real provider every call waits
on the network, so the loop turns often. When answers come back at once (a local server, a
fast or scripted provider), hundreds of engine tasks can be ready together, and asyncio runs
every ready task before it looks at anything else: the UI would wait for the whole burst
(seconds, with a large tree).

``FairTransport`` sits in front of the run's transport. Once the engine has had the loop for
``budget_s`` without a break, the calls reaching it step aside for one loop iteration (a
barrier): the rest of that iteration is cheap, and the UI's pending work (keys, timers, event
batches) runs next. Nothing is dropped or reordered in the engine; calls are only delayed by
at most one loop iteration, and with a slow provider the barrier practically never fires.
"""

from __future__ import annotations

import asyncio
import time


class LoopShare:
    """Measures how long the engine has held the loop since the last break."""

    def __init__(self, budget_s: float = 0.005, urgent_budget_s: float = 0.001) -> None:
        self.budget_s = budget_s
        self.urgent_budget_s = urgent_budget_s
        self.mark = time.monotonic()
        self.urgent_until = 0.0
        self._barrier: asyncio.Handle | None = None
        self.breaks = 0

    def urgent(self, for_s: float = 0.1) -> None:
        """Input arrived: the engine takes only a sliver of the loop until the UI has answered it.

        Called from the terminal driver's thread (a float store, safe without a lock)."""
        self.urgent_until = time.monotonic() + for_s

    def _release(self) -> None:
        self._barrier = None
        self.mark = time.monotonic()

    def must_yield(self) -> bool:
        if self._barrier is not None:
            return True
        now = time.monotonic()
        budget = self.urgent_budget_s if now < self.urgent_until else self.budget_s
        if now - self.mark > budget:
            self.breaks += 1
            self._barrier = asyncio.get_running_loop().call_soon(self._release)  # runs first in the next iteration
            return True
        return False


class FairTransport:
    """A transport that gives the event loop back to the UI between bursts of instant answers."""

    def __init__(self, inner, share: LoopShare | None = None) -> None:
        self.inner = inner
        self.share = share or LoopShare()

    @property
    def model(self) -> str:
        return self.inner.model

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    async def __call__(self, req):
        if self.share.must_yield():
            await asyncio.sleep(0)
        return await self.inner(req)
