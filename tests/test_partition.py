"""Unit and property tests for the partition protocol's rules (core/partition.py)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from treesynth.core.partition import (
    ChildSpec,
    Coverage,
    PartitionError,
    Split,
    Value,
    is_catch_all,
    overlapped,
    plan_children,
    validate_coverage,
)


# ---------------------------------------------------------------- is_catch_all
@pytest.mark.parametrize(
    "v",
    ["Other", "OTHERS", "misc.", "Miscellaneous", "Various topics", "cooking and others", "other sports", "General",
     "unknown", "n/a", "", "  ", "---", "fruits etc", "Anything", "any other cuisine", "All other topics", "sports and more"],
)
def test_is_catch_all_true(v):
    assert is_catch_all(v)


@pytest.mark.parametrize("v", ["Algebra", "Geometry", "Mothers", "Brothers in arms", "Generalised linear models", "Etcetera art", "Anytime fitness", "Vietnamese"])
def test_is_catch_all_false(v):
    assert not is_catch_all(v)


# ---------------------------------------------------------------- validate_coverage
def test_coverage_none_ignores_values():
    c = validate_coverage({"status": "none", "values": ["x", "y"]}, ["a"], 5)
    assert c == Coverage("none")
    assert c.added == () and c.rejected == ()


@pytest.mark.parametrize("status", ["complete", "Complete", " COMPLETE "])
def test_coverage_complete(status):
    c = validate_coverage({"status": status, "values": ["geometry"]}, ["algebra"], 5)
    assert c.kind == "complete"
    assert c.added == ("geometry",)
    assert c.rejected == ()


@pytest.mark.parametrize("status", ["open_ended", "open-ended", "Open Ended"])
def test_coverage_open_ended_spellings(status):
    assert validate_coverage({"status": status, "values": []}, [], 5).kind == "open_ended"


def test_coverage_missing_or_null_values_is_empty():
    assert validate_coverage({"status": "complete"}, [], 5).added == ()
    assert validate_coverage({"status": "complete", "values": None}, [], 5).added == ()


def test_coverage_dedupes_against_existing_and_itself():
    c = validate_coverage({"status": "complete", "values": ["ALGEBRA", " geometry ", "Geometry.", "calculus"]}, ["algebra"], 10)
    assert c.added == ("geometry", "calculus")
    assert any("'ALGEBRA' repeats an existing value" in r for r in c.rejected)
    assert any("'Geometry.' repeats" in r for r in c.rejected)
    assert len(c.rejected) == 2


def test_coverage_drops_a_plural_of_an_existing_value():
    c = validate_coverage({"status": "complete", "values": ["Soccers", "board games", "tennis"]}, ["soccer", "Board game"], 10)
    assert c.added == ("tennis",)
    assert any("'Soccers' repeats an existing value" in r for r in c.rejected)


def test_coverage_drops_a_value_that_lists_an_existing_one():
    # SmolLM2-135M's coverage step in the README's run: "Math-level-9" was a value already
    c = validate_coverage({"status": "complete", "values": ["B-level-7, Math-level-9", "B-level-6", "B-level-6 or addition"]},
                          ["A-level-9", "Math-level-9", "B-level-8"], 10)
    assert c.added == ("B-level-6",)
    assert c.rejected == ("'B-level-7, Math-level-9' overlaps 'Math-level-9'", "'B-level-6 or addition' overlaps 'B-level-6'")


@pytest.mark.parametrize("label,others", [
    ("rock and roll", ["jazz", "blues"]),  # a name with "and" in it, no other value inside
    ("Q&A", ["quiz"]),
    ("A/B testing", ["unit testing"]),
    ("money", ["money", "time"]),  # itself is not an overlap (repeats are caught elsewhere)
    ("salt, pepper", ["sugar"]),
])
def test_overlapped_only_when_a_part_is_another_value(label, others):
    assert overlapped(label, others) is None


def test_overlapped_names_the_value_inside():
    assert overlapped("fractions; Decimals", ["decimals", "percent"]) == "decimals"
    assert overlapped("Cars / trucks", ["trucks"]) == "trucks"


def test_coverage_adds_nothing_beside_a_yes_no_pair():
    c = validate_coverage({"status": "complete", "values": ["double", "half"]}, ["True", "False"], 4)
    assert c.added == () and c.rejected == ("'double' overlaps 'True/False'", "'half' overlaps 'True/False'")
    c = validate_coverage({"status": "complete", "values": ["maybe"]}, ["yes", "sometimes"], 4)
    assert c.added == ("maybe",)


def test_coverage_drops_catch_alls_with_reasons():
    c = validate_coverage({"status": "open_ended", "values": ["Other", "probability", "misc.", 7, ""]}, [], 10)
    assert c.added == ("probability",)
    assert "'Other' is a catch-all" in c.rejected
    assert "'misc.' is a catch-all" in c.rejected
    assert "a value must be a string" in c.rejected
    assert "a value is empty" in c.rejected
    assert len(c.rejected) == 4


def test_coverage_bounded_by_max_new():
    c = validate_coverage({"status": "complete", "values": [f"v{i}" for i in range(7)]}, [], 3)
    assert c.added == ("v0", "v1", "v2")
    assert c.rejected == ("4 values beyond the limit of 3 were dropped",)


def test_coverage_limit_counts_only_valid_values():
    c = validate_coverage({"status": "complete", "values": ["a", "Other", "b", "a"]}, [], 2)
    assert c.added == ("a", "b")
    assert not any("beyond the limit" in r for r in c.rejected)


@pytest.mark.parametrize("status", [None, "", "partial", "yes", 1, ["none"], {"k": 1}])
def test_coverage_bad_status_raises(status):
    with pytest.raises(PartitionError, match="'status' must be one of none, complete, open_ended"):
        validate_coverage({"status": status, "values": []}, [], 5)


@pytest.mark.parametrize("raw", [None, [], "complete", {"status": "complete", "values": "a, b"}, {"status": "none", "values": {"a": 1}}])
def test_coverage_malformed_raises(raw):
    with pytest.raises(PartitionError):
        validate_coverage(raw, [], 5)


# ---------------------------------------------------------------- plan_children
def _split(n):
    return Split("topic", tuple(Value(f"t{i}", (i,)) for i in range(n)))


def test_plan_children_one_child_per_value():
    kids = plan_children(_split(2), Coverage("complete", ("extra",)), 8)
    assert kids == [
        ChildSpec("t0", "pivots"),
        ChildSpec("t1", "pivots"),
        ChildSpec("extra", "coverage"),
    ]
    assert all(k.weight == 1.0 and k.values == () for k in kids)


def test_plan_children_none_coverage():
    assert [k.value for k in plan_children(_split(3), Coverage("none"), 2)] == ["t0", "t1", "t2"]


def test_plan_children_open_ended_at_threshold_stays_expanded():
    kids = plan_children(_split(3), Coverage("open_ended", ("x",)), 4)
    assert len(kids) == 4
    assert {k.source for k in kids} == {"pivots", "coverage"}


def test_plan_children_open_ended_above_threshold_one_weighted_child():
    kids = plan_children(_split(3), Coverage("open_ended", ("x", "y")), 4)
    assert len(kids) == 1
    k = kids[0]
    assert k.source == "open_ended"
    assert k.values == ("t0", "t1", "t2", "x", "y")
    assert k.weight == 5.0
    assert k.value == "one of 5 topic values"


def test_plan_children_complete_above_threshold_not_collapsed():
    kids = plan_children(_split(6), Coverage("complete", ("x",)), 2)
    assert len(kids) == 7


# ---------------------------------------------------------------- properties
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)

coverage_like = st.one_of(
    json_like,
    st.fixed_dictionaries(
        {
            "status": st.one_of(st.sampled_from(["none", "complete", "open_ended", "Open-Ended"]), json_like),
            "values": st.one_of(json_like, st.lists(st.one_of(st.text(max_size=20), json_like), max_size=8)),
        }
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=coverage_like, existing=st.lists(st.text(max_size=10), max_size=4), max_new=st.integers(0, 5))
def test_validate_coverage_only_raises_partition_error(raw, existing, max_new):
    try:
        c = validate_coverage(raw, existing, max_new)
    except PartitionError:
        return
    assert c.kind in ("none", "complete", "open_ended")
    assert len(c.added) <= max_new
    assert all(isinstance(a, str) and not is_catch_all(a) for a in c.added)
