"""One dataset's numbers: every metric record of the report (``records.rec``: value, n, model, seed),
computed from its embeddings with the formulas in ``metrics``; runs add their leaf coverage
(``coverage``) and, when quality gates ran, the judge's pass rate and the gates' rejections (``quality``). Pure computation: nothing is read or written here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from . import metrics as M
from .coverage import leaf_coverage
from .quality import quality_records
from .records import rec
from .results import Analysis
from .settings import EXACT_NN_LIMIT, FIXED_K, NEAR_DUP, TOP_PAIRS


def analyse(a: Analysis, model: str, seed: int, rng: np.random.Generator, exact_nn_limit: int = EXACT_NN_LIMIT) -> None:
    """Every metric of one dataset into ``a``: size, semantic diversity, redundancy, lexical diversity, the
    most similar pairs and, for runs, the leaf coverage. ``exact_nn_limit``: rows up to which nearest
    neighbours are exact (sampled exact search above it).

    The embedding metrics are computed on the rows ``a.X`` holds (every row, or the embedding sample:
    ``a.embedded``) and their records' ``n`` says how many, with ``sample_of`` (all rows) when sampled;
    the row count, exact duplicates, mean length, leaf counts and quality are over every row."""
    X, ds = a.X, a.ds
    n, ne = ds.n, a.n_embedded
    texts = a.embedded_texts()  # the texts of X's rows
    m = a.metrics
    samp: dict[str, Any] = {"sample_of": n} if a.embed_sampled else {}
    m["rows"] = rec(n, n, None, seed, rows_read=ds.n_rows, rows_without_text=ds.n_empty, rows_before_sample=ds.n_before_sample)
    m["embedded_rows"] = rec(ne, ne, model, seed, of=n, method="a seeded uniform random sample of the rows" if a.embed_sampled else "every row")
    m["mean_cosine_similarity"] = rec(M.mean_pairwise_cosine(X), ne, model, seed, method="exact, via the mean embedding", **samp)
    m["vendi_score"] = rec(M.vendi_score(X), ne, model, seed, method="dual form over the d×d second-moment matrix", **samp)
    kidx = M.sample_indices(ne, FIXED_K, rng)
    v = M.vendi_at_k(X, FIXED_K, rng)
    m["vendi_at_k"] = rec(v["value"], v["k"], model, seed, std=v["std"], repeats=v["repeats"], k=FIXED_K)

    nn = M.nearest_neighbours(X, threshold=NEAR_DUP, exact_limit=exact_nn_limit, rng=rng)
    a.nn = nn
    s = nn.summary()
    common = {"method": s["method"], "description": s["description"], **samp}
    m["mean_nn_distance"] = rec(s["mean_nn_distance"], ne, model, seed, queries=s["queries"], median=s["median_nn_distance"],
                                 p05=s["p05_nn_distance"], **common, **({"se": s["mean_nn_distance_se"]} if "mean_nn_distance_se" in s else {}))
    m["near_duplicate_rate"] = rec(s["near_duplicate_rate"], ne, model, seed, threshold=NEAR_DUP, queries=s["queries"], **common,
                                    **({"ci95": s["near_duplicate_rate_ci95"]} if "near_duplicate_rate_ci95" in s else {}))
    scaled = {"all_rows_estimate": pairs_for_all_rows(s["near_duplicate_pairs"], ne, n)} if a.embed_sampled else {}
    m["near_duplicate_pairs"] = rec(s["near_duplicate_pairs"], ne, model, seed, threshold=NEAR_DUP, **common, **scaled)
    nnk = M.nearest_neighbours(X[kidx], threshold=NEAR_DUP, exact_limit=exact_nn_limit)
    m["mean_nn_distance_at_k"] = rec(float(nnk.nn_distance.mean()) if len(kidx) > 1 else None, len(kidx), model, seed, k=FIXED_K,
                                      method="exact, within the fixed-size sample")
    m["exact_duplicate_rate"] = rec(1.0 - distinct_texts(ds.texts) / n, n, None, seed,
                                    method="texts equal after lower-casing and collapsing whitespace")

    lex = M.lexical_metrics([texts[i] for i in kidx])
    for key, val in lex.items():
        m[key] = rec(val, len(kidx), None, seed, k=FIXED_K, method="uniform sample of texts")
    m["mean_chars"] = rec(float(np.fromiter(map(len, ds.texts), dtype=np.int64, count=n).mean()), n, None, seed)
    a.pairs = top_pairs(nn, texts, TOP_PAIRS, rows=a.embedded)
    if ds.quality is not None:  # the judge's pass rate and the gates' rejections, beside the diversity they qualify
        m.update(quality_records(ds.quality, seed))
    leaf_coverage(a, model, seed, rng)


def distinct_texts(texts: Iterable[str]) -> int:
    """How many distinct texts there are after lower-casing and collapsing whitespace. Counted by the
    texts' 64-bit hashes (8 bytes a row, not a second copy of every text): two different texts
    would have to share a hash to be miscounted, odds of about n²/2⁶⁵ (3·10⁻⁸ at a million rows)."""
    # " ".join(t.lower().split()) is re.sub(r"\s+", " ", t.strip().lower()) (str.split and re's \s agree on
    # whitespace, every code point checked), four times faster
    h = np.fromiter((hash(" ".join(t.lower().split())) for t in texts), dtype=np.int64)
    return int(len(np.unique(h)))


def pairs_for_all_rows(pairs: float, n_sample: int, n_all: int) -> float | None:
    """Near-duplicate pairs among ``n_all`` rows estimated from the ``pairs`` found in a uniform sample of
    ``n_sample`` of them: each of the n_all(n_all−1)/2 pairs is in the sample with probability
    n_sample(n_sample−1) / (n_all(n_all−1)), so the count scaled by its inverse is unbiased."""
    if n_sample < 2 or n_all < 2:
        return None
    return float(pairs) * (n_all * (n_all - 1)) / (n_sample * (n_sample - 1))


def top_pairs(nn: M.NNResult, texts: Sequence[str], k: int, rows: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The ``k`` most similar distinct pairs among the nearest-neighbour pairs, most similar first.
    ``texts``: the texts of the embedded rows; ``rows``: their dataset rows (the pairs' ``a`` and
    ``b``), when only a sample was embedded."""
    order = np.argsort(-nn.nn_sim, kind="stable")
    out, seen = [], set()
    for q in order:
        i, j = int(nn.query_rows[q]), int(nn.nn_index[q])
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        ra, rb = (key if rows is None else (int(rows[key[0]]), int(rows[key[1]])))
        out.append({"similarity": float(nn.nn_sim[q]), "a": ra, "b": rb, "text_a": texts[key[0]], "text_b": texts[key[1]]})
        if len(out) >= k:
            break
    return out
