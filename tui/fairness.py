"""Keep the UI responsive while the engine shares its event loop.

The engine runs as an async worker on the app's loop. With a real provider every call waits
on the network, so the loop turns often. When answers come back at once (a local server, a
fast or scripted provider), hundreds of engine tasks can be ready together, and asyncio runs
every ready task before it looks at anything else: the UI would wait for the whole burst
(seconds, with a large tree).

``FairTransport`` sits in front of the run's transport and hands out the loop in slices.
Engine calls pass straight through while the engine has held the loop for less than
``budget_s`` since its slice began. After that, calls queue (first come, first served), and
one queued call is let go per loop iteration, at the start of a fresh slice: that task may
run on (through further instant calls) until the slice is used up, then queues again. So each
loop iteration holds at most about one slice of engine work plus one call's processing, and
the UI's pending work (keys, timers, event batches) runs in every iteration. Nothing is
dropped; calls are only delayed, and with a slow provider the engine never uses a whole slice,
so nothing ever queues.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class LoopShare:
    """Hands the event loop to the engine in slices of ``budget_s`` (``urgent_budget_s`` while a
    key press waits for the UI), one slice per loop iteration once the engine is busy."""

    def __init__(self, budget_s: float = 0.005, urgent_budget_s: float = 0.001, clock=time.monotonic) -> None:
        self.budget_s = budget_s
        self.urgent_budget_s = urgent_budget_s
        self.clock = clock
        self.mark = clock()  # start of the engine's current slice
        self.urgent_until = 0.0
        self.waiters: deque[asyncio.Future] = deque()
        self._release_handle: asyncio.Handle | None = None
        self.breaks = 0  # how many times a call had to queue

    def urgent(self, for_s: float = 0.1) -> None:
        """Input arrived: the engine takes only a sliver of the loop until the UI has answered it.

        Called from the terminal driver's thread (a float store, safe without a lock)."""
        self.urgent_until = time.monotonic() + for_s

    def _budget(self) -> float:
        return self.urgent_budget_s if time.monotonic() < self.urgent_until else self.budget_s

    def must_yield(self) -> bool:
        """True when a call must queue for its turn: calls are queued already, or the slice is used up."""
        return bool(self.waiters) or self.clock() - self.mark > self._budget()

    async def turn(self) -> None:
        """Wait, if need be, until this call may go on (at the start of a later loop iteration)."""
        if not self.must_yield():
            return
        self.breaks += 1
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        self._schedule_release()
        await fut

    def _schedule_release(self) -> None:
        if self._release_handle is None:
            # call_soon from inside this iteration runs in the next one, after the callbacks that were
            # already ready (the UI's among them)
            self._release_handle = asyncio.get_running_loop().call_soon(self._release)

    def _release(self) -> None:
        self._release_handle = None
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():  # skip calls cancelled while they waited
                self.mark = self.clock()  # a fresh slice, for the task let go now
                fut.set_result(None)
                break
        if self.waiters:
            self._schedule_release()


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
        await self.share.turn()
        return await self.inner(req)


class GcPacer:
    """Keeps the cyclic garbage collector's full passes out of the run's way.

    With a large tree the interpreter holds a few hundred thousand long-lived objects (nodes, tree
    lines, the app's widgets), and each full (generation 2) collection walks all of them: 20 to
    90 ms with the loop stopped, several times a second while answers pour in. ``tick()`` (every
    second while a run is live) moves everything alive into the permanent generation, so full
    passes only walk what was made since. Cyclic garbage among frozen objects is not collected
    while frozen, so every ``release_s`` and when the run ends ``release()`` puts them back (the
    next full pass frees what has become garbage): memory stays bounded, with one ordinary pass
    per ``release_s`` instead of several per second.
    """

    def __init__(self, release_s: float = 60.0, clock=time.monotonic) -> None:
        self.release_s = release_s
        self.clock = clock
        self.active = False
        self._since = clock()

    def tick(self) -> None:
        import gc

        if self.active and self.clock() - self._since >= self.release_s:
            self.release()
        gc.freeze()
        if not self.active:
            self.active = True
            self._since = self.clock()

    def release(self) -> None:
        import gc

        if self.active:
            gc.unfreeze()
            self.active = False
