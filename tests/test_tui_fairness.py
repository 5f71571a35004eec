"""The loop share that keeps the UI responsive while the engine runs on the app's loop (tui/fairness.py).

Counted, not timed: a fake clock advances by one "millisecond" per engine call, and the test counts
how many calls run between two turns of a UI coroutine that only wants the loop once per iteration.
"""

from __future__ import annotations

import asyncio
import gc

from treesynth.tui.fairness import FairTransport, GcPacer, LoopShare


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def _burst(n_tasks: int, calls_each: int, share: LoopShare | None, clock: Clock):
    """Engine tasks whose provider answers at once (each call 'costs' 1 ms of fake time); a UI
    coroutine records how many calls ran between its turns."""
    done = {"calls": 0}

    async def instant(req):
        clock.t += 0.001
        done["calls"] += 1
        return req

    transport = FairTransport(instant, share) if share is not None else instant
    gaps: list[int] = []
    finished = asyncio.Event()

    async def ui() -> None:
        last = 0
        while not finished.is_set():
            await asyncio.sleep(0)
            gaps.append(done["calls"] - last)
            last = done["calls"]

    async def engine_task(i: int) -> None:
        for j in range(calls_each):
            await transport((i, j))

    ui_task = asyncio.ensure_future(ui())
    await asyncio.gather(*(engine_task(i) for i in range(n_tasks)))
    finished.set()
    await ui_task
    return gaps, done["calls"]


async def test_without_the_share_a_burst_holds_the_loop_for_whole_calls_sequences():
    clock = Clock()
    gaps, total = await _burst(50, 40, None, clock)
    assert total == 2000 and max(gaps) >= 1000  # the control: the UI waits for most of the burst


async def test_the_share_gives_the_ui_a_turn_after_every_slice():
    clock = Clock()
    share = LoopShare(budget_s=0.005, clock=clock)
    gaps, total = await _burst(50, 40, share, clock)
    assert total == 2000  # nothing dropped
    # a slice is 5 fake ms: at most 6 calls (the one that crossed the line included) per iteration,
    # plus the one each task makes before it first meets the queue
    assert max(gaps[3:]) <= 7, max(gaps)
    assert share.breaks > 0 and not share.waiters


async def test_a_cancelled_waiter_does_not_block_the_queue():
    clock = Clock()
    share = LoopShare(budget_s=0.0, clock=clock)
    clock.t = 1.0  # the slice is used up: every call queues
    first = asyncio.ensure_future(share.turn())
    second = asyncio.ensure_future(share.turn())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.wait_for(second, 1.0)
    assert second.done() and not share.waiters


def test_gc_pacer_freezes_while_live_and_releases_on_schedule():
    clock = Clock()
    pacer = GcPacer(release_s=60.0, clock=clock)
    try:
        before = gc.get_freeze_count()
        pacer.tick()
        assert pacer.active and gc.get_freeze_count() >= before
        junk = [[] for _ in range(1000)]
        pacer.tick()
        assert gc.get_freeze_count() >= 1000  # what was alive joined the permanent generation
        del junk
        clock.t = 61.0
        pacer.tick()  # a minute on: everything goes back first, then the live objects freeze again
        assert pacer.active
        pacer.release()
        assert not pacer.active and gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
