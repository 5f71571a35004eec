"""The garbage collector's pace while a run executes.

CPython's default thresholds (700, 10, 10) start a young collection every 700 net new container
objects. A run at API speed makes millions of short-lived ones (requests, answers, parsed rows, futures),
so it collected about 1,350 times in a 100k-row run without dedup (1.0 s in the collector) and about 1,780
times with it (1.6 to 1.8 s), full collections walking the whole heap. With (20,000, 20, 50) it collects about
10 times, and the same runs took 18% (without dedup) and 14% (with it) less wall time (benchmarks/README.md,
"Gates at API speed", session 19). Cyclic garbage waits a little longer for its collection; reference counting frees everything else
at once, as before.

``run_pace()`` raises the thresholds while at least one run executes in the process (runs side by side
share one setting) and puts the caller's back when the last one ends, unless something else changed
them meanwhile. Thresholds already higher are kept, and a collector switched off (``gc.disable()``, or a
first threshold of 0) is left alone.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

RUN_THRESHOLDS = (20_000, 20, 50)

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None  # the caller's thresholds, while ours are set
_ours: tuple[int, int, int] | None = None


def paced(current: tuple[int, int, int], run: tuple[int, int, int] = RUN_THRESHOLDS) -> tuple[int, int, int]:
    """The thresholds for a run given the process's ``current`` ones: each at least ``run``'s, a first
    threshold of 0 (automatic collection off) kept."""
    if current[0] == 0:
        return current
    return (max(current[0], run[0]), max(current[1], run[1]), max(current[2], run[2]))


@contextmanager
def run_pace() -> Iterator[None]:
    """The run's thresholds inside, the caller's after the last run in the process ends."""
    global _depth, _saved, _ours
    with _lock:
        if _depth == 0:
            now = gc.get_threshold()
            want = paced(now)
            if want != now:
                gc.set_threshold(*want)
                _saved, _ours = now, want
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                if _saved is not None and gc.get_threshold() == _ours:  # not changed by anyone since
                    gc.set_threshold(*_saved)
                _saved = _ours = None
