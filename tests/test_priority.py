"""The client's concurrency gate serves waiting calls by priority: tree steps, then the judge's
verdicts on rows already written, then generation (FIFO within a priority)."""

from __future__ import annotations

import asyncio

from treesynth.core.llm import PRIORITY_JUDGE, PRIORITY_LEAF, PRIORITY_TREE
from treesynth.core.ratelimit import PrioritySemaphore


async def test_waiters_are_served_tree_then_judge_then_generation():
    sem = PrioritySemaphore(1)
    await sem.acquire(PRIORITY_LEAF)  # the one slot is busy
    order: list[str] = []

    async def call(name: str, priority: int) -> None:
        await sem.acquire(priority)
        order.append(name)
        sem.release()

    waiters = [("gen-1", PRIORITY_LEAF), ("judge-1", PRIORITY_JUDGE), ("gen-2", PRIORITY_LEAF), ("tree", PRIORITY_TREE), ("judge-2", PRIORITY_JUDGE)]
    tasks = []
    for name, prio in waiters:
        tasks.append(asyncio.create_task(call(name, prio)))
        await asyncio.sleep(0)  # queued in this order
    sem.release()
    await asyncio.gather(*tasks)
    assert order == ["tree", "judge-1", "judge-2", "gen-1", "gen-2"]
