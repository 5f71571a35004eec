"""The headless front end: a live progress display on stderr, or JSON events on stdout.

rich is imported only when a live display is actually shown, so importing the core
never loads a rendering library.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

import orjson

from treesynth.core import events as ev
from treesynth.core.progress import (  # noqa: F401 - re-exported
    Progress,
    fmt_cost,
    fmt_duration,
    fmt_embedding,
    fmt_gates,
    fmt_in_flight,
    fmt_outage,
    status_line,
    summary,
)


class JsonEvents:
    """Every event as one JSON line on stdout, for scripts."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, e: ev.Event) -> None:
        self.stream.write(orjson.dumps(e.to_dict()).decode() + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class HeadlessDisplay:
    """Live progress on stderr: rich when stderr is a terminal, plain lines every few seconds otherwise."""

    def __init__(self, stream: TextIO | None = None, plain_interval: float = 10.0) -> None:
        self.stream = stream or sys.stderr
        self.p = Progress()
        self._live = None
        self._bar = None
        self._plain_interval = plain_interval
        self._last_plain = 0.0
        self._gone = False
        if self.stream.isatty():
            from rich.console import Console
            from rich.live import Live

            self._console = Console(file=self.stream)
            # rendered afresh at each refresh (4 a second), so elapsed and waiting times tick between events
            self._live = Live(console=self._console, refresh_per_second=4, transient=False, get_renderable=self._render)
            self._live.start()

    def _render(self):
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        p = self.p
        budget = f" of ${p.budget:g}" if p.budget is not None else ""
        t = Table.grid(padding=(0, 2))
        t.add_column(style="bold", no_wrap=True)
        t.add_column()
        t.add_row("samples", ProgressBar(total=max(1, p.size), completed=p.samples_done, width=40))
        t.add_row("", f"{p.samples_done:,}/{p.size:,}   elapsed {fmt_duration(p.elapsed)}   ETA {fmt_duration(p.eta_s)}")
        gates = fmt_gates(p.quality)
        if gates:
            t.add_row("gates", gates)
        t.add_row("tree", f"{p.nodes_expanded}/{p.nodes_total} nodes expanded, {p.leaves} leaves, {p.failed} failed")
        t.add_row("spend", f"{fmt_cost(p.cost_usd)}{budget}   tokens {p.tokens_in:,} in / {p.tokens_out:,} out")
        t.add_row("calls", f"{p.requests:,} requests ({p.requests_per_s:.1f}/s), {p.cache_hits:,} cached, "
                  f"{p.errors} errors, {p.retries} retries, {p.invalid} invalid answers")
        embedding = fmt_embedding(p.embed_requests, p.embed_tokens, p.embed_cost_usd, p.embed_cache_hits)
        if embedding:
            t.add_row("embed", embedding)
        outage = fmt_outage(p)
        if outage:
            t.add_row("endpoint", outage)
        waiting = fmt_in_flight(p)
        if waiting:
            t.add_row("waiting", waiting)
        if p.warnings:
            t.add_row("warning", p.warnings[-1][:160])
        return t

    def __call__(self, e: ev.Event) -> None:
        self.p.apply(e)
        if self._live is not None:
            if isinstance(e, ev.RunWarning):
                self._console.print(f"[yellow]warning:[/] {e.message}", markup=True, highlight=False)
            return  # the live display renders the progress itself, 4 times a second
        if self._gone:
            return
        now = time.monotonic()
        try:
            if isinstance(e, ev.RunWarning):
                self.stream.write(f"warning: {e.message}\n")
            if now - self._last_plain >= self._plain_interval or isinstance(e, (ev.RunStarted, ev.RunFinished)):
                self._last_plain = now
                self.stream.write(status_line(self.p) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # stderr is a closed pipe (`2>&1 | tee log` after Ctrl-C): stop writing, keep running
            self._gone = True

    def close(self) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None
