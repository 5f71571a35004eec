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
    validate_split,
)


def split_answer(*values, dimension="difficulty"):
    return {"dimension": dimension, "values": [{"value": v, "pivots": p} for v, p in values]}


# ---------------------------------------------------------------- validate_split: valid
def test_valid_split_every_pivot_assigned_once():
    s = validate_split(split_answer(("easy", [1, 3]), ("hard", [2, 4])), 4, [], 10)
    assert isinstance(s, Split)
    assert s.dimension == "difficulty"
    assert s.values == (Value("easy", (0, 2), "pivots"), Value("hard", (1, 3), "pivots"))


def test_pivots_are_sorted_and_zero_based():
    s = validate_split(split_answer(("a", [3, 1]), ("b", [2])), 3, [], 10)
    assert s.values[0].pivots == (0, 2)
    assert s.values[1].pivots == (1,)


def test_numeric_strings_and_hash_prefixed_numbers_accepted():
    s = validate_split(split_answer(("a", ["1", " 2 "]), ("b", ["#3", 4.0])), 4, [], 10)
    assert s.values[0].pivots == (0, 1)
    assert s.values[1].pivots == (2, 3)


def test_scalar_pivots_wrapped_in_a_list():
    s = validate_split(split_answer(("a", 1), ("b", "2")), 2, [], 10)
    assert [v.pivots for v in s.values] == [(0,), (1,)]


def test_labels_whitespace_collapsed():
    s = validate_split({"dimension": "  problem\n type ", "values": [{"value": " word   problem ", "pivots": [1]}]}, 1, [], 5)
    assert s.dimension == "problem type"
    assert s.values[0].value == "word problem"


def test_same_pivot_repeated_under_one_value_is_harmless():
    s = validate_split(split_answer(("a", [1, 1, 2]), ("b", [3])), 3, [], 10)
    assert s.values[0].pivots == (0, 1)


# ---------------------------------------------------------------- validate_split: rejected
def test_pivot_assigned_twice_first_pivot():
    with pytest.raises(PartitionError, match=r"pivot 1 is assigned twice \('a' and 'b'\)"):
        validate_split(split_answer(("a", [1, 2]), ("b", [1, 3])), 3, [], 10)


def test_pivot_assigned_twice_not_the_first_pivot():
    with pytest.raises(PartitionError, match=r"pivot 3 is assigned twice \('a' and 'c'\)"):
        validate_split(split_answer(("a", [1, 3]), ("b", [2]), ("c", [4, 3])), 4, [], 10)


def test_pivot_assigned_twice_last_pivot_of_many():
    answer = split_answer(("a", [1, 2, 3]), ("b", [4, 5]), ("c", [6, 5]))
    with pytest.raises(PartitionError) as ei:
        validate_split(answer, 6, [], 10)
    assert "pivot 5 is assigned twice" in str(ei.value)
    assert "pivot 1 " not in str(ei.value)


def test_missing_pivots_listed():
    with pytest.raises(PartitionError, match=r"pivots 2, 4 are not assigned to any value"):
        validate_split(split_answer(("a", [1]), ("b", [3])), 4, [], 10)


@pytest.mark.parametrize("bad", [0, 5, -1, "0", "7", 99, 2.5])
def test_out_of_range_or_non_integer_pivot(bad):
    with pytest.raises(PartitionError, match="pivot number"):
        validate_split(split_answer(("a", [1, 2, 3]), ("b", [4, bad])), 4, [], 10)


def test_out_of_range_message_names_the_range():
    with pytest.raises(PartitionError, match=r"out of range 1\.\.4"):
        validate_split(split_answer(("a", [1, 2, 3]), ("b", [5])), 4, [], 10)


@pytest.mark.parametrize("bad", ["two", "", "1.5", True, None, [1], {"n": 1}, "²", "1" * 5000])
def test_non_numeric_pivot_rejected(bad):
    with pytest.raises(PartitionError, match="is not a number"):
        validate_split(split_answer(("a", [1, bad])), 2, [], 10)


@pytest.mark.parametrize("dup", ["EASY", " easy ", "Easy.", "easy!", "eAsY"])
def test_values_duplicate_after_normalisation(dup):
    with pytest.raises(PartitionError, match=r"repeats 'easy'"):
        validate_split(split_answer(("easy", [1]), (dup, [2]), ("hard", [3])), 3, [], 10)


@pytest.mark.parametrize("catch", ["Other", "other", "misc.", "Misc", "Various topics", "algebra and others", "General", "N/A", "etc."])
def test_catch_all_values_rejected(catch):
    with pytest.raises(PartitionError, match="catch-all"):
        validate_split(split_answer(("algebra", [1]), (catch, [2])), 2, [], 10)


@pytest.mark.parametrize("dim", [" Topic ", "topic", "TOPIC", "Topic."])
def test_dimension_equal_to_ancestor_after_normalisation(dim):
    with pytest.raises(PartitionError, match="already used by an ancestor"):
        validate_split(split_answer(("a", [1]), dimension=dim), 1, ["setting", "topic"], 10)


def test_ancestor_dimension_normalised_too():
    with pytest.raises(PartitionError, match="already used by an ancestor"):
        validate_split(split_answer(("a", [1]), dimension="topic"), 1, ["  TOPIC  "], 10)


def test_different_dimension_from_ancestors_is_fine():
    s = validate_split(split_answer(("a", [1]), dimension="Topic area"), 1, ["topic"], 10)
    assert s.dimension == "Topic area"


def test_too_many_values():
    answer = split_answer(*[(f"v{i}", [i + 1]) for i in range(4)])
    with pytest.raises(PartitionError, match=r"too many values \(4\); use at most 3"):
        validate_split(answer, 4, [], 3)
    assert len(validate_split(answer, 4, [], 4).values) == 4


def test_value_with_no_pivots_rejected():
    with pytest.raises(PartitionError, match=r"values 'b' have no pivots"):
        validate_split(split_answer(("a", [1, 2]), ("b", [])), 2, [], 10)


def test_value_with_pivots_key_absent_rejected():
    answer = {"dimension": "d", "values": [{"value": "a", "pivots": [1]}, {"value": "b"}]}
    with pytest.raises(PartitionError, match="have no pivots"):
        validate_split(answer, 1, [], 10)


def test_several_problems_reported_together():
    with pytest.raises(PartitionError) as ei:
        validate_split(split_answer(("a", [1]), ("A", [2]), ("Other", [3]), ("b", [])), 4, [], 10)
    msg = str(ei.value)
    assert "repeats 'a'" in msg and "catch-all" in msg and "pivots 2, 3, 4 are not assigned" in msg and "'b'" in msg


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        "text",
        {},
        {"dimension": "d"},
        {"dimension": "d", "values": []},
        {"dimension": "d", "values": "a"},
        {"dimension": "", "values": [{"value": "a", "pivots": [1]}]},
        {"dimension": "!!!", "values": [{"value": "a", "pivots": [1]}]},
        {"dimension": 3, "values": [{"value": "a", "pivots": [1]}]},
        {"dimension": "x" * 121, "values": [{"value": "a", "pivots": [1]}]},
        {"dimension": "d", "values": ["a"]},
        {"dimension": "d", "values": [{"value": None, "pivots": [1]}]},
        {"dimension": "d", "values": [{"value": "   ", "pivots": [1]}]},
    ],
)
def test_malformed_answers_rejected(raw):
    with pytest.raises(PartitionError):
        validate_split(raw, 1, [], 10)


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


def test_coverage_drops_a_value_that_lists_an_existing_one():
    # SmolLM2-135M's coverage step in the README's run: "Math-level-9" was a value already
    c = validate_coverage({"status": "complete", "values": ["B-level-7, Math-level-9", "B-level-6", "B-level-6 or addition"]},
                          ["A-level-9", "Math-level-9", "B-level-8"], 10)
    assert c.added == ("B-level-6",)
    assert c.rejected == ("'B-level-7, Math-level-9' overlaps 'Math-level-9'", "'B-level-6 or addition' overlaps 'B-level-6'")


def test_split_value_combining_another_value_is_a_problem():
    with pytest.raises(PartitionError, match="'addition and subtraction' overlaps 'addition'"):
        validate_split(split_answer(("addition", [1]), ("addition and subtraction", [2]), ("division", [3])), 3, [], 10)


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

pivot_like = st.one_of(
    st.integers(-3, 12),
    st.text(max_size=6),
    st.floats(allow_nan=True),
    st.sampled_from(["1", "#2", " 3 ", "²", "١", "1" * 5000, True]),
    json_like,
)

# Mostly well-formed answers, so that generation reaches the pivot and label checks.
structured_split = st.fixed_dictionaries(
    {
        "dimension": st.one_of(st.sampled_from(["topic", "Topic ", "setting"]), st.text(max_size=30)),
        "values": st.lists(
            st.fixed_dictionaries(
                {
                    "value": st.one_of(st.sampled_from(["alpha", "beta", "gamma", "Other", "ALPHA"]), st.text(max_size=20)),
                    "pivots": st.one_of(st.lists(pivot_like, max_size=6), pivot_like),
                }
            ),
            min_size=1,
            max_size=6,
        ),
    }
)

split_like = st.one_of(
    json_like,
    structured_split,
    st.fixed_dictionaries(
        {
            "dimension": st.one_of(st.text(max_size=30), json_like),
            "values": st.one_of(json_like, st.lists(st.one_of(json_like, st.fixed_dictionaries({"value": json_like, "pivots": json_like})), max_size=6)),
        }
    ),
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


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=split_like, n=st.integers(1, 8), anc=st.lists(st.text(max_size=10), max_size=3), max_values=st.integers(1, 10))
def test_validate_split_only_raises_partition_error(raw, n, anc, max_values):
    try:
        s = validate_split(raw, n, anc, max_values)
    except PartitionError:
        return
    # a returned split satisfies the protocol
    assigned = sorted(i for v in s.values for i in v.pivots)
    assert assigned == list(range(n))
    assert 1 <= len(s.values) <= max_values
    assert all(not is_catch_all(v.value) for v in s.values)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=structured_split, n=st.integers(1, 6))
def test_validate_split_structured_only_raises_partition_error(raw, n):
    try:
        s = validate_split(raw, n, ["setting"], 10)
    except PartitionError:
        return
    assert sorted(i for v in s.values for i in v.pivots) == list(range(n))


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


@settings(max_examples=150, deadline=None)
@given(data=st.data(), n=st.integers(1, 12), k=st.integers(1, 6))
def test_any_true_partition_of_pivots_is_accepted(data, n, k):
    k = min(k, n)
    owner = data.draw(st.permutations(list(range(k)) + data.draw(st.lists(st.integers(0, k - 1), min_size=n - k, max_size=n - k))))
    groups = [[i + 1 for i in range(n) if owner[i] == j] for j in range(k)]
    shuffled = [data.draw(st.permutations(g)) for g in groups]
    s = validate_split(split_answer(*[(f"value {j}", g) for j, g in enumerate(shuffled)]), n, ["other dim"], k)
    assert [v.pivots for v in s.values] == [tuple(p - 1 for p in g) for g in groups]
