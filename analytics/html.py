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
from typing import Any

from .figures import branch_heatmap_figure, leaf_histogram_figure, map_payload, nn_distribution_figure, sunburst_figure
from .markup import clip, json_for_script
from .results import Analysis, Maps
from .summary import summary_rows

TEMPLATE = "report.html.j2"  # in treesynth.assets' templates/


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
        compare=len(analyses) > 1, pair_chars=400,
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
                             "tree": a.ds.tree is not None, "figs": []}
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
