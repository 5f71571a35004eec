"""Progress of the report's long stages (reading a run's rows, embedding, t-SNE): a ``Meter`` is the
``progress(done, total)`` callback a stage is given (a first call with ``done`` 0 marks when the work
itself starts, after any loading). On a terminal it redraws one line in place (a
bar, the count, the rate and the time left); otherwise (a log file, a pipe, the TUI) it writes a plain
line through the report's log every few seconds and one when the stage is done. The text is made by
pure functions (``duration``, ``bar``, ``progress_line``)."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from .results import Log

EVERY_S = 5.0  # seconds between plain progress lines
REDRAW_S = 0.1  # seconds between redraws of a live bar


def duration(seconds: float) -> str:
    """``seconds`` as m:ss, or h:mm:ss from an hour up (negative and NaN read as 0)."""
    s = int(seconds + 0.5) if seconds == seconds and seconds > 0 else 0
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def bar(done: int, total: int, width: int = 24) -> str:
    """``[#####-------]``: ``done`` of ``total`` as a bar of ``width`` cells."""
    frac = min(1.0, max(0.0, done / total)) if total > 0 else 1.0
    full = int(frac * width)
    return "[" + "#" * full + "-" * (width - full) + "]"


def progress_line(label: str, done: int, total: int, unit: str, elapsed: float) -> str:
    """One progress line: ``embedding: 12,288/20,000 texts (61%), 450 texts/s, 0:17 left``; when
    ``done`` reaches ``total``: ``embedding: 20,000/20,000 texts (100%) in 0:44, 450 texts/s``."""
    pct = 100.0 * done / total if total > 0 else 100.0
    head = f"{label}: {done:,}/{total:,} {unit} ({pct:.0f}%)"
    rate = done / elapsed if elapsed > 0 and done > 0 else None
    rate_s = f"{rate:,.0f} {unit}/s" if rate is not None else None
    if done >= total:
        return f"{head} in {duration(elapsed)}" + (f", {rate_s}" if rate_s else "")
    if rate is None:
        return head
    return f"{head}, {rate_s}, {duration((total - done) / rate)} left"


class Meter:
    """``progress(done, total)`` for one stage (see the module docstring); ``close()`` ends it."""

    def __init__(
        self, label: str, unit: str, log: Log, live: bool = False, stream: TextIO | None = None,
        every: float = EVERY_S, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit, self.log, self.live = label, unit, log, live
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.clock = every, clock
        self.t0 = clock()
        self.last = self.t0  # when the last line was written (plain) or drawn (live)
        self.drawn = False  # a live line is on the screen, not yet ended
        self.started = False  # called at least once
        self.finished = False

    def __call__(self, done: int, total: int) -> None:
        if self.finished:
            return
        now = self.clock()
        if done <= 0 and not self.started:  # the work starts now (after, say, a model has loaded): rates count from here
            self.t0 = self.last = now
        self.started = True
        final = done >= total
        line = progress_line(self.label, done, total, self.unit, now - self.t0)
        if self.live:
            if final or now - self.last >= REDRAW_S or not self.drawn:
                width = shutil.get_terminal_size((100, 24)).columns
                text = f"{bar(done, total)} {line}"[: max(20, width - 1)]
                self._write("\r" + text + "\x1b[K")
                self.drawn, self.last = True, now
        elif final or now - self.last >= self.every:
            self.log(f"  {line}")
            self.last = now
        if final:
            self.finished = True
            self.close()

    def close(self) -> None:
        """End the live line (the next message starts on a line of its own)."""
        if self.live and self.drawn:
            self._write("\n")
            self.drawn = False

    def _write(self, s: str) -> None:
        try:
            self.stream.write(s)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal or pipe: progress is not worth failing for
            self.live = False


Meters = Callable[[str, str], Meter]  # meters(label, unit) -> a new Meter


def meters(log: Log, live: bool, stream: TextIO | None = None) -> Meters:
    """A factory of Meters that all show progress the same way (live on ``stream``, or through ``log``)."""
    return lambda label, unit: Meter(label, unit, log, live=live, stream=stream)


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False
