"""Diversity and redundancy metrics on sentence embeddings and on tokens (numpy only).

Notation: ``X`` is the n×d matrix of embeddings with unit-norm rows x_i (the report
normalises them), ``s = Σ_i x_i`` the sum vector, ``cos(x_i, x_j) = x_i·x_j``.

Mean pairwise cosine similarity (the TreeSynth paper's "Diversity"; lower = more diverse)::

    mean_sim = Σ_{i≠j} x_i·x_j / (n(n−1)) = (‖s‖² − Σ_i ‖x_i‖²) / (n(n−1))

exact, O(n·d), no n×n matrix (the identity Σ_{i,j} x_i·x_j = ‖s‖²).

Vendi score (Friedman & Dieng 2023) with the cosine kernel K = X Xᵀ::

    VS = exp(−Σ_k λ_k log λ_k),   λ = eigenvalues of K/n

K/n (n×n) and the d×d second-moment matrix C = XᵀX/n share their non-zero eigenvalues, so
VS is computed from C in O(n·d²) (the "dual" form; C is not mean-centred, like K). λ is
renormalised to sum 1 (trace C = mean ‖x_i‖² = 1). VS is the effective number of distinct
items: 1 when every row is the same, n for n ≤ d orthonormal rows. It grows with n, so
``vendi_at_k`` also reports the mean over ``repeats`` uniform samples of k rows, comparable
across datasets of different sizes.

Nearest neighbours: for each row, nn_sim_i = max_{j≠i} x_i·x_j and the NN cosine distance
1 − nn_sim_i; near-duplicate rate = fraction of rows with nn_sim_i ≥ τ; near-duplicate pairs
= #{i<j : x_i·x_j ≥ τ}. Exact up to ``exact_limit`` rows (blockwise Xᵢ Xⱼᵀ over the upper
triangle of blocks: n²d/2 multiply-adds, O(block²) memory). Beyond it the method is
*sampled exact search*: q uniform random query rows are compared exactly against all n rows;
the mean over queries is an unbiased estimate of the mean NN distance, the near-duplicate row
rate is a binomial proportion (95% Wilson interval reported) and the pair count is estimated
as n/(2q)·Σ_queries #{j≠i : x_i·x_j ≥ τ}. q = exact_limit²/(2n), the same work as an exact run
at ``exact_limit`` rows.

Lexical (on a fixed-size uniform sample of texts, so datasets of different sizes compare;
tokens = lower-cased ``\\w+`` words and single punctuation marks; n-grams do not cross texts)::

    distinct-k      = #unique k-grams / #k-grams                       (Li et al. 2016)
    bigram entropy  = −Σ_b p(b) log₂ p(b) over the bigram frequency distribution (bits)
    compression     = len(utf8(T)) / len(zlib.compress(utf8(T), 9)),  T = texts joined by "\\n"

(compression ratio as in Shaib et al. 2024: higher = more repetitive = less diverse).

Leaf coverage (runs; L ranges over the tree's leaves, n_L rows in leaf L, S_L = Σ_{i∈L} x_i)::

    occupancy entropy = −Σ_L p_L ln p_L / ln(#leaves),  p_L = n_L / n   (1 = perfectly even)
    Gini              = Σ_L Σ_M |n_L − n_M| / (2 · #leaves² · mean n_L)  (0 = even, →1 = concentrated)
    empty leaves      = #{L : n_L = 0};  thin leaves = #{L : 0 < n_L < ½·target_L}
    within-leaf sim   = Σ_L (‖S_L‖² − Σ_{i∈L}‖x_i‖²) / Σ_L n_L(n_L − 1)
    between-leaf sim  = (‖s‖² − Σ_L ‖S_L‖²) / (n² − Σ_L n_L²)

Within is the mean cosine over pairs in the same leaf, between over pairs in different
leaves; within > between means the leaves are distinct regions of embedding space. Empty
leaves count in ``#leaves`` for the entropy and Gini. The same numbers are given per
top-level branch (its own leaves), and the branch×branch matrix of mean cross-pair cosine
S_a·S_b / (n_a n_b) (diagonal: the branch's own mean pairwise similarity).
"""

# The docstring above is the report page's "Definitions" section (html.render_page shows it verbatim).
# The formulas live in four modules; this package is the one namespace the report, the Ray hook and
# the tests use them by (``from treesynth.analytics import metrics as M``).

from __future__ import annotations

from .embedding import (
    entropy_exp,
    mean_pairwise_cosine,
    normalize_rows,
    sample_indices,
    second_moment,
    sq_norms,
    vendi_at_k,
    vendi_score,
)
from .leaves import (
    coverage_metrics,
    cross_similarity,
    gini,
    group_sums,
    leaf_counts,
    leaf_similarity,
    occupancy_entropy,
    occupancy_metrics,
    within_between,
)
from .lexical import compression_ratio, distinct_n, lexical_metrics, ngram_entropy, ngrams, tokenize
from .neighbours import NNResult, nearest_neighbours, wilson_interval

__all__ = [
    "NNResult",
    "compression_ratio",
    "coverage_metrics",
    "cross_similarity",
    "distinct_n",
    "entropy_exp",
    "gini",
    "group_sums",
    "leaf_counts",
    "leaf_similarity",
    "lexical_metrics",
    "mean_pairwise_cosine",
    "nearest_neighbours",
    "ngram_entropy",
    "ngrams",
    "normalize_rows",
    "occupancy_entropy",
    "occupancy_metrics",
    "sample_indices",
    "second_moment",
    "sq_norms",
    "tokenize",
    "vendi_at_k",
    "vendi_score",
    "wilson_interval",
    "within_between",
]
