"""Rendering of the report page: one self-contained HTML file, offline, plotly.js embedded once.

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

import html as _html
import math
import secrets
import textwrap
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .report import Analysis, Maps

PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
    "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#969696", "#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#bdbdbd",
]
HOVER_CHARS = 280
LABEL_CHARS = 32


def esc(s: Any) -> str:
    """HTML-escape for plotly strings (plotly renders a subset of HTML in them)."""
    return _html.escape(str(s), quote=False)


def clip(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


def wrap_esc(s: str, n: int = HOVER_CHARS, width: int = 72) -> str:
    """Collapse whitespace, truncate, wrap, escape each line, join with <br> (escaping after
    truncation, so no entity is ever cut)."""
    return "<br>".join(esc(line) for line in textwrap.wrap(clip(s, n), width) or [""])


def json_for_script(obj: Any) -> str:
    """JSON that is safe inside a <script type=application/json> element."""
    import orjson

    b = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return b.replace(b"<", b"\\u003c").replace(b">", b"\\u003e").replace(b"&", b"\\u0026").decode("utf-8")


# ---------------------------------------------------------------------------
# number formatting


def fmt(v: Any, kind: str) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "–"
    if kind == "int":
        return f"{int(round(v)):,}"
    if kind == "pct":
        return f"{100 * v:.2f}%"
    if kind.startswith("f"):
        return f"{v:,.{int(kind[1:])}f}"
    return str(v)


# (key, label, better, meaning, format)
SUMMARY: list[tuple[str, list[tuple[str, str, str | None, str, str]]]] = [
    ("Size", [
        ("rows", "Samples analysed", None, "rows with text in the field (after --sample)", "int"),
        ("mean_chars", "Mean length (characters)", None, "context for the lexical numbers", "f0"),
    ]),
    ("Semantic diversity (embeddings)", [
        ("mean_cosine_similarity", "Mean pairwise cosine similarity", "lower",
         "how alike two different samples are on average; the TreeSynth paper's “Diversity”", "f4"),
        ("vendi_score", "Vendi score", "higher", "effective number of distinct samples; grows with the number of rows", "f1"),
        ("vendi_at_k", "Vendi score @ k", "higher", "the same on k random rows (mean of 5 draws): comparable across dataset sizes", "f2"),
    ]),
    ("Redundancy", [
        ("mean_nn_distance", "Nearest-neighbour distance", "higher",
         "mean cosine distance to the closest other sample; falls as the number of rows grows", "f4"),
        ("mean_nn_distance_at_k", "Nearest-neighbour distance @ k", "higher", "the same within k random rows: comparable across sizes", "f4"),
        ("near_duplicate_rate", "Near-duplicate rate", "lower", "share of samples with another sample at cosine ≥ {thr}", "pct"),
        ("near_duplicate_pairs", "Near-duplicate pairs", "lower", "pairs of samples at cosine ≥ {thr}", "int"),
        ("exact_duplicate_rate", "Exact duplicates", "lower", "share of samples repeating an earlier text (case and spacing ignored)", "pct"),
    ]),
    ("Lexical diversity (k random rows)", [
        ("distinct_1", "Distinct-1", "higher", "unique words / words", "f3"),
        ("distinct_2", "Distinct-2", "higher", "unique word pairs / word pairs", "f3"),
        ("distinct_3", "Distinct-3", "higher", "unique word triples / word triples", "f3"),
        ("bigram_entropy", "Bigram entropy (bits)", "higher", "Shannon entropy of the word-pair distribution", "f2"),
        ("compression_ratio", "Compression ratio (zlib)", "lower", "raw / compressed size: repetitive text compresses well", "f2"),
    ]),
    ("Leaf coverage (runs)", [
        ("leaves", "Leaves", None, "leaves of the tree", "int"),
        ("empty_leaves", "Empty leaves", "lower", "leaves with no sample", "int"),
        ("thin_leaves", "Thin leaves", "lower", "leaves with under half their quota", "int"),
        ("occupancy_entropy", "Occupancy evenness", "higher", "entropy of samples over leaves ÷ ln(#leaves): 1 = perfectly even", "f3"),
        ("leaf_gini", "Gini of leaf sizes", "lower", "0 = every leaf the same size, → 1 = a few leaves hold everything", "f3"),
        ("within_leaf_similarity", "Within-leaf similarity", None, "mean cosine of two samples in the same leaf", "f4"),
        ("between_leaf_similarity", "Between-leaf similarity", None, "mean cosine of two samples in different leaves", "f4"),
        ("leaf_separation", "Leaf separation", "higher", "within − between: above 0, leaves are distinct regions of meaning", "f4"),
    ]),
]


def summary_rows(analyses: Sequence["Analysis"], k: int, thr: float) -> list[dict[str, Any]]:
    """Rows of the summary table: group headers and metric rows with formatted cells."""
    out: list[dict[str, Any]] = []
    for group, specs in SUMMARY:
        rows = []
        for key, label, better, meaning, kind in specs:
            recs = [a.metrics.get(key) for a in analyses]
            if all(r is None for r in recs):
                continue
            vals = [r.get("value") if r else None for r in recs]
            best = None
            nums = [v for v in vals if isinstance(v, (int, float))]
            if better and len(analyses) > 1 and len(nums) > 1 and len(set(nums)) > 1:
                best = max(nums) if better == "higher" else min(nums)
            cells = []
            for r, v in zip(recs, vals):
                approx = bool(r and r.get("method") == "sampled")
                title = ""
                if r:
                    bits = [f"n = {r['n']:,}"]
                    if r.get("description") or r.get("method"):
                        bits.append(str(r.get("description") or r.get("method")))
                    if r.get("ci95"):
                        lo, hi = r["ci95"]
                        bits.append(f"95% CI {100 * lo:.2f}–{100 * hi:.2f}%")
                    if r.get("std"):
                        bits.append(f"sd over draws {r['std']:.2f}")
                    title = "; ".join(bits)
                cells.append({"text": fmt(v, kind), "best": best is not None and v == best, "approx": approx, "title": title})
            lab = label.replace(" @ k", f" @ {k:,}")
            rows.append({"label": lab, "better": {"higher": "↑ higher", "lower": "↓ lower"}.get(better or "", "–"),
                         "meaning": meaning.format(thr=thr), "cells": cells})
        if rows:
            out.append({"group": group.replace("k random", f"{k:,} random"), "rows": rows})
    return out


# ---------------------------------------------------------------------------
# figures (plain plotly specs; rendered in the browser)

BASE_LAYOUT = {
    "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif", "size": 12},
    "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff", "margin": {"l": 50, "r": 20, "t": 40, "b": 40},
}


def _layout(**kw: Any) -> dict[str, Any]:
    d = dict(BASE_LAYOUT)
    d.update(kw)
    return d


def sunburst_figure(nodes: list[dict[str, Any]], depth: int) -> dict[str, Any]:
    ids, labels, parents, values, colors, hover = [], [], [], [], [], []
    for nd in nodes:
        ids.append(nd["id"])
        labels.append(esc(clip(nd["label"], LABEL_CHARS)))
        parents.append(nd["parent"] or "")
        values.append(nd["count"])
        t = nd["target"]
        fill = nd["count"] / t if t else None
        colors.append(min(2.0, fill) if fill is not None else 1.0)
        kind = "leaf" if nd["leaf"] else ("node" if nd["status"] == "expanded" else nd["status"])
        q = f" of a quota of {t:,} ({100 * fill:.0f}%)" if fill is not None else ""
        hover.append(f"{wrap_esc(nd['label'], 300)}<br><b>{nd['count']:,}</b> samples{q}<br><i>{esc(kind)} {esc(nd['id'])}</i>")
    trace = {
        "type": "sunburst", "ids": ids, "labels": labels, "parents": parents, "values": values, "branchvalues": "total",
        "hovertext": hover, "hoverinfo": "text", "sort": False,
        "marker": {"colors": colors, "colorscale": [[0, "#c0392b"], [0.5, "#e3ebf4"], [1, "#2c6fbb"]], "cmin": 0, "cmid": 1, "cmax": 2,
                   "showscale": True, "line": {"width": 0.5, "color": "#ffffff"},
                   "colorbar": {"title": {"text": "samples ÷ quota"}, "thickness": 12, "tickvals": [0, 0.5, 1, 1.5, 2],
                                "ticktext": ["0", "½", "1", "1½", "≥2"]}},
        "insidetextorientation": "radial",
    }
    if depth > 3:
        trace["maxdepth"] = 3
    layout = _layout(height=620, margin={"l": 10, "r": 10, "t": 40, "b": 10}, updatemenus=[{
        "type": "buttons", "direction": "right", "x": 0, "y": 1.07, "xanchor": "left", "yanchor": "top", "showactive": True,
        "buttons": [
            {"label": "sunburst", "method": "restyle", "args": [{"type": "sunburst"}]},
            {"label": "treemap", "method": "restyle", "args": [{"type": "treemap"}]},
        ],
    }])
    return {"data": [trace], "layout": layout}


def leaf_histogram_figure(sizes: list[int], targets: list[int] | None) -> dict[str, Any]:
    s = np.asarray(sizes, dtype=np.int64)
    hi = int(s.max()) if len(s) else 0
    if hi <= 60:
        edges = np.arange(0, hi + 2) - 0.5
    else:
        edges = np.linspace(-0.5, hi + 0.5, 41)
    counts, edges = np.histogram(s, bins=edges)
    centres = (edges[:-1] + edges[1:]) / 2
    trace = {"type": "bar", "x": centres.round(2).tolist(), "y": counts.tolist(), "width": float(edges[1] - edges[0]) * 0.92,
             "marker": {"color": "#2c6fbb"}, "hovertemplate": "%{y} leaves with ≈%{x:.0f} samples<extra></extra>", "name": "leaves"}
    shapes, notes = [], []
    if targets:
        med = float(np.median(targets))
        shapes.append({"type": "line", "x0": med, "x1": med, "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"dash": "dash", "color": "#c0392b", "width": 1.5}})
        notes.append({"x": med, "yref": "paper", "y": 1.02, "text": f"median quota {med:g}", "showarrow": False,
                      "font": {"color": "#c0392b"}, "xanchor": "left"})
    empty = int((s == 0).sum())
    title = f"{len(s):,} leaves" + (f", {empty:,} empty" if empty else "")
    return {"data": [trace], "layout": _layout(height=360, title={"text": title, "x": 0.01, "font": {"size": 13}},
                                               xaxis={"title": {"text": "samples in the leaf"}, "zeroline": False},
                                               yaxis={"title": {"text": "leaves"}}, shapes=shapes, annotations=notes, bargap=0.05)}


def branch_heatmap_figure(labels: list[str], matrix: list[list[float | None]]) -> dict[str, Any]:
    short = [esc(clip(l, 30)) for l in labels]
    full = [esc(clip(l, 120)) for l in labels]
    text = [[f"{full[i]}<br>× {full[j]}<br>mean cosine {matrix[i][j]:.3f}" if matrix[i][j] is not None else ""
             for j in range(len(labels))] for i in range(len(labels))]
    n = len(labels)
    trace = {"type": "heatmap", "z": matrix, "x": list(range(n)), "y": list(range(n)), "text": text, "hoverinfo": "text",
             "colorscale": "Viridis", "colorbar": {"title": {"text": "cosine"}, "thickness": 12}}
    ax = {"tickvals": list(range(n)), "ticktext": short, "automargin": True}
    h = max(320, min(900, 160 + 22 * n))
    return {"data": [trace], "layout": _layout(height=h, xaxis={**ax, "tickangle": -40}, yaxis={**ax, "autorange": "reversed"},
                                               title={"text": "mean cosine similarity between top-level branches (diagonal: within)",
                                                      "x": 0.01, "font": {"size": 13}})}


def nn_distribution_figure(analyses: Sequence["Analysis"], thr: float) -> dict[str, Any] | None:
    sims = [a.nn.nn_sim.astype(np.float64) for a in analyses if a.nn is not None and len(a.nn.nn_sim)]
    if not sims:
        return None
    lo = float(min(np.quantile(s, 0.005) for s in sims))
    lo = max(-1.0, math.floor(lo * 20) / 20)
    edges = np.linspace(lo, 1.0, 61)
    traces = []
    for i, a in enumerate(analyses):
        if a.nn is None or not len(a.nn.nn_sim):
            continue
        c, _ = np.histogram(np.clip(a.nn.nn_sim, lo, 1.0), bins=edges)
        frac = c / max(1, c.sum())
        traces.append({"type": "scatter", "mode": "lines", "line": {"shape": "hvh", "width": 2, "color": PALETTE[i % len(PALETTE)]},
                       "x": ((edges[:-1] + edges[1:]) / 2).round(4).tolist(), "y": frac.round(5).tolist(),
                       "name": esc(clip(a.ds.name, 40)),
                       "hovertemplate": "cosine ≈ %{x:.3f}: %{y:.2%} of samples<extra>" + esc(clip(a.ds.name, 30)) + "</extra>"})
    shapes = [{"type": "line", "x0": thr, "x1": thr, "yref": "paper", "y0": 0, "y1": 1, "line": {"dash": "dot", "color": "#c0392b"}}]
    ann = [{"x": thr, "yref": "paper", "y": 1.02, "text": f"near-duplicate ≥ {thr}", "showarrow": False, "xanchor": "right",
            "font": {"color": "#c0392b"}}]
    return {"data": traces, "layout": _layout(height=340, xaxis={"title": {"text": "cosine similarity to the nearest other sample"}},
                                              yaxis={"title": {"text": "share of samples"}, "tickformat": ".0%"},
                                              shapes=shapes, annotations=ann, legend={"orientation": "h", "y": -0.25})}


def map_payload(analyses: Sequence["Analysis"], maps: "Maps") -> dict[str, Any] | None:
    if not maps.coords or not any(len(v) for v in maps.coords.values()):
        return None
    compare = len(analyses) > 1
    ds_labels = [esc(clip(a.ds.name, 40)) for a in analyses]
    ds_group = [d for d, _ in maps.rows]
    modes: dict[str, Any] = {"dataset": {"labels": ds_labels, "group": ds_group}}
    # branch colouring: run rows by branch (prefixed by dataset when comparing), others by dataset
    any_branch = any(a.branch_of_row is not None for a in analyses)
    if any_branch:
        labels: list[str] = []
        index: dict[tuple[int, int], int] = {}
        group = []
        for d, r in maps.rows:
            a = analyses[d]
            if a.branch_of_row is not None and a.branch_of_row[r] >= 0:
                key = (d, int(a.branch_of_row[r]))
                name = a.branch_names[key[1]]
                lab = (f"{clip(a.ds.name, 20)}: " if compare else "") + clip(name, 48)
            else:
                key = (d, -1)
                lab = clip(a.ds.name, 40)
            if key not in index:
                index[key] = len(labels)
                labels.append(esc(lab))
            group.append(index[key])
        modes["branch"] = {"labels": labels, "group": group}
    hover = []
    for d, r in maps.rows:
        a = analyses[d]
        head = f"<b>{esc(clip(a.ds.name, 40))}</b><br>" if compare else ""
        path = ""
        if a.ds.paths is not None and a.ds.paths[r]:
            path = "<br><i>" + wrap_esc(" › ".join(f"{dim} = {val}" for dim, val in a.ds.paths[r]), 220, 80) + "</i>"
        hover.append(head + wrap_esc(a.ds.texts[r]) + path)
    coords = {}
    for k, Y in maps.coords.items():
        if len(Y):
            coords[k] = [np.round(Y[:, 0], 3).tolist(), np.round(Y[:, 1], 3).tolist()]
    return {
        "modes": modes, "default": "branch" if (any_branch and not compare) else "dataset", "coords": coords,
        "hover": hover, "palette": PALETTE, "titles": {"umap": "UMAP", "tsne": "t-SNE"},
    }


# ---------------------------------------------------------------------------


def render_page(analyses: Sequence["Analysis"], doc: dict[str, Any], maps: "Maps", title: str | None = None) -> str:
    import jinja2
    import plotly.offline

    from .metrics import __doc__ as formulas
    from .report import FIXED_K, NEAR_DUP

    env = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
    env.filters["js"] = lambda obj: _markup(json_for_script(obj))
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
        if a.branch_matrix is not None and 1 < len(a.branch_names or []) <= 60:
            fid = f"fig-branches-{i}"
            figs[fid] = branch_heatmap_figure(a.branch_names, a.branch_matrix)
            r["figs"].append(("branches", fid))
        runs.append(r)
    nnfig = nn_distribution_figure(analyses, NEAR_DUP)
    if nnfig:
        figs["fig-nn"] = nnfig
    payload = map_payload(analyses, maps)
    names = [a.ds.name for a in analyses]
    ttl = title or ("treesynth report: " + (names[0] if len(names) == 1 else " vs ".join(clip(n, 40) for n in names)))
    maps_info = doc.get("maps", {})
    nonce = secrets.token_urlsafe(18)
    page = env.from_string(TEMPLATE).render(
        title=ttl, doc=doc, analyses=analyses, summary=summary_rows(analyses, FIXED_K, NEAR_DUP), runs=runs, figs=figs,
        payload=payload, maps=maps, maps_info=maps_info, nonce=nonce, formulas=formulas or "",
        plotly_js=_markup(plotly.offline.get_plotlyjs()), k=FIXED_K, thr=NEAR_DUP, compare=len(analyses) > 1,
        pair_chars=400,
    )
    return page


def _markup(s: str) -> Any:
    import markupsafe

    return markupsafe.Markup(s)


TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'nonce-{{ nonce }}'; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; base-uri 'none'; form-action 'none'">
<meta name="generator" content="treesynth {{ doc.treesynth_version }}">
<title>{{ title }}</title>
<style>
:root { --fg:#1d2330; --muted:#5b6475; --rule:#d9dee7; --bg:#ffffff; --accent:#2c6fbb; --soft:#f4f6fa; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif; color:var(--fg); background:var(--bg); }
main { max-width:1280px; margin:0 auto; padding:24px 28px 60px; }
h1 { font-size:22px; margin:0 0 4px; font-weight:650; overflow-wrap:anywhere; }
h2 { font-size:18px; margin:36px 0 8px; padding-top:8px; border-top:1px solid var(--rule); font-weight:600; }
h3 { font-size:15px; margin:22px 0 6px; font-weight:600; }
p, li { max-width:980px; }
.meta { color:var(--muted); font-size:13px; }
.notes { background:#fff8e6; border:1px solid #f0d999; border-radius:6px; padding:8px 12px; margin:12px 0; font-size:13px; }
.notes ul { margin:0; padding-left:18px; }
table { border-collapse:collapse; margin:8px 0 4px; font-size:13px; }
th, td { padding:4px 10px; border-bottom:1px solid var(--rule); vertical-align:top; }
th { text-align:left; font-weight:600; background:var(--soft); position:sticky; top:0; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.best { font-weight:700; color:#0b5d1e; }
tr.group td { background:#fbfcfe; font-weight:600; color:var(--accent); padding-top:10px; }
td.meaning { color:var(--muted); min-width:260px; }
td.dir { color:var(--muted); white-space:nowrap; }
.approx { color:var(--muted); font-size:11px; }
.scroll { overflow-x:auto; max-width:100%; }
.maps { display:grid; grid-template-columns:1fr 1fr; gap:12px; }
.plot { width:100%; min-height:300px; }
.map { height:560px; border:1px solid var(--rule); border-radius:6px; }
.toggle { margin:6px 0 10px; }
.toggle button { font:inherit; font-size:13px; padding:3px 10px; border:1px solid var(--rule); background:#fff; border-radius:4px; cursor:pointer; }
.toggle button[aria-pressed="true"] { background:var(--accent); color:#fff; border-color:var(--accent); }
.pair td.text { max-width:520px; white-space:pre-wrap; overflow-wrap:anywhere; }
.text { overflow-wrap:anywhere; }
.defs pre { white-space:pre-wrap; background:var(--soft); padding:12px; border-radius:6px; font-size:12px; line-height:1.45; }
footer { margin-top:40px; color:var(--muted); font-size:12px; }
@media (max-width: 900px) { .maps { grid-template-columns:1fr; } }
</style>
<script nonce="{{ nonce }}">{{ plotly_js }}</script>
</head>
<body>
<main>
<h1>{{ title }}</h1>
<div class="meta">
treesynth {{ doc.treesynth_version }} · generated {{ doc.generated }} · embedder {{ doc.embedder.model }} ({{ doc.embedder.precision }}, {{ doc.embedder.dim }} dimensions) · seed {{ doc.seed }}
</div>
{% for a in analyses %}
<div class="meta">
<b>{{ a.ds.name }}</b>: {{ "{:,}".format(a.ds.n) }} samples, field <code>{{ a.ds.field }}</code>{% if a.ds.kind == "run" %}, run{% if a.ds.status %} ({{ a.ds.status }}){% endif %}{% if a.ds.task %}: “{{ a.ds.task }}”{% endif %}{% endif %}{% if a.ds.sampled %}, a uniform random sample of {{ "{:,}".format(a.ds.n_before_sample) }} (seed {{ doc.seed }}){% endif %} — <span class="text">{{ a.ds.source }}</span>
</div>
{% endfor %}
{% set all_notes = [] %}
{% for a in analyses %}{% for n in a.ds.notes %}{% set _ = all_notes.append((a.ds.name, n)) %}{% endfor %}{% endfor %}
{% if all_notes %}
<div class="notes"><ul>
{% for name, n in all_notes %}<li><b>{{ name }}</b>: {{ n }}</li>{% endfor %}
</ul></div>
{% endif %}

<h2 id="summary">Summary</h2>
<p class="meta">Arrows give the better direction; {% if compare %}the best value of each row is in bold. {% endif %}Hover a number for its n and method. Embedding metrics use {{ doc.embedder.model }}; “@ {{ "{:,}".format(k) }}” rows use {{ "{:,}".format(k) }} random rows per dataset so that datasets of different sizes compare. Definitions are at the end of the page.</p>
<div class="scroll">
<table id="summary-table">
<thead><tr><th>metric</th>{% for a in analyses %}<th class="num">{{ a.ds.name }}</th>{% endfor %}<th>better</th><th>what it means</th></tr></thead>
<tbody>
{% for g in summary %}
<tr class="group"><td colspan="{{ analyses|length + 3 }}">{{ g.group }}</td></tr>
{% for r in g.rows %}
<tr><td>{{ r.label }}</td>{% for c in r.cells %}<td class="num{% if c.best %} best{% endif %}" title="{{ c.title }}">{{ c.text }}{% if c.approx %} <span class="approx">≈</span>{% endif %}</td>{% endfor %}<td class="dir">{{ r.better }}</td><td class="meaning">{{ r.meaning }}</td></tr>
{% endfor %}
{% endfor %}
</tbody>
</table>
</div>
{% if analyses|selectattr("nn")|map(attribute="nn")|selectattr("method", "equalto", "sampled")|list %}
<p class="meta">≈ estimated by sampled exact search: {% for a in analyses %}{% if a.nn and a.nn.method == "sampled" %}{{ a.ds.name }}: {{ a.nn.description }}. {% endif %}{% endfor %}</p>
{% endif %}

<h2 id="maps">Maps of the embeddings</h2>
{% if payload %}
<p class="meta">UMAP and t-SNE (openTSNE) of the {{ doc.embedder.model }} embeddings, cosine distance, seed {{ doc.seed }}.
{% for a in analyses %}{% set shown = maps.sizes[loop.index0] %}{{ a.ds.name }}: {% if shown < a.ds.n %}fitted and drawn on a uniform random sample of {{ "{:,}".format(shown) }} of {{ "{:,}".format(a.ds.n) }} rows (the rest are not drawn){% else %}all {{ "{:,}".format(shown) }} rows{% endif %}. {% endfor %}
Nearby points are similar texts; distances between far-apart clusters, and cluster sizes, mean little in either method. Hover a point for its text{% if runs %} and path{% endif %}.</p>
<div class="toggle" id="colour-toggle"{% if payload.modes|length < 2 %} hidden{% endif %}>colour by:
{% for mode in payload.modes %}<button type="button" data-mode="{{ mode }}" aria-pressed="{{ 'true' if mode == payload.default else 'false' }}">{{ {"dataset": "dataset", "branch": "top-level branch"}[mode] }}</button> {% endfor %}
</div>
<div class="maps">
{% for key in ["umap", "tsne"] %}{% if key in payload.coords %}<div class="map plot" id="map-{{ key }}"></div>{% endif %}{% endfor %}
</div>
{% for key, info in maps_info.items() %}{% if info is mapping and info.get("error") %}<p class="notes">{{ key }} failed: {{ info.get("error") }}</p>{% endif %}{% endfor %}
<script type="application/json" id="map-data">{{ payload|js }}</script>
{% else %}
<p class="meta">No maps: too few samples.</p>
{% endif %}

{% for r in runs %}
<h2 id="coverage-{{ r.index }}">Tree coverage: {{ r.name }}</h2>
<p class="meta">{{ "{:,}".format(r.coverage.leaves) }} leaves holding {{ "{:,}".format(r.coverage.rows_in_leaves) }} samples; leaf sizes {{ r.coverage.min_leaf }}–{{ r.coverage.max_leaf }} (median {{ r.coverage.median_leaf }}); {{ r.coverage.empty_leaves }} empty, {{ r.coverage.thin_leaves }} thin ({{ r.coverage.thin_rule }}).{% if not r.tree %} Built from the rows' paths: the tree itself is not available, so empty leaves cannot be seen.{% endif %}</p>
{% for kind, fid in r.figs %}
{% if kind == "tree" %}<h3>The tree, sized by samples</h3><p class="meta">Each ring is one level of the tree; area is the number of samples, colour is samples ÷ the quota the tree allocated (red: under-filled, blue: over-filled). Click a segment to zoom; the buttons switch to a treemap.</p>{% endif %}
{% if kind == "leaves" %}<h3>Leaf sizes</h3>{% endif %}
{% if kind == "branches" %}<h3>Are the top-level branches distinct?</h3><p class="meta">Mean cosine similarity between samples of two branches; a bright diagonal over a dark background means each branch covers its own region.</p>{% endif %}
<div class="plot" id="{{ fid }}" data-fig="{{ fid }}-data"></div>
<script type="application/json" id="{{ fid }}-data">{{ figs[fid]|js }}</script>
{% endfor %}
{% if r.branches %}
<h3>Per top-level branch</h3>
<div class="scroll"><table class="branches">
<thead><tr><th>branch</th><th class="num">samples</th><th class="num">share</th>{% if r.tree %}<th class="num">quota</th>{% endif %}<th class="num">leaves</th><th class="num">empty</th><th class="num">thin</th><th class="num" title="occupancy entropy ÷ ln(#leaves)">evenness</th><th class="num">Gini</th><th class="num" title="mean pairwise cosine similarity inside the branch (lower = more diverse)">mean sim ↓</th><th class="num">within-leaf</th><th class="num">between-leaf</th><th class="num" title="Vendi score on {{ k }} random rows of the branch (all rows when fewer)">Vendi @ {{ "{:,}".format(k) }} ↑</th></tr></thead>
<tbody>
{% for b in r.branches %}
<tr><td class="text">{{ b.branch }}</td><td class="num">{{ "{:,}".format(b.samples) }}</td><td class="num">{{ "%.1f%%"|format(100 * b.share) }}</td>{% if r.tree %}<td class="num">{{ "{:,}".format(b.target) if b.target is not none else "–" }}</td>{% endif %}<td class="num">{{ b.leaves }}</td><td class="num">{{ b.empty_leaves }}</td><td class="num">{{ b.thin_leaves }}</td><td class="num">{{ "%.3f"|format(b.occupancy_entropy) if b.occupancy_entropy is not none else "–" }}</td><td class="num">{{ "%.3f"|format(b.gini) if b.gini is not none else "–" }}</td><td class="num">{{ "%.4f"|format(b.mean_similarity) if b.mean_similarity is not none else "–" }}</td><td class="num">{{ "%.4f"|format(b.within_leaf_similarity) if b.within_leaf_similarity is not none else "–" }}</td><td class="num">{{ "%.4f"|format(b.between_leaf_similarity) if b.between_leaf_similarity is not none else "–" }}</td><td class="num">{{ "%.1f"|format(b.vendi_at_k) if b.vendi_at_k is not none else "–" }}{% if b.vendi_k < k %} <span class="approx">(n={{ b.vendi_k }})</span>{% endif %}</td></tr>
{% endfor %}
</tbody></table></div>
{% endif %}
{% endfor %}

<h2 id="redundancy">Redundancy</h2>
{% if figs["fig-nn"] is defined %}
<div class="plot" id="fig-nn" data-fig="fig-nn-data"></div>
<script type="application/json" id="fig-nn-data">{{ figs["fig-nn"]|js }}</script>
{% endif %}
{% for a in analyses %}
{% if a.pairs %}
<h3>Most similar pairs: {{ a.ds.name }}</h3>
<div class="scroll"><table class="pair">
<thead><tr><th class="num">cosine</th><th>text</th><th>its nearest neighbour</th></tr></thead>
<tbody>
{% for p in a.pairs %}<tr><td class="num">{{ "%.4f"|format(p.similarity) }}</td><td class="text">{{ p.text_a|truncate(pair_chars, True, "…", 0) }}</td><td class="text">{{ p.text_b|truncate(pair_chars, True, "…", 0) }}</td></tr>
{% endfor %}
</tbody></table></div>
{% endif %}
{% endfor %}

<h2 id="definitions">Definitions</h2>
<div class="defs"><pre>{{ formulas }}</pre></div>
<p class="meta">Near-duplicates: cosine ≥ {{ thr }}. Fixed-size samples: k = {{ "{:,}".format(k) }} rows. Every number is in <code>{{ doc.get("metrics_file", "metrics.json") }}</code> next to this page, each with its n, model and seed.</p>
<footer>Made by treesynth {{ doc.treesynth_version }}. This page works offline: plotly.js is embedded, nothing is fetched.</footer>
</main>
<script nonce="{{ nonce }}">
(function () {
  "use strict";
  var CONFIG = {displaylogo: false, responsive: true, showSendToCloud: false, showTips: false,
                modeBarButtonsToRemove: ["select2d", "lasso2d", "toggleSpikelines", "hoverCompareCartesian"]};
  function byId(id) { return document.getElementById(id); }
  function readJSON(id) { return JSON.parse(byId(id).textContent); }
  var hasGL = (function () {  // what plotly's WebGL traces need, not just a context
    try {
      var c = document.createElement("canvas"), gl = c.getContext("webgl") || c.getContext("experimental-webgl");
      return !!(gl && gl.getExtension("ANGLE_instanced_arrays") && gl.getExtension("OES_element_index_uint"));
    } catch (e) { return false; }
  })();
  document.querySelectorAll("[data-fig]").forEach(function (div) {
    var f = readJSON(div.getAttribute("data-fig"));
    Plotly.newPlot(div, f.data, f.layout, CONFIG);
  });
  var holder = byId("map-data");
  if (!holder) { return; }
  var M = JSON.parse(holder.textContent);
  var n = M.hover.length;
  var size = n > 20000 ? 3 : n > 5000 ? 4 : n > 1500 ? 5 : 6;
  var type = (hasGL && n > 3000) ? "scattergl" : "scatter";
  function traces(key, mode) {
    var m = M.modes[mode], xy = M.coords[key], groups = [];
    for (var g = 0; g < m.labels.length; g++) { groups.push({x: [], y: [], t: []}); }
    for (var i = 0; i < n; i++) {
      var G = groups[m.group[i]];
      G.x.push(xy[0][i]); G.y.push(xy[1][i]); G.t.push(M.hover[i]);
    }
    return groups.map(function (G, g) {
      return {type: type, mode: "markers", name: m.labels[g], x: G.x, y: G.y, hovertext: G.t, hoverinfo: "text",
              marker: {size: size, opacity: 0.75, color: M.palette[g % M.palette.length]}};
    });
  }
  function layout(key) {
    return {title: {text: M.titles[key], x: 0.02}, margin: {l: 10, r: 10, t: 40, b: 10}, hovermode: "closest",
            xaxis: {visible: false}, yaxis: {visible: false, scaleanchor: "x"}, legend: {orientation: "h", y: -0.02, itemsizing: "constant"},
            hoverlabel: {align: "left"}, paper_bgcolor: "#ffffff", plot_bgcolor: "#ffffff",
            font: {family: "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif", size: 12}};
  }
  function draw(mode) {
    var keys = Object.keys(M.coords);
    for (var i = 0; i < keys.length; i++) {
      var div = byId("map-" + keys[i]);
      Plotly.react(div, traces(keys[i], mode), layout(keys[i]), CONFIG);
      if (type === "scattergl" && div.querySelector(".no-webgl")) {
        // WebGL failed after all (a headless or remote browser, printing): every map as SVG
        type = "scatter";
        keys.forEach(function (k) { Plotly.purge(byId("map-" + k)); });
        return draw(mode);
      }
    }
    document.querySelectorAll("#colour-toggle button").forEach(function (b) {
      b.setAttribute("aria-pressed", b.getAttribute("data-mode") === mode ? "true" : "false");
    });
  }
  document.querySelectorAll("#colour-toggle button").forEach(function (b) {
    b.addEventListener("click", function () { draw(b.getAttribute("data-mode")); });
  });
  draw(M.default);
})();
</script>
</body>
</html>
"""
