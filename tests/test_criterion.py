"""The two-call criterion step's pure rules (core/criterion.py) and the data-driven split (core/clusters.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from treesynth.core.clusters import cluster_split, is_fallback_dimension, pivot_k
from treesynth.core.criterion import (
    LABEL_PATTERN,
    assign_schema,
    build_split,
    criterion_schema,
    placeholder_reason,
    validate_assignment,
    validate_criterion,
)
from treesynth.core.partition import PartitionError

TASK = "GSM8K-style grade-school math word problems"
FIELDS = ("question", "answer")


@pytest.mark.parametrize(
    "label",
    ["dimension_1", "Dimension 2", "value", "Values", "text", "category 3", "option_a", "question", "answer",
     "x", "42", "the dimension", "grade-school math", "GSM8K-style grade-school math word problems", "type",
     # seen from SmolLM2-135M: a file name, and phrases cut off mid-way (session 8's README run, a server run)
     "dimensions.json", "notes.txt", "A simple, everyday example of", "a simple scenario from the",
     # a kind of variable rather than a variable (session 11's README run)
     "Nominal", "categorical", "Variable 1",
     # codes instead of names: SmolLM2 split by 'd1' into 'd2', 'd3', 'd4' (this session's Python quickstart)
     "d1", "D2", "v-3", "x 12",
     # statements and numbers glued to words: SmolLM2-135M's split of a 4-pivot node (session 19)
     "The setting is a function,10,", "The set is a set,10.", "The number is a number,15.", "There are two trains",
     "a boy has apples", "function,10",
     # a model's split under a data-driven cluster (session 20's README run): cut off, and words glued by a colon
     "The answer to the question:What's...?", "The answer to the question:Howmany...", "kinds of\u2026", "question:what"],
)
def test_placeholders_are_rejected(label):
    assert placeholder_reason(label, FIELDS, TASK) is not None


@pytest.mark.parametrize("label", ["shopping", "time and distance", "number of steps", "fractions", "money", "school trip",
                                   "time of day", "fractions and decimals", "the answer to a question.", "numeric", "factors",
                                   "a trip to the zoo", "the island", "Ages 5-10", "2,000 or more", "Step 1: setup", "is it prime",
                                   "ratios like 1:2", "10:30 meetings", "U.S. states", "well... maybe", "Mr. Smith's shop",
                                   "mp3", "COVID-19", "grade 2", "Route 66", "Gen 2", "top 10",
                                   "ISO-9001", "CS-101"])
def test_real_labels_pass(label):
    assert placeholder_reason(label, FIELDS, TASK) is None


def test_valid_criterion_keeps_distinct_concrete_values_in_order():
    dim, values = validate_criterion(
        {"dimension": "setting", "values": ["shopping", "Shopping ", "cooking", "travel"]}, [], 6, FIELDS, TASK
    )
    assert dim == "setting" and values == ["shopping", "cooking", "travel"]


@pytest.mark.parametrize(
    "raw, words",
    [
        ({"dimension": "dimension_1", "values": ["a b", "c d"]}, "placeholder"),
        ({"dimension": "setting", "values": ["shopping"]}, "at least 2"),
        ({"dimension": "setting", "values": ["text", "text", "text"]}, "at least 2"),
        ({"dimension": "setting", "values": ["shopping", "other"]}, "catch-all"),
        ({"dimension": "setting", "values": ["setting", "cooking"]}, "repeats the dimension"),
        ({"dimension": "topic", "values": ["money", "time"]}, "ancestor"),
        ({"dimension": "question", "values": ["money", "time"]}, "field name"),
        ({"dimension": "setting", "values": "money"}, "list"),
        (["setting"], "object"),
    ],
)
def test_invalid_criteria_say_why(raw, words):
    with pytest.raises(PartitionError, match=words):
        validate_criterion(raw, ["Topic"], 6, FIELDS, TASK)


def test_criterion_schema_bounds_labels_and_asks_for_two_values_at_least():
    s = criterion_schema(5)
    assert s["properties"]["values"]["minItems"] == 2 and s["properties"]["values"]["maxItems"] == 5
    assert s["properties"]["dimension"]["pattern"] == LABEL_PATTERN
    rx = re.compile(LABEL_PATTERN)
    assert rx.match("time and money") and rx.match("two-step problems") and rx.match("café et gâteaux") and not rx.match("12")
    assert not rx.match('a"b') and not rx.match("x" * 60) and not rx.match("the answer to the question is that it is")
    assert not rx.match("{json}") and not rx.match("a\\b")


def test_assign_schema_has_one_enum_per_pivot_in_order():
    s = assign_schema(3, ["money", "time"])
    assert list(s["properties"]) == ["1", "2", "3"] and s["required"] == ["1", "2", "3"]
    assert all(p["enum"] == ["money", "time"] for p in s["properties"].values())
    assert s["additionalProperties"] is False


def test_assignment_is_validated_and_normalised():
    assert validate_assignment({"1": "Money", "2": "time ", "3": "money"}, 3, ["money", "time"]) == [0, 1, 0]
    assert validate_assignment(["time", "money"], 2, ["money", "time"]) == [1, 0]
    with pytest.raises(PartitionError, match="samples 3 have no value"):
        validate_assignment({"1": "money", "2": "time"}, 3, ["money", "time"])
    with pytest.raises(PartitionError, match="unknown values"):
        validate_assignment({"1": "money", "2": "space"}, 2, ["money", "time"])


def test_build_split_needs_two_occupied_values_and_reports_unused_ones():
    split, unused = build_split("setting", ["shop", "farm", "school"], [0, 2, 0, 2])
    assert [(v.value, v.pivots) for v in split.values] == [("shop", (0, 2)), ("school", (1, 3))]
    assert unused == ["farm"]
    with pytest.raises(PartitionError, match="one value"):
        build_split("setting", ["shop", "farm"], [1, 1, 1])


def test_pivot_k():
    assert pivot_k(3, 8) == 0 and pivot_k(4, 8) == 2 and pivot_k(8, 8) == 2 and pivot_k(12, 8) == 3 and pivot_k(12, 2) == 2


def test_cluster_split_puts_every_pivot_in_one_named_cluster_deterministically():
    texts = [
        "apples and pears at the market", "pears and apples sold at market", "market apples price", "apples pears market stall",
        "train travels miles per hour", "the train covers miles in hours", "train speed miles hour", "hours of train travel miles",
    ]
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=16), rng.normal(size=16)
    X = np.stack([a + 0.1 * rng.normal(size=16) for _ in range(4)] + [b + 0.1 * rng.normal(size=16) for _ in range(4)])
    s1 = cluster_split(texts, X, 2, seed=3, depth=0)
    s2 = cluster_split(texts, X, 2, seed=3, depth=0)
    assert s1 == s2 and is_fallback_dimension(s1.dimension)
    groups = sorted(sorted(v.pivots) for v in s1.values)
    assert groups == [[0, 1, 2, 3], [4, 5, 6, 7]]
    names = " ".join(v.value for v in s1.values)
    assert "apples" in names or "market" in names or "pears" in names
    assert "train" in names or "miles" in names
    assert all(v.source == "data" for v in s1.values)
    # identical texts: one cluster holds them all, so no honest split
    assert cluster_split(["same"] * 5, np.ones((5, 4)), 2, seed=0, depth=0) is None


def test_cluster_names_skip_the_task_s_own_words_and_contractions():
    from treesynth.core.clusters import label_words

    # session 11's README run on the embedded model named a cluster "about: problem, it's, math"
    texts = ["it's a math problem about a bus and its seats", "it's a math problem: the bus seats riders", "math problem, bus seats",
             "the answer: bulbs to change in the hall", "the answer is the bulbs we change", "answer: change bulbs"]
    X = np.stack([np.r_[1.0, 0.0, 0.1 * i] for i in range(3)] + [np.r_[0.0, 1.0, 0.1 * i] for i in range(3)])
    ignore = label_words("GSM8K-style grade-school math word problems", "question", "answer")
    assert {"math", "problems", "problem", "answer", "answers", "question"} <= ignore
    s = cluster_split(texts, X, 2, seed=0, depth=0, ignore=ignore)
    names = sorted(v.value for v in s.values)
    assert names[0].startswith("about: bulbs, change") and names[1].startswith("about: seats"), names
    assert not {w for n in names for w in n.removeprefix("about: ").split(", ")} & (ignore | {"it's"})
    plain = " ".join(v.value for v in cluster_split(texts, X, 2, seed=0, depth=0).values)
    assert "it's" not in plain  # a contraction is a stop word


def test_a_cluster_no_word_names_is_named_by_its_most_typical_text():
    # session 19's README run named a cluster "about: cluster 2": its pivots had no word of four letters left
    texts = ["apples and pears at the market", "pears and apples sold at market", "market apples price",
             "5 + 7 = 12", "9 + 3 = 12.", "6 + 6 = 12"]
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=8), rng.normal(size=8)
    X = np.stack([a + 0.05 * rng.normal(size=8) for _ in range(3)] + [b + 0.3 * rng.normal(size=8), b, b + 0.3 * rng.normal(size=8)])
    s = cluster_split(texts, X, 2, seed=0, depth=0)
    names = sorted(v.value for v in s.values)
    assert names[0].startswith("about: ") and names[1] == 'like "9 + 3 = 12"', names  # the one nearest its centre
    assert all(placeholder_reason(n) is None for n in names)  # a tree written as a taxonomy reads back
    # a long text: its first words, ending on none of "of", "the", an ellipsis
    s = cluster_split(["The sum of 18 and 19 is 21. What is it? The answer is 37.", "18 + 19 = 37", "7 + 9 = 16"] + texts[:3],
                      np.stack([b, b, b + 0.3 * rng.normal(size=8)] + [a] * 3), 2, seed=0, depth=0, ignore=frozenset({"answer"}))
    like = [v.value for v in s.values if v.value.startswith('like "')]
    assert len(like) == 1 and placeholder_reason(like[0]) is None and len(like[0]) <= 60, like


def test_copies_of_the_prompt_examples_are_recognised_even_with_new_numbers():
    from treesynth.core.text import copies_example

    ex = ["A bus has 40 seats. In the morning 28 seats are taken and in the evening 35 are taken. How many seats are empty?"]
    assert copies_example(ex[0], ex)
    assert copies_example("A bus has 100 seats. In the morning 90 seats are taken and in the evening 20 are taken. How many are left?", ex)
    assert not copies_example("Tom reads 12 pages a day for a week. How many pages does he read?", ex)
    assert not copies_example("", ex)


def test_field_patterns_reject_samples_that_do_not_match():
    from treesynth.core.parsing import parse_samples

    rx = {"question": re.compile(r"\?$")}
    obj = {"samples": [{"question": "How many?", "answer": "2"}, {"question": "22.9.142857.16", "answer": "3"}]}
    good, rejected = parse_samples(obj, ("question", "answer"), max_items=5, max_chars=100, patterns=rx)
    assert good == [{"question": "How many?", "answer": "2"}] and rejected == 1


def test_numbered_or_numeric_values_are_not_values():
    dim, values = validate_criterion(
        {"dimension": "setting", "values": ["EQUESTION 10. 84. 22", "EQUESTION 2. 56. 56", "shopping", "grade 2", "cooking"]},
        [], 6, FIELDS, TASK,
    )
    assert values == ["shopping", "grade 2", "cooking"]  # mostly numbers dropped; a number beside a word is fine
    with pytest.raises(PartitionError, match="mostly numbers"):
        validate_criterion({"dimension": "Route 12 34 56", "values": ["a b", "c d"]}, [], 6, FIELDS, TASK)


def test_values_that_only_number_one_identifier_are_refused():
    # SmolLM2-135M in session 21's README run: "structure" = response_data1 .. response_data4
    with pytest.raises(PartitionError, match="only number the parts of 'response_data'"):
        validate_criterion({"dimension": "structure", "values": [f"response_data{i}" for i in range(1, 5)]}, [], 6, FIELDS, TASK)
    with pytest.raises(PartitionError, match="only number the parts of 'blob'"):
        validate_criterion({"dimension": "layout", "values": ["blob1", "Blob2", "blob3"]}, [], 6, FIELDS, TASK)
    for values in (["grade 1", "grade 2", "grade 3"], ["MP3", "MP4"], ["response_data1", "a table"], ["level_2", "step_3"]):
        dim, got = validate_criterion({"dimension": "format kind", "values": values}, [], 6, FIELDS, TASK)
        assert got == values


def test_a_split_by_codes_is_refused():
    # SmolLM2-135M in session 24's README run, under a data-driven cluster: 'dyn-2' = 'dyn-1' / 'dyn-3' / 'dyn-4'
    with pytest.raises(PartitionError, match="'dyn-2' is a code"):
        validate_criterion({"dimension": "dyn-2", "values": ["dyn-1", "dyn-3", "dyn-4"]}, [], 6, FIELDS, TASK)
    with pytest.raises(PartitionError, match="only number the parts of 'dyn'"):
        validate_criterion({"dimension": "setting", "values": ["dyn-1", "Dyn-3", "dyn-4"]}, [], 6, FIELDS, TASK)
    dim, values = validate_criterion({"dimension": "standard", "values": ["ISO-9001", "a house rule"]}, [], 6, FIELDS, TASK)
    assert values == ["ISO-9001", "a house rule"]  # one code among names is a value


def test_values_beside_a_yes_no_pair_are_dropped():
    # SmolLM2-135M in session 22's README run: "multiple" = True / False / double
    dim, values = validate_criterion({"dimension": "multiple", "values": ["True", "False", "double"]}, [], 6, FIELDS, TASK)
    assert values == ["True", "False"]
    dim, values = validate_criterion({"dimension": "has units", "values": ["yes", "sometimes", "No"]}, [], 6, FIELDS, TASK)
    assert values == ["yes", "No"]
    for values in (["True", "False"], ["yes", "no"], ["true story", "false start", "fiction"], ["yes", "maybe", "later"]):
        dim, got = validate_criterion({"dimension": "answer kind", "values": values}, [], 6, FIELDS, TASK)
        assert got == values


def test_a_value_that_combines_another_is_dropped():
    # SmolLM2-135M in session 11's README run: "out of set" = "a quarter" / "a quarter and a nickel"
    with pytest.raises(PartitionError, match="overlaps 'a quarter'"):
        validate_criterion({"dimension": "out of set", "values": ["a quarter and a nickel", "a quarter"]}, [], 6, FIELDS, TASK)
    dim, values = validate_criterion(
        {"dimension": "coins used", "values": ["a quarter", "a quarter and a nickel", "a dime", "pennies"]}, [], 6, FIELDS, TASK)
    assert values == ["a quarter", "a dime", "pennies"]


def test_the_task_misspelt_or_the_dimension_cut_up_is_no_criterion():
    assert placeholder_reason("GEM-8K-style grade-school math word problems", FIELDS, TASK) is not None
    with pytest.raises(PartitionError, match="cut off mid-phrase"):
        validate_criterion({"dimension": "Demonstration of the ability to", "values": ["Ability to", "the ability"]}, [], 6, FIELDS, TASK)
    with pytest.raises(PartitionError, match="repeats the dimension"):
        validate_criterion({"dimension": "Demonstration of the ability", "values": ["the ability", "Demonstration"]}, [], 6, FIELDS, TASK)


def test_punctuation_noise_is_no_value_but_names_with_marks_are():
    # "Thr..G..Y..G..G..G..": a value SmolLM2-135M gave behind llama-cpp-python's server (session 9)
    dim, values = validate_criterion(
        {"dimension": "outlier", "values": ["Thr..G..Y..G..G..G..", "-.-.-.-", "Q&A", "A/B testing", "well... maybe"]},
        [], 8, FIELDS, TASK,
    )
    assert values == ["Q&A", "A/B testing", "well... maybe"]
    with pytest.raises(PartitionError, match="broken text"):
        validate_criterion({"dimension": "Thr..G..Y..G..", "values": ["a b", "c d"]}, [], 6, FIELDS, TASK)


def test_a_few_numbers_among_words_are_fine():
    dim, values = validate_criterion({"dimension": "aspect 0", "values": ["kind 0 of aspect 0", "kind 1 of aspect 0"]}, [], 6)
    assert values == ["kind 0 of aspect 0", "kind 1 of aspect 0"]


def test_values_that_only_number_the_parts_of_a_set_are_no_split():
    # SmolLM2-135M's split of the README run's root in session 18: set = Set-1, Set-2, Set-3, Set-4
    with pytest.raises(PartitionError, match="only numbers a part"):
        validate_criterion({"dimension": "set", "values": ["Set-1", "Set-2", "Set-3", "Set-4"]}, [], 6, FIELDS, TASK)
    for label in ("Set-1", "set 2", "Part A", "batch_3", "Subset 4", "Bucket b"):
        assert placeholder_reason(label, FIELDS, TASK) is not None, label
    for label in ("Sets", "parts of speech", "grade 2", "Level 3 fractions", "split bills"):  # words, or a number after a real name
        assert placeholder_reason(label, FIELDS, TASK) is None, label


def test_values_equal_up_to_a_plural_are_one_value():
    dim, values = validate_criterion(
        {"dimension": "sport", "values": ["Soccer", "Soccers", "Board game", "board games", "Box", "boxes", "Puppies", "puppy"]},
        [], 8, FIELDS, TASK,
    )
    assert values == ["Soccer", "Board game", "Box", "Puppies"]
    with pytest.raises(PartitionError, match="at least 2"):
        validate_criterion({"dimension": "sport", "values": ["Soccer", "Soccers"]}, [], 6, FIELDS, TASK)
    _, values = validate_criterion(
        {"dimension": "topic", "values": ["Movie", "movies", "Cookies", "cookie", "potato", "Potatoes", "shoes", "shoe", "hero", "heroes"]},
        [], 10, FIELDS, TASK,
    )
    assert values == ["Movie", "Cookies", "potato", "shoes", "hero"]
    _, values = validate_criterion({"dimension": "topic", "values": ["movie", "move", "cities", "city", "pie", "pies", "toe", "toes"]}, [], 8, FIELDS, TASK)
    assert values == ["movie", "move", "cities", "pie", "toe"]
    # words that end in s but are no plurals stay apart from their stems
    _, values = validate_criterion({"dimension": "subject", "values": ["glass", "glas", "bus", "bu", "analysis", "analysi"]}, [], 8, FIELDS, TASK)
    assert len(values) == 6
