"""Tests for the sample-budget allocation (core/allocate.py)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treesynth.core.allocate import allocate, calls_for


@pytest.mark.parametrize(
    "total,weights",
    [(100, [1, 1, 1]), (7, [3, 1]), (1, [1, 1, 1, 1]), (0, [5, 2]), (10_000_000, [0.1, 0.2, 0.7]), (13, [1] * 20), (99, [2.5, 0.5, 7])],
)
def test_sums_exactly_to_total(total, weights):
    out = allocate(total, weights)
    assert sum(out) == total
    assert len(out) == len(weights)
    assert all(isinstance(x, int) and x >= 0 for x in out)


def test_proportional():
    assert allocate(100, [1, 3]) == [25, 75]
    assert allocate(60, [1, 2, 3]) == [10, 20, 30]
    assert allocate(10, [0.5, 0.25, 0.25]) == [5, 3, 2]  # 5, 2.5, 2.5: the tie goes to the earlier index


def test_largest_remainder_wins():
    # quotas 3.6, 1.2, 5.2 -> floors 3, 1, 5 (9); the one left goes to the largest remainder (index 0)
    assert allocate(10, [3, 1, 4 + 1 / 3]) == [4, 1, 5]


def test_ties_go_to_earlier_index_and_are_deterministic():
    assert allocate(1, [1, 1]) == [1, 0]
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]
    assert allocate(10, [1, 1, 1]) == [4, 3, 3]
    assert allocate(5, [2, 2, 2, 2]) == [2, 1, 1, 1]
    assert all(allocate(11, [1, 1, 1, 1]) == [3, 3, 3, 2] for _ in range(5))


def test_zero_weights_get_nothing():
    assert allocate(10, [0, 1, 0, 1]) == [0, 5, 0, 5]
    assert allocate(3, [0, 0, 1]) == [0, 0, 3]


def test_negative_weights_treated_as_zero():
    assert allocate(6, [-5, 1, 2]) == [0, 2, 4]


def test_all_zero_weights_split_evenly():
    assert allocate(7, [0, 0, 0]) == [3, 2, 2]
    assert allocate(4, [0.0, -1.0]) == [2, 2]


def test_empty():
    assert allocate(0, []) == []
    with pytest.raises(ValueError):
        allocate(5, [])


def test_negative_total_rejected():
    with pytest.raises(ValueError, match="total must be >= 0"):
        allocate(-1, [1])


def test_zero_total():
    assert allocate(0, [1, 2, 3]) == [0, 0, 0]


def test_single_item_gets_everything():
    assert allocate(12345, [0.001]) == [12345]


@settings(max_examples=400, deadline=None)
@given(
    total=st.integers(0, 10**7),
    weights=st.lists(
        st.one_of(st.integers(0, 1000), st.floats(0, 1e6, allow_nan=False, allow_infinity=False), st.just(0)), min_size=1, max_size=40
    ),
)
def test_property_sum_and_quota(total, weights):
    out = allocate(total, weights)
    assert sum(out) == total
    assert len(out) == len(weights)
    assert all(x >= 0 for x in out)
    w = [Fraction(x) for x in weights]
    s = sum(w)
    if s == 0:
        w = [Fraction(1)] * len(weights)
        s = Fraction(len(weights))
    for got, wi in zip(out, w, strict=True):
        exact = Fraction(total) * wi / s
        assert abs(got - exact) <= 1 + Fraction(1, 10**6) * max(1, exact), (got, float(exact))
        if wi == 0:
            assert got == 0
    assert allocate(total, weights) == out  # deterministic


@pytest.mark.parametrize(
    "target,per_call,expected",
    [(0, 5, 0), (-3, 5, 0), (1, 5, 1), (5, 5, 1), (6, 5, 2), (10, 5, 2), (11, 5, 3), (7, 1, 7), (1, 50, 1), (100, 50, 2)],
)
def test_calls_for(target, per_call, expected):
    assert calls_for(target, per_call) == expected


@given(target=st.integers(0, 10**6), per_call=st.integers(1, 50))
def test_calls_for_property(target, per_call):
    c = calls_for(target, per_call)
    assert c * per_call >= target
    assert (c - 1) * per_call < target or c == 0


def test_leaf_calls_counts_a_whole_call_for_every_small_leaf():
    from treesynth.core.estimate import leaf_calls

    assert leaf_calls(1000, 1, 5) == 200
    assert leaf_calls(1000, 343, 5) == 343  # 2-3 samples per leaf: one call each (measured: 343)
    assert leaf_calls(1000, 100, 5) == 200  # 10 per leaf: exactly two calls each
    assert leaf_calls(1000, 150, 5) == 300  # 6-7 per leaf: two calls each
    assert leaf_calls(10, 50, 5) == 10  # more leaves than samples: only leaves with a quota call
    assert leaf_calls(0, 5, 5) == 0


def test_estimate_grows_with_leaves_beyond_size_over_samples_per_call():
    from treesynth.core.config import build_config
    from treesynth.core.estimate import estimate

    cfg = build_config(flags={"task": "t", "size": 1000, "depth": 3, "samples_per_call": 5, "max_values": 14})
    est = estimate(cfg, retry_rate=0.0)  # fan-out 7: 343 leaves of 2-3 samples
    assert est.leaves == 343 and est.synth_calls == 343
