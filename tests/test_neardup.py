"""Semantic dedup (core/neardup.py): NearDuplicateIndex decisions against brute force, on both of its
paths (exact below exact_limit, HNSW plus an exact buffer above), and the VectorLog file."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from treesynth.core.neardup import DEFAULT_NEAR_DUP_COSINE, NearDuplicateIndex, VectorLog, auto_expansion_search

DIM = 384
TH = 0.92


def unit(A: np.ndarray) -> np.ndarray:
    A = np.asarray(A, dtype=np.float64)
    return (A / np.linalg.norm(A, axis=-1, keepdims=True)).astype(np.float32)


def rand_unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    return unit(rng.standard_normal((n, dim)))


def near(v: np.ndarray, rng: np.random.Generator, cos: float) -> np.ndarray:
    """A unit vector at exactly cosine ``cos`` from the unit vector ``v``."""
    w = rng.standard_normal(v.shape[-1])
    w -= (w @ v) * v
    w /= np.linalg.norm(w)
    return unit(cos * v + np.sqrt(1 - cos**2) * w)


def reference_admit(batches: list[np.ndarray], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Brute force, one row at a time, in float64: (keep, max cosine to the rows kept before it)."""
    kept: list[np.ndarray] = []
    keep, best = [], []
    for B in batches:
        for x in unit(B).astype(np.float64):
            m = max((float(k @ x) for k in kept), default=-1.0)
            best.append(m)
            keep.append(m < threshold)
            if m < threshold:
                kept.append(x)
    return np.array(keep), np.array(best)


def clustered(n: int, rng: np.random.Generator, dup_frac: float = 0.03, rows_per_leaf: int = 40) -> np.ndarray:
    """GSM8K-like vectors (a shared direction, leaves, noise; nearest-neighbour cosine ~0.75) with planted
    near-copies of earlier rows whose cosines spread over ~0.85..0.997, across the threshold."""
    leaves = max(4, n // rows_per_leaf)
    shared = rand_unit(rng, 1)[0]
    base = 0.62 * shared + 0.55 * rand_unit(rng, leaves)
    X = base[rng.integers(0, leaves, n)] + rng.uniform(0.025, 0.035, (n, 1)) * rng.standard_normal((n, DIM))
    dup = np.flatnonzero(rng.random(n) < dup_frac)
    dup = dup[dup > 0]
    src = (rng.random(len(dup)) * dup).astype(np.int64)
    X[dup] = unit(X[src]) + rng.uniform(0.003, 0.02, (len(dup), 1)) * rng.standard_normal((len(dup), DIM))
    return unit(X)


# ---- decisions ---------------------------------------------------------------------------------


def test_planted_near_duplicate_is_rejected_and_an_orthogonal_row_kept() -> None:
    rng = np.random.default_rng(0)
    v = rand_unit(rng, 1)[0]
    index = NearDuplicateIndex(DIM, TH)
    keep, best = index.admit(v[None])
    assert keep.tolist() == [True] and best[0] == -1.0 and len(index) == 1

    noisy = unit(v + 0.01 * rng.standard_normal(DIM))
    keep, best = index.admit(noisy[None])
    assert keep.tolist() == [False]
    assert best[0] == pytest.approx(float(noisy @ v), abs=1e-5) and best[0] > 0.95
    assert len(index) == 1  # a rejected row is not accepted

    w = rng.standard_normal(DIM)
    ortho = unit(w - (w @ v) * v)
    keep, best = index.admit(ortho[None])
    assert keep.tolist() == [True] and abs(best[0]) < 1e-5 and len(index) == 2


def test_threshold_is_inclusive_and_input_need_not_be_normalised() -> None:
    rng = np.random.default_rng(1)
    v = rand_unit(rng, 1)[0]
    index = NearDuplicateIndex(DIM, 0.9)
    index.add(7.0 * v[None])
    keep, best = index.admit(np.stack([3.0 * near(v, rng, 0.9005), near(v, rng, 0.8995)]))
    assert keep.tolist() == [False, True]
    assert best[0] == pytest.approx(0.9005, abs=1e-4) and best[1] == pytest.approx(0.8995, abs=1e-4)
    e = np.eye(DIM, dtype=np.float32)
    exact_one = NearDuplicateIndex(DIM, 1.0)  # a cosine of exactly 1.0 meets a threshold of 1.0
    assert exact_one.admit(e[:2])[0].tolist() == [True, True]
    keep, best = exact_one.admit(e[1:3])
    assert keep.tolist() == [False, True] and best[0] == 1.0
    assert exact_one.admit(e[2])[0].tolist() == [False]  # one row: the same rule


def test_within_batch_duplicate_second_is_rejected() -> None:
    rng = np.random.default_rng(2)
    a, b = rand_unit(rng, 2)
    a2 = unit(a + 0.005 * rng.standard_normal(DIM))
    index = NearDuplicateIndex(DIM, TH)
    keep, best = index.admit(np.stack([a, b, a2, a2]))
    assert keep.tolist() == [True, True, False, False]
    assert best[2] == pytest.approx(float(a2 @ a), abs=1e-5)
    assert best[3] == pytest.approx(float(a2 @ a), abs=1e-5)  # the rejected a2 before it does not count
    assert len(index) == 2


def test_only_kept_rows_of_a_batch_count_as_accepted() -> None:
    # c is 15 degrees from b and 30 from a; b is 15 from a: b is rejected (cos .966), so c meets only a (cos .866)
    rng = np.random.default_rng(3)
    e0, e1 = np.eye(DIM, dtype=np.float32)[:2]
    rot = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0].astype(np.float32)
    a, b, c = (unit(np.cos(t) * e0 + np.sin(t) * e1) @ rot for t in np.radians([0, 15, 30]))
    keep, best = NearDuplicateIndex(DIM, TH).admit(np.stack([a, b, c]))
    assert keep.tolist() == [True, False, True]
    assert best == pytest.approx([-1.0, np.cos(np.radians(15)), np.cos(np.radians(30))], abs=1e-5)


def test_add_accepts_everything_and_empty_batches_are_fine() -> None:
    rng = np.random.default_rng(4)
    v = rand_unit(rng, 1)
    index = NearDuplicateIndex(DIM, TH)
    index.add(np.concatenate([v, v, v]))
    assert len(index) == 3
    keep, best = index.admit(np.zeros((0, DIM), dtype=np.float32))
    assert keep.shape == (0,) and best.shape == (0,) and keep.dtype == bool
    index.add(np.zeros((0, DIM), dtype=np.float32))
    assert len(index) == 3


def test_bad_input_is_a_value_error() -> None:
    index = NearDuplicateIndex(DIM, TH)
    with pytest.raises(ValueError, match="dimension 384"):
        index.admit(np.ones((2, 128), dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        index.add(np.full((1, DIM), np.nan, dtype=np.float32))
    with pytest.raises(ValueError):
        NearDuplicateIndex(DIM, 1.5)


@pytest.mark.parametrize("batch", [1, 5, 37, 1000])  # 1000: admitted 256 rows at a time (ADMIT_CHUNK)
@pytest.mark.slow
def test_exact_path_matches_brute_force_around_the_threshold(batch: int) -> None:
    # 1,500 rows, a third of them at a cosine within +-0.02 of the threshold from an earlier row
    rng = np.random.default_rng(10 + batch)
    X = rand_unit(rng, 1500)
    for i in range(1, 1500, 3):
        X[i] = near(X[rng.integers(0, i)], rng, TH + rng.uniform(-0.02, 0.02))
    batches = [X[a : a + batch] for a in range(0, len(X), batch)]
    index = NearDuplicateIndex(DIM, TH)
    got = [index.admit(B) for B in batches]
    assert index.exact
    keep = np.concatenate([k for k, _ in got])
    best = np.concatenate([b for _, b in got])
    want_keep, want_best = reference_admit(batches, TH)
    assert 200 < (~want_keep).sum() < 500  # the case is not trivial: many rejections, many close calls kept
    close = np.abs(want_best - TH) < 1e-5  # float32 against float64 right at the threshold: either answer
    assert (keep == want_keep)[~close].all()
    assert np.abs(best - want_best)[~close].max() < 1e-5
    assert len(index) == keep.sum()


@pytest.mark.slow
def test_hnsw_path_agrees_with_brute_force_on_20k_clustered_vectors() -> None:
    rng = np.random.default_rng(20)
    B = clustered(20_000, rng)
    index = NearDuplicateIndex(DIM, TH)
    index.add(B)
    assert not index.exact and len(index) == 20_000
    # queries: near-copies of indexed rows (cosines spread across the threshold) and fresh rows
    src = B[rng.integers(0, len(B), 1000)]
    copies = unit(src + rng.uniform(0.003, 0.026, (1000, 1)) * rng.standard_normal(src.shape))
    Q = np.concatenate([copies, clustered(1000, np.random.default_rng(21))])
    exact = (Q @ B.T).max(axis=1)
    approx = np.concatenate([index.max_cosine(Q[i : i + 5]) for i in range(0, len(Q), 5)])
    pos = exact >= TH
    assert 300 < pos.sum() < 1700
    assert ((approx >= TH) == pos).mean() >= 0.99
    assert (approx >= TH)[pos].mean() >= 0.98  # recall of the near-duplicates themselves
    assert not (approx >= TH + 0.002)[~pos].any()  # no false alarm beyond float16 rounding
    found = np.abs(approx - exact) < 1e-3
    assert found[pos].mean() >= 0.98  # where it finds the neighbour, the cosine is the exact one (f16 storage)


@pytest.mark.slow
def test_hnsw_admit_stream_agrees_with_brute_force() -> None:
    # admit() through the graph (exact_limit 512, flushes of 256) against the exact path on the same stream
    rng = np.random.default_rng(30)
    X = clustered(6000, rng, dup_frac=0.05)
    hnsw = NearDuplicateIndex(DIM, TH, exact_limit=512, flush_rows=256, kind="hnsw")
    exact = NearDuplicateIndex(DIM, TH, exact_limit=10_000, kind="hnsw")
    agree = total = 0
    for a in range(0, len(X), 5):
        kh, bh = hnsw.admit(X[a : a + 5])
        ke, be = exact.admit(X[a : a + 5])
        agree += int((kh == ke).sum())
        total += len(kh)
    assert not hnsw.exact and exact.exact
    assert agree / total >= 0.99
    assert 200 < len(X) - len(exact) < 600
    assert abs(len(hnsw) - len(exact)) <= 0.01 * len(X)


@pytest.mark.parametrize("batch", [5, 256, 1000])
def test_ivf_admit_stream_agrees_with_brute_force(batch: int) -> None:
    # the default approximate stage (fast-scan cells re-ranked exactly): cells for 16,000 rows (63 cells,
    # exact until 4,096 rows), nprobe 8
    rng = np.random.default_rng(31)
    X = clustered(6000, rng, dup_frac=0.05)
    ivf = NearDuplicateIndex(DIM, TH, flush_rows=256, expected_rows=16_000)
    exact = NearDuplicateIndex(DIM, TH, exact_limit=10_000, kind="hnsw")
    agree = total = 0
    for a in range(0, len(X), batch):
        ki, _ = ivf.admit(X[a : a + batch])
        ke, _ = exact.admit(X[a : a + batch])
        agree += int((ki == ke).sum())
        total += len(ki)
    assert not ivf.exact and exact.exact and ivf.cells == 63
    assert agree / total >= 0.99
    assert abs(len(ivf) - len(exact)) <= 0.01 * len(X)


@pytest.mark.parametrize(("dim", "pq"), [(384, 8), (40, 4), (36, None)])
def test_fast_scan_codes_fit_the_dimension(dim: int, pq: int | None) -> None:
    """Codes of 8 dimensions where the dimension splits into an even number of them, else of 4, else no
    fast-scan (float16 cells); the planted near-copy is found whichever stage answers."""
    rng = np.random.default_rng(dim)
    X = rand_unit(rng, 300, dim)
    ix = NearDuplicateIndex(dim, TH, exact_limit=64, flush_rows=16, expected_rows=400)
    ix.add(X)
    assert not ix.exact and ix._fast_scan == (pq is not None) and (pq is None or ix.pq_dims == pq)
    keep, sims = ix.admit(np.stack([near(X[7], rng, 0.97), rand_unit(rng, 1, dim)[0]]))
    assert keep.tolist() == [False, True] and abs(sims[0] - 0.97) < 2e-3
    with pytest.raises(ValueError, match="pq_dims"):
        NearDuplicateIndex(dim, TH, pq_dims=0)


def test_hnsw_single_row_queries_find_rows_in_the_graph_and_in_the_buffer() -> None:
    rng = np.random.default_rng(40)
    X = clustered(3000, rng, dup_frac=0.0)
    index = NearDuplicateIndex(DIM, TH, exact_limit=1000, flush_rows=500, kind="hnsw")
    index.add(X)
    assert len(index) == 3000
    for i in (3, 999, 1000, 2600, 2999):  # in the graph (0..2999 flushed) and, below, in the buffer
        keep, best = index.admit(unit(X[i] + 0.002 * rng.standard_normal(DIM))[None])
        assert keep.tolist() == [False] and best[0] > 0.99
    late = rand_unit(rng, 1)
    assert index.admit(late)[0].tolist() == [True]  # now in the buffer, not yet flushed
    keep, best = index.admit(late)
    assert keep.tolist() == [False] and best[0] == pytest.approx(1.0, abs=1e-5)
    assert index.memory_bytes > 3000 * DIM * 2


def test_search_beam_grows_with_the_graph_unless_set() -> None:
    sizes = (0, 149_999, 150_000, 499_999, 500_000, 2_000_000)
    assert [auto_expansion_search(n) for n in sizes] == [64, 64, 128, 128, 256, 256]
    index = NearDuplicateIndex(DIM, TH, exact_limit=100, flush_rows=50)
    index.add(rand_unit(np.random.default_rng(60), 300))
    assert index.expansion_search == 64
    index.expansion_search = 300
    assert index.expansion_search == 300
    index.expansion_search = None
    assert index.expansion_search == 64
    assert NearDuplicateIndex(DIM, TH, expansion_search=32).expansion_search == 32


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_thread_settings_give_the_same_decisions(threads: int) -> None:
    rng = np.random.default_rng(61)
    X = clustered(2000, rng, dup_frac=0.05)
    index = NearDuplicateIndex(DIM, TH, exact_limit=256, flush_rows=128, threads=threads)
    index.add(X[:1000])
    keep = np.concatenate([index.admit(X[a : a + 100])[0] for a in range(1000, 2000, 100)])  # >= 64 rows: the threaded search
    ref = NearDuplicateIndex(DIM, TH, exact_limit=4000)
    ref.add(X[:1000])
    want = np.concatenate([ref.admit(X[a : a + 100])[0] for a in range(1000, 2000, 100)])
    assert (keep == want).mean() >= 0.99


def test_default_threshold_is_a_measured_cosine() -> None:
    assert 0.85 <= DEFAULT_NEAR_DUP_COSINE < 1.0
    assert NearDuplicateIndex(DIM).threshold == DEFAULT_NEAR_DUP_COSINE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    X=hnp.arrays(np.float32, st.tuples(st.integers(1, 40), st.just(3)), elements=st.floats(-1, 1, width=32)),
    cuts=st.lists(st.integers(1, 8), min_size=1, max_size=40),
    threshold=st.floats(0.5, 0.99),
)
def test_admit_never_keeps_two_rows_within_the_threshold(X: np.ndarray, cuts: list[int], threshold: float) -> None:
    X = X[np.linalg.norm(X, axis=1) > 0.05]
    index = NearDuplicateIndex(3, threshold)
    kept, rejected, a = [], [], 0
    for c in cuts * (len(X) // max(1, sum(cuts)) + 1):
        if a >= len(X):
            break
        B = X[a : a + c]
        keep, best = index.admit(B)
        kept += list(unit(B[keep])) if keep.any() else []
        rejected += list(unit(B[~keep])) if (~keep).any() else []
        a += c
    assert index.exact and len(index) == len(kept)
    K = np.array(kept, dtype=np.float64).reshape(-1, 3)
    G = K @ K.T
    np.fill_diagonal(G, -1.0)
    assert (G < threshold + 1e-5).all()  # no two kept rows are near-duplicates
    for r in rejected:  # and every rejected row has a kept near-duplicate
        assert (K @ r).max() >= threshold - 1e-5


# ---- the vectors' file -------------------------------------------------------------------------


def test_vector_log_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(50)
    A, B = rand_unit(rng, 3), rand_unit(rng, 5)
    path = tmp_path / "row_vectors.f16"
    with VectorLog(path, DIM) as log:
        assert log.count == 0 and log.read().shape == (0, DIM)
        log.append(A)
        log.append(B[0])  # one row as a 1-D vector
        log.append(B[1:])
        log.append(np.zeros((0, DIM), dtype=np.float32))
        assert log.count == 8
    assert path.stat().st_size == VectorLog.HEADER_BYTES + 8 * DIM * 2
    log = VectorLog(path, DIM)
    got = log.read()
    assert got.dtype == np.float32 and got.shape == (8, DIM)
    want = np.concatenate([A, B]).astype(np.float16).astype(np.float32)
    assert np.array_equal(got, want)
    assert np.array_equal(log.read(2, 5), want[2:5])
    assert np.array_equal(np.concatenate(list(log.chunks(3))), want)
    log.close()
    log.close()
    with pytest.raises(ValueError, match="closed"):
        log.read()


def test_vector_log_stores_float16_rows_as_they_are(tmp_path) -> None:
    H = rand_unit(np.random.default_rng(51), 4).astype(np.float16)
    with VectorLog(tmp_path / "v.f16", DIM) as log:
        log.append(H)
        log.append(H[0])
        got = log.read()
    assert np.array_equal(got, np.concatenate([H, H[:1]]).astype(np.float32))
    raw = (tmp_path / "v.f16").read_bytes()[VectorLog.HEADER_BYTES :]
    assert raw == np.concatenate([H, H[:1]]).astype("<f2").tobytes()


def test_vector_log_seeds_an_index(tmp_path) -> None:
    rng = np.random.default_rng(51)
    X = rand_unit(rng, 50)
    with VectorLog(tmp_path / "v.f16", DIM) as log:
        log.append(X)
    index = NearDuplicateIndex(DIM, TH)
    with VectorLog(tmp_path / "v.f16", DIM) as log:
        for chunk in log.chunks(16):
            index.add(chunk)
    assert len(index) == 50
    assert not index.admit(X[17])[0][0]


def test_vector_log_ignores_a_torn_tail_then_cuts_it_on_append(tmp_path) -> None:
    rng = np.random.default_rng(52)
    X = rand_unit(rng, 4)
    path = tmp_path / "v.f16"
    with VectorLog(path, DIM) as log:
        log.append(X[:3])
    whole = path.stat().st_size
    with open(path, "ab") as f:  # a crash in the middle of the next row's write
        f.write(X[3].astype(np.float16).tobytes()[:301])
    log = VectorLog(path, DIM)
    assert log.count == 3
    assert np.array_equal(log.read(), X[:3].astype(np.float16).astype(np.float32))
    assert path.stat().st_size == whole + 301  # reading does not modify the file
    log.append(X[3])
    assert path.stat().st_size == whole + DIM * 2
    assert np.array_equal(log.read(), X.astype(np.float16).astype(np.float32))
    log.close()
    assert VectorLog(path, DIM).count == 4


def test_vector_log_wrong_dim_or_foreign_file_is_a_value_error(tmp_path) -> None:
    path = tmp_path / "v.f16"
    with VectorLog(path, DIM) as log:
        log.append(rand_unit(np.random.default_rng(53), 2))
        with pytest.raises(ValueError, match="dimension 384"):
            log.append(np.ones((1, 128), dtype=np.float32))
    with pytest.raises(ValueError, match="dimension 384, not 128"):
        VectorLog(path, 128)
    foreign = tmp_path / "foreign.f16"
    foreign.write_bytes(b"\x00" * 4000)
    with pytest.raises(ValueError, match="not a treesynth vector log"):
        VectorLog(foreign, DIM)
    short = tmp_path / "short.f16"
    short.write_bytes(b"hello")
    with pytest.raises(ValueError, match="not a treesynth vector log"):
        VectorLog(short, DIM)


def test_vector_log_torn_header_is_rewritten(tmp_path) -> None:
    path = tmp_path / "v.f16"
    with VectorLog(path, DIM):
        pass
    header = path.read_bytes()
    assert len(header) == VectorLog.HEADER_BYTES
    path.write_bytes(header[:5])  # a crash while the file was created
    with VectorLog(path, DIM) as log:
        assert log.count == 0
        log.append(rand_unit(np.random.default_rng(54), 1))
    assert path.read_bytes()[: len(header)] == header
    assert os.path.getsize(path) == len(header) + DIM * 2
