"""One dataset's numbers: every metric record of the report (``records.rec``: value, n, model, seed),
computed from its embeddings with the formulas in ``metrics``; runs add their leaf coverage
(``coverage``) and, when quality gates ran, the judge's pass rate and the gates' rejections (``quality``). Pure computation: nothing is read or written here."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import metrics as M
from .coverage import leaf_coverage
from .quality import quality_records
from .records import rec
from .results import Analysis
from .settings import EXACT_NN_LIMIT, FIXED_K, NEAR_DUP, TOP_PAIRS

_WS = re.compile(r"\s+")


def analyse(a: Analysis, model: str, seed: int, rng: np.random.Generator, exact_nn_limit: int = EXACT_NN_LIMIT) -> None:
    """Every metric of one dataset into ``a``: size, semantic diversity, redundancy, lexical diversity, the
    most similar pairs and, for runs, the leaf coverage. ``exact_nn_limit``: rows up to which nearest
    neighbours are exact (sampled exact search above it)."""
    X, n, ds = a.X, a.ds.n, a.ds
    m = a.metrics
    m["rows"] = rec(n, n, None, seed, rows_read=ds.n_rows, rows_without_text=ds.n_empty, rows_before_sample=ds.n_before_sample)
    m["mean_cosine_similarity"] = rec(M.mean_pairwise_cosine(X), n, model, seed, method="exact, via the mean embedding")
    m["vendi_score"] = rec(M.vendi_score(X), n, model, seed, method="dual form over the d×d second-moment matrix")
    kidx = M.sample_indices(n, FIXED_K, rng)
    v = M.vendi_at_k(X, FIXED_K, rng)
    m["vendi_at_k"] = rec(v["value"], v["k"], model, seed, std=v["std"], repeats=v["repeats"], k=FIXED_K)

    nn = M.nearest_neighbours(X, threshold=NEAR_DUP, exact_limit=exact_nn_limit, rng=rng)
    a.nn = nn
    s = nn.summary()
    common = {"method": s["method"], "description": s["description"]}
    m["mean_nn_distance"] = rec(s["mean_nn_distance"], n, model, seed, queries=s["queries"], median=s["median_nn_distance"],
                                 p05=s["p05_nn_distance"], **common, **({"se": s["mean_nn_distance_se"]} if "mean_nn_distance_se" in s else {}))
    m["near_duplicate_rate"] = rec(s["near_duplicate_rate"], n, model, seed, threshold=NEAR_DUP, queries=s["queries"], **common,
                                    **({"ci95": s["near_duplicate_rate_ci95"]} if "near_duplicate_rate_ci95" in s else {}))
    m["near_duplicate_pairs"] = rec(s["near_duplicate_pairs"], n, model, seed, threshold=NEAR_DUP, **common)
    nnk = M.nearest_neighbours(X[kidx], threshold=NEAR_DUP, exact_limit=exact_nn_limit)
    m["mean_nn_distance_at_k"] = rec(float(nnk.nn_distance.mean()) if len(kidx) > 1 else None, len(kidx), model, seed, k=FIXED_K,
                                      method="exact, within the fixed-size sample")
    norm = [_WS.sub(" ", t.strip().lower()) for t in ds.texts]
    m["exact_duplicate_rate"] = rec(1.0 - len(set(norm)) / n, n, None, seed, method="texts equal after lower-casing and collapsing whitespace")

    lex = M.lexical_metrics([ds.texts[i] for i in kidx])
    for key, val in lex.items():
        m[key] = rec(val, len(kidx), None, seed, k=FIXED_K, method="uniform sample of texts")
    m["mean_chars"] = rec(float(np.mean([len(t) for t in ds.texts])), n, None, seed)
    a.pairs = top_pairs(nn, ds.texts, TOP_PAIRS)
    if ds.quality is not None:  # the judge's pass rate and the gates' rejections, beside the diversity they qualify
        m.update(quality_records(ds.quality, seed))
    leaf_coverage(a, model, seed, rng)


def top_pairs(nn: M.NNResult, texts: Sequence[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most similar distinct pairs among the nearest-neighbour pairs, most similar first."""
    order = np.argsort(-nn.nn_sim, kind="stable")
    out, seen = [], set()
    for q in order:
        i, j = int(nn.query_rows[q]), int(nn.nn_index[q])
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        out.append({"similarity": float(nn.nn_sim[q]), "a": key[0], "b": key[1], "text_a": texts[key[0]], "text_b": texts[key[1]]})
        if len(out) >= k:
            break
    return out
