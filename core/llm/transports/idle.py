"""Idle timeouts for a streamed call: a limit on silence, not on a call's length.

``IdleTimeout`` bounds two waits of the block it guards: until the first sign of progress (connecting,
the server's queue and its prompt processing: ``first_s``), then between two signs of progress
(``gap_s``). A server that keeps writing tokens, however slowly, is never cut off; one that stops
(stalled, SIGSTOPped, a dead peer whose connection never closes) is noticed within the gap. The caller
says what progress is (``progress()``): a streamed chunk's data, not a keep-alive comment, so a server
that pings while its generation is stuck is still noticed.

One timer per call, re-armed when the first progress comes and then only when it fires (``progress()``
otherwise just stores the time: a streamed answer's hundreds of chunks cost no timer each). On expiry the guarded task is cancelled and the block
raises ``TimeoutError``; ``expired`` says which wait ran out. Cancellation from outside is never turned
into a timeout (the same bookkeeping as ``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

FIRST = "first"  # no progress at all within first_s
GAP = "gap"  # progress, then none for gap_s


class IdleTimeout:
    """``with IdleTimeout(first_s, gap_s) as watch: ... watch.progress() ...`` inside a task (see the module docstring)."""

    __slots__ = ("first_s", "gap_s", "expired", "_loop", "_task", "_start", "_last", "_handle", "_cancelling")

    def __init__(self, first_s: float, gap_s: float) -> None:
        if first_s <= 0 or gap_s <= 0:
            raise ValueError("first_s and gap_s must be > 0")
        self.first_s = float(first_s)
        self.gap_s = float(gap_s)
        self.expired: str | None = None
        self._last: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._cancelling = 0

    @property
    def started(self) -> bool:
        """Whether any progress was made (the first chunk arrived)."""
        return self._last is not None

    def progress(self) -> None:
        """A sign of life: the gap is measured from now."""
        first = self._last is None
        self._last = self._loop.time()
        if first and self._handle is not None:  # the timer waits for the first token's limit: bring it forward to the gap's
            self._handle.cancel()
            self._handle = self._loop.call_at(self._last + self.gap_s, self._fire)

    def _due(self) -> float:
        return self._start + self.first_s if self._last is None else self._last + self.gap_s

    def _fire(self) -> None:
        due = self._due()
        if self._loop.time() < due:
            self._handle = self._loop.call_at(due, self._fire)
            return
        self._handle = None
        self.expired = FIRST if self._last is None else GAP
        self._task.cancel()

    def __enter__(self) -> IdleTimeout:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("IdleTimeout must be used inside a task")
        self._task = task
        self._loop = asyncio.get_running_loop()
        self._cancelling = task.cancelling() if hasattr(task, "cancelling") else 0
        self._start = self._loop.time()
        self._handle = self._loop.call_at(self._start + self.first_s, self._fire)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.expired is None:
            return
        uncancel = getattr(self._task, "uncancel", None)  # Python 3.10 keeps no count: the cancel was ours
        ours = uncancel is None or uncancel() <= self._cancelling
        if ours and exc_type is asyncio.CancelledError:
            raise TimeoutError(f"no progress within {self.first_s if self.expired == FIRST else self.gap_s:g}s") from exc
