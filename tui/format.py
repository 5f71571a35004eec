"""Text for the title line, the stats bar, the detail pane and the finish summary (pure; rich renderables only)."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.text import Text

from treesynth.core.clusters import is_fallback_dimension
from treesynth.core.progress import Progress, fmt_cost, fmt_duration, fmt_outage, fmt_wait, several_models
from treesynth.core.text import truncate
from treesynth.core.tree import Node

from .model import GLYPHS, ViewNode


def compact(n: int | float) -> str:
    """12345 -> 12.3k, 1234567 -> 1.23M."""
    n = float(n)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            v = n / div
            return f"{v:.3g}{suffix}" if v < 100 else f"{v:.0f}{suffix}"
    return f"{n:.0f}"


def run_title(task: str, model: str, where: str) -> Text:
    """The run screen's title line: ``treesynth TASK  · MODEL  · RUN_DIR`` (empty parts left out)."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("treesynth ", style="bold")
    if task:
        t.append(truncate(task, 60))
    if model:
        t.append(f"  · {model}", style="dim")
    t.append(f"  · {where}", style="dim")
    return t


def browse_title(task: str, model: str, where: str, status: str) -> Text:
    """The title line of a run opened read-only."""
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("treesynth ", style="bold")
    t.append(truncate(task, 60))
    t.append(f"  · {model}  · {where}  · read-only, {status}", style="dim")
    return t


def eta_seconds(p: Progress, elapsed: float) -> float | None:
    made = p.samples_done - p.samples_at_start
    left = p.size - p.samples_done
    if left <= 0:
        return 0.0
    if made <= 0 or elapsed <= 0:
        return None
    return elapsed / made * left


def _pair(t: Text, label: str, value: str, style: str = "bold") -> None:
    if t.plain:
        t.append("  ")
    t.append(f"{label} ", style="dim")
    t.append(value, style=style)


IN_FLIGHT_SHOWN_AFTER_S = 5.0  # calls answered sooner are not news (and the bar stays steady)


def stats_usage_line(p: Progress, elapsed: float | None, requests_at_start: int = 0) -> Text:
    """USD (and budget), tokens, requests and their rate, retries, errors, invalid answers."""
    t = Text(no_wrap=True, overflow="ellipsis")
    cost = fmt_cost(p.cost_usd)
    if p.budget is not None:
        cost += f" of ${p.budget:g}"
    over = p.budget is not None and p.cost_usd is not None and p.cost_usd >= p.budget
    if several_models(p.roles):  # the tree (or the judge) on a model of its own: what each role cost
        cost += " (" + ", ".join(f"{r.role} {fmt_cost(r.cost_usd)}" for r in p.roles) + ")"
    _pair(t, "spent", cost, "bold red" if over else "bold")
    _pair(t, "tokens", f"{compact(p.tokens_in)} in / {compact(p.tokens_out)} out")
    if elapsed is None:
        _pair(t, "req", f"{p.requests:,}")
    else:
        rate = (p.requests - requests_at_start) / elapsed if elapsed > 0 else 0.0
        _pair(t, "req", f"{p.requests:,} ({rate:.1f}/s)")
    outage = fmt_outage(p)
    if outage:
        _pair(t, "endpoint", outage.removeprefix("endpoint "), "bold red")
    age = p.oldest_in_flight_s
    if age is not None and age >= IN_FLIGHT_SHOWN_AFTER_S:  # a slow call shows as waiting, ticking, not as a frozen bar
        _pair(t, "in flight", f"{p.in_flight:,}, {'oldest ' if p.in_flight > 1 else ''}{fmt_wait(age)}", "bold cyan")
    _pair(t, "retries", f"{p.retries:,}", "bold yellow" if p.retries else "bold")
    _pair(t, "errors", f"{p.errors:,}", "bold red" if p.errors else "bold")
    _pair(t, "invalid", f"{p.invalid:,}", "bold yellow" if p.invalid else "bold")
    return t


STATE_STYLE = {
    "preparing": "bold cyan", "running": "bold green", "paused": "bold yellow", "stopping": "bold yellow",
    "complete": "bold green", "stopped": "bold yellow", "budget": "bold yellow", "incomplete": "bold red",
    "error": "bold red", "browsing": "bold cyan",
}


def stats_progress_line(p: Progress, elapsed: float | None, state: str) -> Text:
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{p.samples_done:,}/{p.size:,}", style="bold")
    t.append(" samples", style="dim")
    q = p.quality
    if q is not None and q.generated:  # rows written by calls and waiting for semantic dedup
        _pair(t, "in gates", f"{q.in_gates:,}", "bold yellow" if q.in_gates else "bold")
    if q is not None:  # the quality gates' cumulative counts: rows judged and passed, rows written again
        if q.judged:
            _pair(t, "judged", f"{q.judged:,}")
            _pair(t, "passed", f"{q.passed:,}", "bold green" if q.passed == q.judged else "bold yellow")
        _pair(t, "regenerated", f"{q.regenerated:,}", "bold yellow" if q.regenerated else "bold")
    b = p.batches
    if b is not None:  # --batch: the provider's batches and the calls in them
        _pair(t, "batches", f"{b.running:,} running, {b.finished:,} done")
        _pair(t, "batched", f"{b.answered:,}/{b.requests:,}")
        if b.resubmitted or b.interactive_fallback:
            _pair(t, "sent again", f"{b.resubmitted:,}" + (f" (+{b.interactive_fallback:,} interactive)" if b.interactive_fallback else ""),
                  "bold yellow")
        if b.last_status:  # the provider's own word for the batch it answered last ("in_progress", "ended (succeeded 12)")
            _pair(t, "provider", b.last_status.split(": ", 1)[-1][:48])
    if elapsed is not None:
        _pair(t, "elapsed", fmt_duration(elapsed))
        _pair(t, "ETA", fmt_duration(eta_seconds(p, elapsed)) if state in ("running", "paused") else "--:--")
    t.append("  ")
    t.append(f" {state} ", style=f"reverse {STATE_STYLE.get(state, 'bold')}")
    return t


# ---------------------------------------------------------------------------- detail pane


def _heading(text: str) -> Text:
    return Text(text, style="bold underline")


def _sample_text(sample: dict, limit: int = 240) -> str:
    return truncate(" | ".join(f"{k}: {' '.join(str(v).split())}" for k, v in sample.items()), limit)


def detail_renderable(vn: ViewNode | None, node: Node | None, path: list[ViewNode], max_pivots: int = 12) -> RenderableType:
    """The detail pane for one node: ``vn`` from the view, ``node`` from the run's tree (may be None)."""
    if vn is None:
        return Text("Select a node in the tree.", style="dim")
    glyph, style, name = GLYPHS[vn.state]
    parts: list[RenderableType] = []
    head = Text()
    head.append(f"node {vn.id}  ", style="bold")
    head.append(f"{glyph} {name}", style=style)
    head.append(f"   {vn.done:,}/{vn.target:,} samples", style="")
    parts.append(head)

    parts.append(_heading("Path"))
    if not path:
        parts.append(Text("  (root: the whole task)", style="dim"))
    for p in path:
        line = Text("  ")
        line.append(p.dimension or "?", style="bold")
        line.append(" = ")
        line.append(p.value or "")
        if p.source not in ("pivots", "root"):
            line.append(f"  [{p.source}]", style="dim")
        parts.append(line)

    values = list(node.values) if node is not None else []
    if values or vn.source == "open_ended":
        t = Text("  open-ended value: each generation call samples one of ", style="")
        t.append(f"{len(values) or '?'} values", style="bold")
        if values:
            t.append(": " + truncate(", ".join(values), 300), style="dim")
        parts.append(t)

    split_dim = (node.split_dimension if node is not None else None) or vn.split_dimension
    if split_dim:
        parts.append(_heading("Dimension"))
        t = Text("  ")
        t.append(split_dim, style="bold")
        cov = (node.coverage if node is not None else None) or vn.coverage
        if cov:
            t.append(f"   coverage: {cov}", style="dim")
        if cov == "open_ended":
            t.append("   open-ended", style="bold magenta")
        if is_fallback_dimension(split_dim):
            t.append("   data-driven: embedding clusters (the model gave no valid split)", style="bold yellow")
        parts.append(t)
        svals = node.split_values if node is not None else []
        for sv in svals:
            src = sv.get("source", "?")
            line = Text("  • ")
            line.append(str(sv.get("value", "")))
            if src == "pivots":
                line.append(f"  [pivots: {len(sv.get('pivots') or [])}]", style="green")
            elif src == "coverage":
                line.append("  [coverage]", style="cyan")
            else:
                line.append(f"  [{src}]", style="magenta")
            parts.append(line)
        if not svals:
            parts.append(Text("  (values not loaded)", style="dim"))
    elif vn.leaf:
        parts.append(Text("Leaf: samples are generated here.", style="dim"))

    pivots = node.pivots if node is not None else []
    if pivots:
        parts.append(_heading(f"Pivot samples ({len(pivots)})"))
        for i, s in enumerate(pivots[:max_pivots], 1):
            parts.append(Text(f"  {i}. {_sample_text(s)}"))
        if len(pivots) > max_pivots:
            parts.append(Text(f"  … {len(pivots) - max_pivots} more", style="dim"))

    if vn.preview:
        parts.append(_heading("Generated samples (preview)"))
        for s in vn.preview:
            parts.append(Text(f"  • {truncate(' '.join(s.split()), 240)}"))

    reason = vn.reason or (node.reason if node is not None else None)
    if reason:
        parts.append(_heading("Reason"))
        parts.append(Text(f"  {reason}", style="yellow" if vn.state != "failed" else "red"))
    return Group(*parts)


# ---------------------------------------------------------------------------- summary


def summary_renderable(rows: list[tuple[str, str]], ok: bool) -> RenderableType:
    """The closing summary's (label, text) rows (``RunHandle.summary_rows``: the mode's own included)."""
    parts = []
    for k, v in rows:
        t = Text()
        t.append(f"{k:>8}  ", style="bold")
        t.append(v, style=("bold green" if ok else "bold yellow") if k == "status" else "")
        parts.append(t)
    return Group(*parts)
