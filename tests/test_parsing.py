"""Tests for tolerant parsing of LLM output (core/parsing.py)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treesynth.core.parsing import ParseError, parse_json, parse_samples

# ---------------------------------------------------------------- parse_json


@pytest.mark.parametrize(
    "text,expected",
    [
        ('{"a": 1}', {"a": 1}),
        ("  [1, 2, 3]\n", [1, 2, 3]),
        ('"just a string"', "just a string"),
        ("42", 42),
        ("null", None),
    ],
)
def test_plain_json(text, expected):
    assert parse_json(text) == expected


def test_fenced_json_block():
    text = 'Here you go:\n```json\n{"samples": [{"text": "hi"}]}\n```\nHope this helps!'
    assert parse_json(text) == {"samples": [{"text": "hi"}]}


def test_fenced_block_without_language_and_uppercase():
    assert parse_json("```\n[1, 2]\n```") == [1, 2]
    assert parse_json('```JSON\n{"x": true}\n```') == {"x": True}


def test_first_parsable_fence_wins():
    text = "```json\n{broken\n```\nthen\n```json\n{\"ok\": 1}\n```"
    assert parse_json(text) == {"ok": 1}


def test_prose_around_json_object():
    text = 'Sure! The classification is {"dimension": "topic", "values": []} as requested.'
    assert parse_json(text) == {"dimension": "topic", "values": []}


def test_prose_around_json_array_with_braces_in_prose_first():
    text = 'Note {this is not json} but here: [{"text": "a"}, {"text": "b"}] done'
    assert parse_json(text) == [{"text": "a"}, {"text": "b"}]


def test_nested_braces_inside_strings():
    text = 'answer: {"q": "what is {x}?", "a": "[1]"} trailing'
    assert parse_json(text) == {"q": "what is {x}?", "a": "[1]"}


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t\n"])
def test_empty_raises(text):
    with pytest.raises(ParseError, match="empty answer"):
        parse_json(text)


@pytest.mark.parametrize(
    "text",
    ["hello world", "{not json}", "[1, 2", "```json\n{bad}\n```", "The answer is 42.", "{'a': 1}", "}{][", "{" * 100],
)
def test_garbage_raises(text):
    with pytest.raises(ParseError, match="no JSON object found"):
        parse_json(text)


def test_parse_error_is_value_error():
    assert issubclass(ParseError, ValueError)


@pytest.mark.parametrize("text", ["[" * 10000, "{" * 10000, '{"a":' * 10000, "[" * 100000 + "]" * 100000, "[{" * 5000 + "x"])
def test_huge_nesting_raises_parse_error_quickly(text):
    t0 = time.monotonic()
    try:
        parse_json(text)
    except ParseError:
        pass
    assert time.monotonic() - t0 < 10


def test_many_openers_is_bounded():
    text = "{ " * 200_000
    t0 = time.monotonic()
    with pytest.raises(ParseError):
        parse_json(text)
    assert time.monotonic() - t0 < 10


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(),
        st.text(alphabet='{}[]",:0123456789 abtrueflsn\\`\n', max_size=200),
        st.builds(lambda a, b, c: a + b + c, st.text(max_size=30), st.sampled_from(["```json\n", "```", "{", "[", '{"a": ']), st.text(max_size=30)),
        st.integers(1, 20000).map(lambda n: "[" * n),
        st.integers(1, 20000).map(lambda n: '{"a":' * n),
    )
)
def test_arbitrary_text_only_parse_error(text):
    try:
        parse_json(text)
    except ParseError:
        pass


# ---------------------------------------------------------------- parse_samples
F2 = ("question", "answer")


def test_dict_with_samples():
    obj = {"samples": [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}]}
    assert parse_samples(obj, F2, max_items=10, max_chars=100) == (
        [{"question": "q1", "answer": "a1"}, {"question": "q2", "answer": "a2"}],
        0,
    )


@pytest.mark.parametrize("key", ["items", "data", "examples", "pivots"])
def test_dict_with_other_list_keys(key):
    out, rej = parse_samples({key: [{"text": "x"}]}, ("text",), max_items=5, max_chars=100)
    assert out == [{"text": "x"}] and rej == 0


def test_bare_list():
    out, rej = parse_samples([{"question": "q", "answer": "a"}], F2, max_items=10, max_chars=100)
    assert out == [{"question": "q", "answer": "a"}] and rej == 0


def test_single_object_is_one_sample():
    out, rej = parse_samples({"question": "q", "answer": "a"}, F2, max_items=10, max_chars=100)
    assert out == [{"question": "q", "answer": "a"}] and rej == 0


def test_extra_keys_dropped():
    out, _ = parse_samples([{"question": "q", "answer": "a", "id": 3}], F2, max_items=10, max_chars=100)
    assert out == [{"question": "q", "answer": "a"}]


def test_single_field_bare_strings():
    out, rej = parse_samples({"samples": ["  first  ", "second", "", None, True, ["x"], 3]}, ("text",), max_items=10, max_chars=100)
    assert out == [{"text": "first"}, {"text": "second"}, {"text": "3"}]
    assert rej == 4


def test_bare_strings_rejected_with_several_fields():
    out, rej = parse_samples(["a question", {"question": "q", "answer": "a"}], F2, max_items=10, max_chars=100)
    assert out == [{"question": "q", "answer": "a"}]
    assert rej == 1


@pytest.mark.parametrize("bad", [{"question": "q"}, {"question": "q", "answer": ""}, {"question": "q", "answer": "   "}, {"question": "q", "answer": None}, {"question": "q", "answer": False}, {"question": "q", "answer": {"x": 1}}, {"Question": "q", "answer": "a"}])
def test_missing_or_empty_field_rejected(bad):
    out, rej = parse_samples([bad, {"question": "ok", "answer": "ok"}], F2, max_items=10, max_chars=100)
    assert out == [{"question": "ok", "answer": "ok"}]
    assert rej == 1


def test_numbers_coerced_to_strings():
    out, rej = parse_samples([{"question": "2+2?", "answer": 4}, {"question": 1.5, "answer": -7}], F2, max_items=10, max_chars=100)
    assert out == [{"question": "2+2?", "answer": "4"}, {"question": "1.5", "answer": "-7"}]
    assert rej == 0
    assert all(isinstance(v, str) for s in out for v in s.values())


def test_values_stripped():
    out, _ = parse_samples([{"question": "  q \n", "answer": "\ta"}], F2, max_items=10, max_chars=100)
    assert out == [{"question": "q", "answer": "a"}]


def test_max_items_trimming_counts_extras_as_rejected():
    items = [{"text": f"s{i}"} for i in range(5)]
    out, rej = parse_samples(items, ("text",), max_items=3, max_chars=100)
    assert out == [{"text": "s0"}, {"text": "s1"}, {"text": "s2"}]
    assert rej == 2


def test_max_items_looks_past_bad_items():
    items = [{"nope": 1}, {"text": "a"}, {"nope": 2}, {"text": "b"}]
    out, rej = parse_samples(items, ("text",), max_items=2, max_chars=100)
    assert out == [{"text": "a"}, {"text": "b"}]
    assert rej == 2


def test_max_chars_truncation():
    out, _ = parse_samples([{"question": "x" * 50, "answer": "short"}], F2, max_items=10, max_chars=16)
    assert out == [{"question": "x" * 16, "answer": "short"}]
    out, _ = parse_samples(["y" * 40], ("text",), max_items=10, max_chars=16)
    assert out == [{"text": "y" * 16}]


@pytest.mark.parametrize("obj", [None, "text", 3, 2.5, True])
def test_non_container_raises(obj):
    with pytest.raises(ParseError, match="expected a list of samples"):
        parse_samples(obj, F2, max_items=5, max_chars=100)


json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.sampled_from(["samples", "text", "question", "answer", "x"]) | st.text(max_size=8), children, max_size=5),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(obj=json_like, fields=st.sampled_from([("text",), ("question", "answer")]), max_items=st.integers(1, 10), max_chars=st.integers(1, 50))
def test_parse_samples_property(obj, fields, max_items, max_chars):
    try:
        out, rej = parse_samples(obj, fields, max_items=max_items, max_chars=max_chars)
    except ParseError:
        return
    assert len(out) <= max_items
    assert rej >= 0
    for s in out:
        assert tuple(s) == fields
        assert all(isinstance(v, str) and 0 < len(v) <= max_chars for v in s.values())
