"""The page's figures as plain plotly specs (JSON; plotly.js draws them in the browser): the tree as a
sunburst, the leaf-size histogram, the branch similarity heatmap, the nearest-neighbour distribution
and the data of the two maps. Every untrusted string is escaped here (``markup.esc``) before the
few tags added (<br>, <b>, <i>)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .markup import clip, esc, wrap_esc
from .results import Analysis, Maps

PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363",
    "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#969696", "#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#bdbdbd",
]
LABEL_CHARS = 32

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
    short = [esc(clip(lab, 30)) for lab in labels]
    full = [esc(clip(lab, 120)) for lab in labels]
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


def nn_distribution_figure(analyses: Sequence[Analysis], thr: float) -> dict[str, Any] | None:
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


def map_payload(analyses: Sequence[Analysis], maps: Maps) -> dict[str, Any] | None:
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
