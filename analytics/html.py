"""Rendering of the report page: one self-contained HTML file, offline, plotly.js embedded once.
The page is the Jinja2 template ``assets/templates/report.html.j2``; the figures come from
``figures``, the summary table from ``summary``, the strings' escaping from ``markup``.

Escaping. Every string that comes from a dataset or a run (texts, tree labels, dataset and file
names, notes) is untrusted:
  * in the page's HTML it goes through Jinja2 with autoescaping;
  * in plotly strings (hover, legend, labels, titles), which plotly reads as a small subset of
    HTML, it is HTML-escaped before the few tags added here (<br>, <b>, <i>); plotly shows the
    entities as the original characters, as text;
  * figure data travels as JSON in ``<script type="application/json">`` blocks with ``<``, ``>``
    and ``&`` written as ``\\u003c``, ``\\u003e``, ``\\u0026``, so no text can close the block;
  * a Content-Security-Policy allows only the page's two scripts (by nonce) and no network at all.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .figures import branch_heatmap_figure, leaf_histogram_figure, map_payload, nn_distribution_figure, sunburst_figure
from .markup import clip, json_for_script
from .quality import GATE_NAMES, GATES, pct
from .results import Analysis, Maps
from .summary import summary_rows

TEMPLATE = "report.html.j2"  # in treesynth.assets' templates/
QUALITY_ROWS = 30  # rows shown per table of the quality section (leaves, branches, constraints, checks)


def render_page(analyses: Sequence[Analysis], doc: dict[str, Any], maps: Maps, title: str | None = None) -> str:
    """The page for ``analyses`` and their metrics document ``doc`` (its settings give k and the
    near-duplicate threshold the page quotes)."""
    import plotly.offline

    from .metrics import __doc__ as formulas

    k, thr = doc["settings"]["fixed_k"], doc["settings"]["near_duplicate_threshold"]
    figs, runs = _run_figures(analyses)
    nnfig = nn_distribution_figure(analyses, thr)
    if nnfig:
        figs["fig-nn"] = nnfig
    names = [a.ds.name for a in analyses]
    ttl = title or ("treesynth report: " + (names[0] if len(names) == 1 else " vs ".join(clip(n, 40) for n in names)))
    return _environment().get_template(TEMPLATE).render(
        title=ttl, doc=doc, analyses=analyses, summary=summary_rows(analyses, k, thr), runs=runs, figs=figs,
        payload=map_payload(analyses, maps), maps=maps, maps_info=doc.get("maps", {}), nonce=secrets.token_urlsafe(18),
        formulas=formulas or "", plotly_js=_markup(plotly.offline.get_plotlyjs()), k=k, thr=thr,
        compare=len(analyses) > 1, pair_chars=400, quality=_quality_sections(analyses),
    )


def _run_figures(analyses: Sequence[Analysis]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The figures of each dataset with leaf coverage (tree, leaf sizes, branch heatmap), by element id,
    and one entry per such dataset for the template's coverage sections."""
    figs: dict[str, Any] = {}
    runs = []
    for i, a in enumerate(analyses):
        if a.coverage is None:
            continue
        r: dict[str, Any] = {"name": a.ds.name, "index": i, "coverage": a.coverage, "branches": a.branches or [],
                             "tree": a.ds.tree is not None, "figs": [], "similarity_rows": a.coverage.get("similarity_rows"),
                             "roles": _role_rows(a), "taxonomy": _taxonomy(a)}
        if a.tree_nodes:
            fid = f"fig-tree-{i}"
            figs[fid] = sunburst_figure(a.tree_nodes, a.ds.tree.depth if a.ds.tree else 0)
            r["figs"].append(("tree", fid))
        if a.leaf_sizes:
            fid = f"fig-leaves-{i}"
            figs[fid] = leaf_histogram_figure(a.leaf_sizes, a.leaf_targets)
            r["figs"].append(("leaves", fid))
        if a.branch_matrix is not None and a.branch_names is not None and 1 < len(a.branch_names) <= 60:
            fid = f"fig-branches-{i}"
            figs[fid] = branch_heatmap_figure(a.branch_names, a.branch_matrix)
            r["figs"].append(("branches", fid))
        runs.append(r)
    return figs, runs


def _taxonomy(a: Analysis) -> str | None:
    """A run's tree as the taxonomy file `treesynth tree RUN --format yaml` writes (what --tree-from reads back),
    for the page to show; None for a file or a run without a readable tree."""
    if a.ds.kind != "run":
        return None
    from treesynth.core.errors import TreesynthError
    from treesynth.core.treeout import tree_output

    try:
        return tree_output(Path(a.ds.source), "yaml")
    except (TreesynthError, OSError, ValueError):
        return None


def _role_rows(a: Analysis) -> list[dict[str, Any]]:
    """A run's calls, tokens and cost by role (growing the tree, writing the rows, judging them), each with the
    model that answered them, from its state.json; [] for a file or a run made before roles were kept."""
    if a.ds.kind != "run":
        return []
    import json

    from treesynth.core.events import roles_from_usage
    from treesynth.core.rundir import STATE

    try:
        usage = json.loads((Path(a.ds.source) / STATE).read_text(encoding="utf-8")).get("usage")
    except (OSError, ValueError, AttributeError):
        return []
    labels = {"tree": "growing the tree", "rows": "writing the rows", "judge": "judging the rows"}
    return [{"role": labels.get(r.role, r.role), "model": r.model, "requests": r.requests, "tokens_in": r.tokens_in,
             "tokens_out": r.tokens_out, "cost": r.cost_usd} for r in roles_from_usage(usage if isinstance(usage, dict) else {})]


def _quality_sections(analyses: Sequence[Analysis]) -> list[dict[str, Any]]:
    """One entry per dataset for the template's quality section (empty when no dataset had quality
    gates): its numbers with the rates as text, each table capped at ``QUALITY_ROWS`` rows (and how
    many more there are), the gates in the order rows meet them, and the rejected examples. A run
    without gates, beside one with them, gets an entry saying so."""
    if not any(a.ds.quality is not None for a in analyses):
        return []
    out: list[dict[str, Any]] = []
    for i, a in enumerate(analyses):
        q = a.ds.quality
        if q is None:
            if a.ds.kind == "run":
                out.append({"name": a.ds.name, "index": i, "none": True})
            continue
        judge, gates = q.numbers.get("judge"), q.numbers["gates"]
        entry: dict[str, Any] = {"name": a.ds.name, "index": i, "none": False, "caveat": q.caveat, "settings": q.numbers["settings"],
                                 "judge": judge, "gates": gates}
        if judge:
            entry["pass_text"] = pct(judge["pass_rate"]) if judge["pass_rate"] is not None else "–"
            entry["leaves"], entry["more_leaves"] = _capped(_rated(judge["leaves"]))
            entry["branches"], entry["more_branches"] = _capped(_rated(judge["branches"]))
            entry["constraints"], entry["more_constraints"] = _capped(_rated(judge["failed_constraints"]))
        entry["checks"], entry["more_checks"] = _capped(gates["validator_checks"])
        order = [*GATES, *sorted(g for g in gates["turned_away"] if g not in GATES)]
        entry["gate_rows"] = [
            {"gate": GATE_NAMES.get(g, g), "rows": gates["turned_away"].get(g, 0),
             "share": pct(gates["share"][g]) if gates["share"].get(g) is not None else "–"}
            for g in order
        ]
        entry["turned_away_text"] = pct(gates["turned_away_share"]) if gates["turned_away_share"] is not None else "–"
        entry["examples"] = [(GATE_NAMES.get(g, g), q.examples[g]) for g in order if q.examples.get(g)]
        out.append(entry)
    return out


def _capped(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """The first ``QUALITY_ROWS`` rows, and how many are left out."""
    return rows[:QUALITY_ROWS], max(0, len(rows) - QUALITY_ROWS)


def _rated(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with their ``rate`` as text."""
    return [{**r, "rate_text": pct(r["rate"]) if r.get("rate") is not None else "–"} for r in rows]


def _environment() -> Any:
    """Jinja2 with autoescaping (the page's data is untrusted), strict about undefined names."""
    import jinja2

    from treesynth.assets import ASSETS_DIR

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ASSETS_DIR / "templates")), autoescape=True, trim_blocks=True,
        lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    env.filters["js"] = lambda obj: _markup(json_for_script(obj))
    return env


def _markup(s: str) -> Any:
    import markupsafe

    return markupsafe.Markup(s)
