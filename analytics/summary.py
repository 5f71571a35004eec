"""The summary table of the report page: which metrics it shows, in which groups, which direction is
better and what each means; ``summary_rows`` formats the cells of every dataset."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .markup import fmt
from .results import Analysis

# (key, label, better, meaning, format)
SUMMARY: list[tuple[str, list[tuple[str, str, str | None, str, str]]]] = [
    ("Size", [
        ("rows", "Samples analysed", None, "rows with text in the field (after --sample)", "int"),
        ("embedded_rows", "Samples embedded", None,
         "rows the embedding metrics and maps use: a uniform random sample above the embedding limit (--embed-sample)", "int"),
        ("mean_chars", "Mean length (characters)", None, "context for the lexical numbers", "f0"),
    ]),
    ("Quality gates (runs)", [
        ("judge_pass_rate", "Judge pass rate", "higher", "share of judged rows the judge passed (see the quality section)", "pct"),
        ("gate_rejection_rate", "Turned away by the gates", "lower",
         "share of generated rows the validators, the near-duplicate filter or the judge turned away", "pct"),
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


def summary_rows(analyses: Sequence[Analysis], k: int, thr: float) -> list[dict[str, Any]]:
    """Rows of the summary table: group headers and metric rows with formatted cells."""
    out: list[dict[str, Any]] = []
    for group, specs in SUMMARY:
        rows = []
        for key, label, better, meaning, kind in specs:
            recs = [a.metrics.get(key) for a in analyses]
            if all(r is None for r in recs):
                continue
            if key == "embedded_rows" and not any(a.embed_sampled for a in analyses):
                continue  # every row embedded: the same as the row above
            vals = [r.get("value") if r else None for r in recs]
            best = None
            nums = [v for v in vals if isinstance(v, (int, float))]
            if better and len(analyses) > 1 and len(nums) > 1 and len(set(nums)) > 1:
                best = max(nums) if better == "higher" else min(nums)
            cells = []
            for r, v in zip(recs, vals, strict=True):
                approx = bool(r and r.get("method") == "sampled")
                title = ""
                if r:
                    bits = [f"n = {r['n']:,}" + (f" (a uniform random sample of {r['sample_of']:,} rows)" if r.get("sample_of") else "")]
                    if r.get("description") or r.get("method"):
                        bits.append(str(r.get("description") or r.get("method")))
                    if r.get("ci95"):
                        lo, hi = r["ci95"]
                        bits.append(f"95% CI {100 * lo:.2f}–{100 * hi:.2f}%")
                    if r.get("all_rows_estimate") is not None:
                        bits.append(f"about {r['all_rows_estimate']:,.0f} among all {r['sample_of']:,} rows (scaled from the sample)")
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
