"""A pure reducer from events to a progress snapshot; shared by the headless display and the TUI."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from . import events as ev


@dataclass
class Progress:
    size: int = 0
    budget: float | None = None
    samples_done: int = 0
    samples_at_start: int = 0
    nodes_total: int = 1
    nodes_expanded: int = 0
    leaves: int = 0
    failed: int = 0
    requests: int = 0
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = 0.0
    retries: int = 0
    errors: int = 0
    invalid: int = 0
    embed_requests: int = 0  # an endpoint embedder's calls
    embed_cache_hits: int = 0
    embed_tokens: int = 0
    embed_cost_usd: float = 0.0
    roles: tuple[ev.RoleCost, ...] = ()  # the calls by role (tree, rows, judge), each with its model
    in_flight: int = 0  # calls sent and not answered yet (from the latest usage event)
    in_flight_since: float | None = None  # time.monotonic() when the oldest of them started
    unreachable_since: float | None = None  # time.monotonic() when the endpoint was found unreachable (an outage is on)
    next_try_at: float | None = None  # time.monotonic() when the next probe of the endpoint goes
    started: float = field(default_factory=time.monotonic)
    finished: ev.RunFinished | None = None
    quality: ev.Quality | None = None  # the latest (cumulative) counts of the quality gates, once any ran
    batches: ev.Batches | None = None  # --batch: the latest counts of the provider's batches
    warnings: list[str] = field(default_factory=list)

    def apply(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            self.size, self.budget = e.size, e.budget
            self.samples_done = self.samples_at_start = e.samples_done
            self.nodes_total, self.nodes_expanded = max(self.nodes_total, e.nodes_total), max(self.nodes_expanded, e.nodes_expanded)
        elif isinstance(e, ev.NodeExpanded):
            self.nodes_total = max(self.nodes_total, e.nodes_total)
            self.nodes_expanded = max(self.nodes_expanded, e.nodes_expanded)
        elif isinstance(e, ev.NodeLeaf):
            self.leaves += 1
        elif isinstance(e, ev.NodeFailed):
            self.failed += 1
        elif isinstance(e, ev.LeafProgress):
            self.samples_done = max(self.samples_done, e.samples_done)
            self.size = e.samples_target
        elif isinstance(e, ev.SamplesTarget):
            self.samples_at_start += e.samples_done - self.samples_done  # rows counted at once are not made (ETA)
            self.samples_done, self.size = e.samples_done, e.samples_target
        elif isinstance(e, ev.Usage):
            self.requests, self.cache_hits = e.requests, e.cache_hits
            self.tokens_in, self.tokens_out = e.tokens_in, e.tokens_out
            self.cost_usd, self.retries, self.errors, self.invalid = e.cost_usd, e.retries, e.errors, e.invalid
            self.embed_requests, self.embed_cache_hits = e.embed_requests, e.embed_cache_hits
            self.embed_tokens, self.embed_cost_usd = e.embed_tokens, e.embed_cost_usd
            self.roles = e.roles
            self.in_flight = e.in_flight
            now = time.monotonic()
            self.in_flight_since = None if e.oldest_in_flight_s is None else now - e.oldest_in_flight_s
            self.unreachable_since = None if e.unreachable_s is None else now - e.unreachable_s
            self.next_try_at = None if e.next_try_s is None else now + e.next_try_s
        elif isinstance(e, ev.Quality):
            self.quality = e
        elif isinstance(e, ev.Batches):
            self.batches = e
        elif isinstance(e, ev.RunWarning):
            self.warnings.append(e.message)
            del self.warnings[:-200]
        elif isinstance(e, ev.RunFinished):
            self.finished = e

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def oldest_in_flight_s(self) -> float | None:
        """How long the oldest call in flight has waited so far (ticks between usage events)."""
        if not self.in_flight or self.in_flight_since is None:
            return None
        return max(0.0, time.monotonic() - self.in_flight_since)

    @property
    def requests_per_s(self) -> float:
        el = self.elapsed
        return self.requests / el if el > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        made = self.samples_done - self.samples_at_start
        left = self.size - self.samples_done
        if made <= 0 or left <= 0:
            return None if left > 0 else 0.0
        return self.elapsed / made * left


def fmt_duration(s: float | None) -> str:
    if s is None:
        return "--:--"
    s = int(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def fmt_in_flight(p: Progress) -> str:
    """'1 call in flight, 37 s' / '3 calls in flight, oldest 1:02' / '' when none is."""
    if p.in_flight <= 0:
        return ""
    age = p.oldest_in_flight_s
    wait = "" if age is None else f", {'oldest ' if p.in_flight > 1 else ''}{fmt_wait(age)}"
    return f"{p.in_flight} call{'s' if p.in_flight != 1 else ''} in flight{wait}"


def fmt_outage(p: Progress) -> str:
    """'endpoint unreachable since 00:35, next try in 8 s' (the run's clock when it began) / '' when reachable."""
    if p.unreachable_since is None:
        return ""
    began = max(0.0, p.unreachable_since - p.started)
    nxt = "" if p.next_try_at is None else f", next try in {fmt_wait(max(0.0, p.next_try_at - time.monotonic()))}"
    return f"endpoint unreachable since {fmt_duration(began)}{nxt}"


def fmt_wait(s: float) -> str:
    """37 s under a minute, else m:ss (or h:mm:ss)."""
    return f"{int(s)} s" if s < 60 else fmt_duration(s)


def fmt_cost(c: float | None) -> str:
    return "unknown" if c is None else f"${c:.4f}"


def several_models(roles: tuple[ev.RoleCost, ...]) -> bool:
    """The roles' calls went to more than one model (a --tree-model or --judge-model of its own)."""
    return len({r.model for r in roles}) > 1


def fmt_roles(roles: tuple[ev.RoleCost, ...], models: bool = True) -> str:
    """'tree $0.0031 (openai/gpt-4o, 12 req) · rows $0.0102 (openai/gpt-4o-mini, 85 req)' / '' before any call."""
    return " · ".join(
        f"{r.role} {fmt_cost(r.cost_usd)} ({r.model + ', ' if models else ''}{r.requests:,} req)" for r in roles
    )


def fmt_quality(q: ev.Quality | None) -> str:
    """'judged 40, passed 31, regenerated 12 (validators 2, near-duplicates 1, judge 9)' / '' before any gate ran."""
    if q is None:
        return ""
    judged = f"judged {q.judged}, passed {q.passed}, " if q.judged else ""
    return (
        f"{judged}regenerated {q.regenerated} (validators {q.validator_rejected}, near-duplicates {q.near_duplicates}, "
        f"judge {q.judge_rejected})"
    )


def fmt_gates(q: ev.Quality | None) -> str:
    """'2,310 rows generated, 256 in the gates' while semantic dedup gates rows beside generation / ''."""
    if q is None or not q.generated:
        return ""
    return f"{q.generated:,} {'row' if q.generated == 1 else 'rows'} generated, {q.in_gates:,} in the gates"


def fmt_batches(b: ev.Batches | None) -> str:
    """'batches 2 running, 3 done · 1,200/2,000 batched calls answered (batch_12: in_progress)' / '' without --batch."""
    if b is None:
        return ""
    extra = ""
    if b.resubmitted or b.interactive_fallback:
        extra = f", {b.resubmitted} sent again, {b.interactive_fallback} made interactively"
    status = f" ({b.last_status})" if b.last_status else ""
    return f"batches {b.running} running, {b.finished} done · {b.answered:,}/{b.requests:,} batched calls answered{extra}{status}"


def fmt_embedding(requests: int, tokens: int, cost_usd: float, cache_hits: int = 0) -> str:
    """An endpoint embedder's calls, for the status line and the summary ('' when it made none)."""
    if not requests and not cache_hits:
        return ""
    cached = f", {cache_hits:,} cached texts" if cache_hits else ""
    return f"embeddings {requests:,} req{cached}, {tokens:,} tokens, {fmt_cost(cost_usd)}"


def status_line(p: Progress) -> str:
    budget = f" / ${p.budget:g}" if p.budget is not None else ""
    waiting = fmt_outage(p) or fmt_in_flight(p)
    gates = fmt_gates(p.quality)
    quality = fmt_quality(p.quality)
    batches = fmt_batches(p.batches)
    if batches:
        quality = f"{quality} · {batches}" if quality else batches
    embedding = fmt_embedding(p.embed_requests, p.embed_tokens, p.embed_cost_usd, p.embed_cache_hits)
    if embedding:
        quality = f"{quality} · {embedding}" if quality else embedding
    if several_models(p.roles):  # cost by role, where the roles have models of their own
        quality = f"{quality} · {fmt_roles(p.roles, models=False)}" if quality else fmt_roles(p.roles, models=False)
    return (
        f"nodes {p.nodes_expanded}/{p.nodes_total} expanded · samples {p.samples_done}/{p.size}{' (' + gates + ')' if gates else ''} · "
        f"{fmt_cost(p.cost_usd)}{budget} · tokens {p.tokens_in:,} in / {p.tokens_out:,} out · "
        f"{p.requests} req ({p.requests_per_s:.1f}/s, {p.cache_hits} cached){' · ' + waiting if waiting else ''} · errors {p.errors} · "
        f"retries {p.retries} · invalid {p.invalid}{' · ' + quality if quality else ''} · elapsed {fmt_duration(p.elapsed)} · "
        f"ETA {fmt_duration(p.eta_s)}"
    )


def closing_rows(
    fin: ev.RunFinished, command: str = "run", quality: ev.Quality | None = None, rows_text: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> list[tuple[str, str]]:
    """The closing summary as (label, text) rows: what the CLI prints and the TUI shows. ``command`` is the
    one that resumes the run; ``rows_text`` and ``extra`` are the mode's (core/engine/mode.py)."""
    rows = [
        ("status", f"{fin.status}{' (' + fin.message + ')' if fin.message else ''}"),
        ("rows", rows_text if rows_text is not None else f"{fin.rows}/{fin.size} in {fin.leaves} leaves ({fin.nodes} nodes)"),
        ("cost", f"{fmt_cost(fin.cost_usd)} over {fin.requests} requests"
                 + (f" (with {fmt_embedding(fin.embed_requests, fin.embed_tokens, fin.embed_cost_usd)})" if fin.embed_requests else "")),
    ]
    if len(fin.roles) > 1:  # growing the tree, writing the rows, judging them: what each cost, and on which model
        rows.append(("by role", fmt_roles(fin.roles)))
    if quality is not None:
        rows.append(("quality", fmt_quality(quality)))
    rows.append(("run dir", fin.run_dir))
    if fin.dataset:
        rows.append(("dataset", f"{fin.dataset} (and {Path(fin.dataset).with_suffix('.parquet').name})"))
    rows += extra or []
    if fin.status != "complete":
        rows.append(("resume", f"treesynth {command} --resume {fin.run_dir}"))
    return rows


def format_rows(rows: list[tuple[str, str]]) -> str:
    """(label, text) rows as aligned lines: 'status:   complete'."""
    return "\n".join(f"{label + ':':<10}{text}" for label, text in rows)


def summary(fin: ev.RunFinished, command: str = "run", quality: ev.Quality | None = None) -> str:
    """The closing lines of a plain run (``closing_rows`` with the defaults), as the CLI prints them."""
    return format_rows(closing_rows(fin, command, quality))
