"""Blocking calls that work wherever Python runs: a script, a REPL, or a Jupyter kernel (whose event loop
is already running, so ``asyncio.run`` would raise). The coroutine always runs on a loop of its own in a
worker thread while the caller waits; Ctrl-C (a kernel interrupt) asks the run to stop gracefully, and a
second one stops waiting (the worker still saves what is in flight)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class _Outcome:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: object = None
        self.error: BaseException | None = None


def run_blocking(make: Callable[[], Awaitable[T]], on_interrupt: Callable[[], None] | None = None) -> T:
    """Run ``make()`` to completion on a fresh event loop in a worker thread and return its result (or raise
    its exception). ``on_interrupt`` is called on that loop at the first KeyboardInterrupt (e.g. a stop
    request); the wait goes on until the coroutine ends, and KeyboardInterrupt is raised again after it."""
    outcome = _Outcome()
    box: dict[str, asyncio.AbstractEventLoop] = {}
    started = threading.Event()

    async def main() -> T:
        box["loop"] = asyncio.get_running_loop()
        started.set()
        return await make()

    def worker() -> None:
        try:
            # asyncio.run, as a script's own would: at the end it cancels what libraries left running on the
            # loop (litellm's logging worker) and shuts down async generators, then closes the loop
            outcome.value = asyncio.run(main())
        except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
            outcome.error = e
        finally:
            started.set()
            outcome.done.set()

    thread = threading.Thread(target=worker, name="treesynth-run", daemon=True)
    thread.start()
    started.wait()
    interrupted = False
    while not outcome.done.is_set():
        try:
            outcome.done.wait(0.2)
        except KeyboardInterrupt:
            if interrupted:  # the second: stop waiting; the worker finishes on its own
                raise
            interrupted = True
            if on_interrupt is not None and "loop" in box:
                box["loop"].call_soon_threadsafe(on_interrupt)
    thread.join()
    if outcome.error is not None:
        raise outcome.error
    if interrupted:
        raise KeyboardInterrupt
    return outcome.value  # type: ignore[return-value]
