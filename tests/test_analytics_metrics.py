"""analytics.metrics against brute-force references on small random data, and known answers."""

from __future__ import annotations

import math
import zlib
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from treesynth.analytics import metrics as M
from treesynth.analytics.project import balanced_sample


def _unit(rng, n, d):
    return M.normalize_rows(rng.standard_normal((n, d)).astype(np.float32))


def _brute_mean_sim(X):
    S = X.astype(np.float64) @ X.T.astype(np.float64)
    n = len(X)
    return (S.sum() - np.trace(S)) / (n * (n - 1))


def _brute_vendi(X):
    K = X.astype(np.float64) @ X.T.astype(np.float64)
    lam = np.linalg.eigvalsh(K / len(X))
    lam = lam[lam > 1e-12]
    lam = lam / lam.sum()
    return math.exp(-(lam * np.log(lam)).sum())


@pytest.mark.parametrize("n,d", [(2, 5), (37, 8), (60, 16), (13, 40)])
def test_mean_pairwise_cosine_matches_brute_force(n, d):
    X = _unit(np.random.default_rng(n * d), n, d)
    assert M.mean_pairwise_cosine(X) == pytest.approx(_brute_mean_sim(X), abs=1e-6)


@pytest.mark.parametrize("n,d", [(5, 16), (40, 8), (100, 24)])
def test_vendi_dual_form_matches_the_n_by_n_kernel(n, d):
    X = _unit(np.random.default_rng(7 + n), n, d)
    assert M.vendi_score(X) == pytest.approx(_brute_vendi(X), rel=1e-5)


def test_known_answers_identical_rows_and_orthonormal_rows():
    v = _unit(np.random.default_rng(1), 1, 12)
    same = np.repeat(v, 25, axis=0)
    assert M.mean_pairwise_cosine(same) == pytest.approx(1.0, abs=1e-6)
    assert M.vendi_score(same) == pytest.approx(1.0, abs=1e-6)
    Q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((16, 10)))
    ortho = Q.T.astype(np.float32)  # 10 orthonormal rows in 16 dimensions
    assert M.vendi_score(ortho) == pytest.approx(10.0, rel=1e-5)
    assert M.mean_pairwise_cosine(ortho) == pytest.approx(0.0, abs=1e-6)
    # two clusters of identical rows, sizes 3:1 -> exp(entropy of (3/4, 1/4))
    Y = np.concatenate([np.repeat(ortho[:1], 30, 0), np.repeat(ortho[1:2], 10, 0)])
    assert M.vendi_score(Y) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))), rel=1e-5)


def test_vendi_at_k_samples_and_falls_back_to_all_rows():
    X = _unit(np.random.default_rng(3), 300, 8)
    small = M.vendi_at_k(X[:50], 100, np.random.default_rng(0))
    assert small["k"] == 50 and small["repeats"] == 1 and small["value"] == pytest.approx(M.vendi_score(X[:50]))
    r = M.vendi_at_k(X, 100, np.random.default_rng(0), repeats=4)
    assert r["k"] == 100 and r["repeats"] == 4 and 1.0 < r["value"] <= 8.0 and r["std"] >= 0
    assert r == M.vendi_at_k(X, 100, np.random.default_rng(0), repeats=4)  # seeded


def _planted(seed, n=700, d=12, dups=40):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    src = rng.choice(n, size=dups, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), size=dups, replace=False)
    X[dst] = X[src] + 0.01 * rng.standard_normal((dups, d)).astype(np.float32)
    return M.normalize_rows(X)


@pytest.mark.parametrize("block", [64, 128, 1000])
@pytest.mark.slow
def test_exact_nearest_neighbours_match_brute_force(block):
    X = _planted(5)
    r = M.nearest_neighbours(X, threshold=0.97, block=block)
    S = X.astype(np.float64) @ X.T.astype(np.float64)
    np.fill_diagonal(S, -np.inf)
    assert r.method == "exact" and len(r.query_rows) == len(X)
    np.testing.assert_allclose(r.nn_sim, S.max(axis=1), atol=1e-5)
    assert np.all(S[np.arange(len(X)), r.nn_index] >= S.max(axis=1) - 1e-5)  # argmax (ties allowed)
    assert r.pairs_above == int(np.triu(S >= 0.97, 1).sum())
    s = r.summary()
    assert s["near_duplicate_rate"] == pytest.approx((S.max(axis=1) >= 0.97).mean())
    assert s["mean_nn_distance"] == pytest.approx(float((1 - S.max(axis=1)).mean()), abs=1e-5)
    assert s["near_duplicate_pairs"] >= 40


def test_sampled_nearest_neighbours_are_exact_for_their_queries_and_estimate_the_rest():
    X = _planted(6, n=3000, d=10, dups=300)
    r = M.nearest_neighbours(X, threshold=0.97, exact_limit=1500, rng=np.random.default_rng(0), block=500)
    assert r.method == "sampled" and "sampled exact search" in r.description
    q = len(r.query_rows)
    assert q == 1500 * 1500 // (2 * 3000) or q == 1000  # the documented budget (at least 1000 queries)
    S = X.astype(np.float64)[r.query_rows] @ X.T.astype(np.float64)
    S[np.arange(q), r.query_rows] = -np.inf
    np.testing.assert_allclose(r.nn_sim, S.max(axis=1), atol=1e-5)
    full = X.astype(np.float64) @ X.T.astype(np.float64)
    np.fill_diagonal(full, -np.inf)
    true_rate = (full.max(axis=1) >= 0.97).mean()
    lo, hi = r.summary()["near_duplicate_rate_ci95"]
    assert lo <= true_rate <= hi
    true_pairs = np.triu(full >= 0.97, 1).sum()
    assert abs(r.pairs_above - true_pairs) < 0.5 * true_pairs  # unbiased estimate, loose bound


def test_nearest_neighbours_degenerate_sizes():
    assert len(M.nearest_neighbours(np.zeros((1, 4), np.float32)).nn_sim) == 0
    X = M.normalize_rows(np.array([[1, 0], [1, 0.01]], np.float32))
    r = M.nearest_neighbours(X, threshold=0.99)
    assert list(r.nn_index) == [1, 0] and r.pairs_above == 1


def test_lexical_metrics_against_hand_counts():
    texts = ["The cat sat.", "the cat ran!", "A dog sat"]
    toks = [M.tokenize(t) for t in texts]
    assert toks[0] == ["the", "cat", "sat", "."]
    words = [w for t in toks for w in t]
    assert M.distinct_n(toks, 1) == pytest.approx(len(set(words)) / len(words))
    bigrams = [tuple(t[i : i + 2]) for t in toks for i in range(len(t) - 1)]  # never across texts
    assert M.distinct_n(toks, 2) == pytest.approx(len(set(bigrams)) / len(bigrams))
    c = Counter(bigrams)
    p = np.array(list(c.values())) / len(bigrams)
    assert M.ngram_entropy(toks, 2) == pytest.approx(float(-(p * np.log2(p)).sum()))
    raw = "\n".join(texts).encode()
    assert M.compression_ratio(texts) == pytest.approx(len(raw) / len(zlib.compress(raw, 9)))
    lex = M.lexical_metrics(["same words here"] * 50)
    assert lex["distinct_1"] == pytest.approx(3 / 150) and lex["bigram_entropy"] == pytest.approx(1.0)
    assert lex["compression_ratio"] > 10


def test_gini_and_occupancy_entropy():
    sizes = [0, 3, 7, 7, 12, 1]
    brute = sum(abs(a - b) for a in sizes for b in sizes) / (2 * len(sizes) ** 2 * np.mean(sizes))
    assert M.gini(sizes) == pytest.approx(brute)
    assert M.gini([5, 5, 5, 5]) == pytest.approx(0.0)
    assert M.gini([0, 0, 0, 9]) == pytest.approx(3 / 4)
    assert M.occupancy_entropy([4, 4, 4, 4]) == pytest.approx(1.0)
    assert M.occupancy_entropy([0, 0, 10]) == pytest.approx(0.0)
    p = np.array([3, 7, 7, 12, 1]) / 30
    assert M.occupancy_entropy(sizes) == pytest.approx(float(-(p * np.log(p)).sum() / math.log(6)))


def test_within_between_and_cross_similarity_match_pairwise_brute_force():
    rng = np.random.default_rng(11)
    X = _unit(rng, 90, 6)
    g = rng.integers(-1, 5, size=90)  # -1: not in any group
    g[:3] = 4
    S, cnt, sq = M.group_sums(X, g, 5)
    keep = np.nonzero(g >= 0)[0]
    assert cnt.sum() == len(keep)
    same, diff = [], []
    for i, j in combinations(keep, 2):
        (same if g[i] == g[j] else diff).append(float(X[i] @ X[j]))
    w, b = M.within_between(S, cnt, sq)
    assert w == pytest.approx(np.mean(same), abs=1e-6) and b == pytest.approx(np.mean(diff), abs=1e-6)
    C = M.cross_similarity(S, cnt, sq)
    for a in range(5):
        for c in range(5):
            ia, ic = keep[g[keep] == a], keep[g[keep] == c]
            if a == c:
                ref = np.mean([X[i] @ X[j] for i, j in combinations(ia, 2)]) if len(ia) > 1 else np.nan
            else:
                ref = np.mean([X[i] @ X[j] for i in ia for j in ic])
            if not np.isnan(ref):
                assert C[a, c] == pytest.approx(ref, abs=1e-6)


def test_coverage_metrics_counts_empty_and_thin_leaves():
    rng = np.random.default_rng(4)
    X = _unit(rng, 40, 5)
    leaf = np.array([0] * 20 + [1] * 15 + [2] * 4 + [-1])  # leaf 3 is empty; one row outside
    cov = M.coverage_metrics(X, leaf, 4, targets=[10, 10, 10, 10])
    assert cov["leaves"] == 4 and cov["rows_in_leaves"] == 39
    assert cov["empty_leaves"] == 1 and cov["thin_leaves"] == 1  # leaf 2: 4 < 5
    assert cov["leaf_sizes"] == [20, 15, 4, 0]
    assert cov["gini"] == pytest.approx(M.gini([20, 15, 4, 0]))
    assert cov["occupancy_entropy"] == pytest.approx(M.occupancy_entropy([20, 15, 4, 0]))
    assert cov["leaf_separation"] == pytest.approx(cov["within_leaf_similarity"] - cov["between_leaf_similarity"])
    no_targets = M.coverage_metrics(X, leaf, 4)
    assert "mean" in no_targets["thin_rule"]


def test_clustered_leaves_are_separated():
    rng = np.random.default_rng(9)
    centres = _unit(rng, 4, 32)
    X = M.normalize_rows(np.repeat(centres, 25, 0) + 0.05 * rng.standard_normal((100, 32)).astype(np.float32))
    cov = M.coverage_metrics(X, np.repeat(np.arange(4), 25), 4)
    assert cov["within_leaf_similarity"] > 0.9 > cov["between_leaf_similarity"] + 0.5
    shuffled = M.coverage_metrics(X, rng.permutation(np.repeat(np.arange(4), 25)), 4)
    assert abs(shuffled["leaf_separation"]) < 0.1


def test_balanced_sample_shares_the_budget():
    rng = np.random.default_rng(0)
    picks = balanced_sample([5, 100, 1000], 300, rng)
    assert [len(p) for p in picks] == [5, 100, 195]
    picks = balanced_sample([500, 1000], 300, rng)
    assert [len(p) for p in picks] == [150, 150]
    assert all(np.all(np.diff(p) > 0) for p in picks)
    assert [len(p) for p in balanced_sample([10, 20], 300, rng)] == [10, 20]
    assert sum(len(p) for p in balanced_sample([7, 7, 7], 10, rng)) == 10


@pytest.mark.parametrize("n,k,block_bytes", [(57, 15, 1 << 30), (57, 15, 4 * 57 * 5), (16, 15, 1 << 30), (3, 15, 1 << 30)])
def test_exact_knn_for_the_maps_matches_brute_force(n, k, block_bytes):
    from treesynth.analytics.project import exact_knn

    rng = np.random.default_rng(n)
    X = rng.normal(size=(n, 8)).astype(np.float32)
    if n > 5:
        X[5] = X[4] * 3.0  # a duplicate direction: distance 0 to row 4, but each row is still its own first
    idx, dist = exact_knn(X, k, block_bytes=block_bytes)
    kk = min(k, n)
    assert idx.shape == dist.shape == (n, kk)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    D = 1.0 - (Xn @ Xn.T).astype(np.float64)
    for i in range(n):
        assert idx[i, 0] == i and dist[i, 0] == 0.0
        others = sorted((D[i, j], j) for j in range(n) if j != i)[: kk - 1]
        assert np.allclose(dist[i, 1:], [d for d, _ in others], atol=1e-5)
        assert set(idx[i, 1:]) == {j for _, j in others} or np.allclose(  # ties may pick either row
            sorted(D[i, idx[i, 1:]]), [d for d, _ in others], atol=1e-5)
    if n > 5:
        assert 5 in idx[4, :2] and 4 in idx[5, :2]
