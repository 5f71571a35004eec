"""The criterion step in two calls, as pure functions: schemas, validation and assembly.

A single call that names a dimension, its values and every pivot's value at once is beyond a
small model (and a constrained decoder cannot check that every pivot is assigned once). So:

1. **criterion**: ``{"dimension": D, "values": [v1, v2, ...]}``; labels are bounded by a pattern
   (letters first, no digits-only, no quotes), at least two values.
2. **assign**: ``{"1": v, "2": v, ...}``: one property per pivot, in order, each an ``enum`` of the
   values from (1). Under a schema-enforcing decoder every pivot gets exactly one valid value
   by construction; without one, :func:`validate_assignment` checks the same.

Placeholders (``dimension_1``, ``value``, ``text``, the sample's field names, the task's own
words) and splits whose pivots all land on one value are invalid: they make a one-node "tree".
"""

from __future__ import annotations

import re
from typing import Any

from .partition import PartitionError, Split, Value, is_catch_all, label_key, overlapped, yes_no_pair
from .text import normalise

# The grammar's form of a label: one to five short words, not starting with a digit or a bracket;
# no quotes, backslashes or control characters (a grammar-constrained decoder cannot wander into
# escapes or run on into a sentence). Any script's letters pass.
_WORD = r'[^"\\\x00-\x1f 0-9\[\]{}][^"\\\x00-\x1f ]{0,19}'  # a word starts with no digit or bracket
LABEL_PATTERN = rf"^{_WORD}( {_WORD}){{0,4}}$"
# What code accepts from any provider (with or without a grammar): a short label of a few words.
LABEL_MAX_CHARS = 60
LABEL_MAX_WORDS = 8


def _label_problem(label: str) -> str | None:
    words = label.split()
    if len(label) > LABEL_MAX_CHARS or len(words) > LABEL_MAX_WORDS:
        return f"{label[:60]!r} must be a short name (at most {LABEL_MAX_WORDS} words)"
    if any(ord(c) < 32 for c in label):
        return f"{label[:60]!r} has control characters"
    if sum(1 for w in words if not any(c.isalpha() for c in w)) * 2 > max(2, len(words)):
        return f"{label[:60]!r} is mostly numbers, not a name"
    if _is_noise(label):
        return f"{label[:60]!r} is broken text, not a name"
    return None


_DOUBLED_MARK = re.compile(r"([^\w\s])\1")


def _is_noise(label: str) -> bool:
    """Decoder noise such as "Thr..G..Y..G..G..G.." (seen from SmolLM2-135M behind llama-cpp-python's
    server): doubled punctuation again and again, or more punctuation than letters in a longer label.
    "A/B testing" or "Q&A" stay names."""
    letters = sum(c.isalpha() for c in label)
    marks = sum(not (c.isalnum() or c.isspace()) for c in label)
    return len(_DOUBLED_MARK.findall(label)) >= 2 or (len(label) >= 6 and marks > letters)


_PLACEHOLDER_WORDS = frozenset(
    {
        "dimension", "dimensions", "criterion", "criteria", "placeholder", "value", "values", "label", "labels",
        "category", "categories", "class", "group", "cluster", "option", "name", "field", "sample", "samples",
        "data", "text", "string", "example", "examples", "item", "items", "attribute", "property", "feature",
        "key", "answer", "question", "output", "input", "response", "thing", "stuff", "type", "kind",
        # kinds of variable, not variables ("Nominal": SmolLM2-135M's criterion in session 11's README run)
        "nominal", "ordinal", "categorical", "variable", "variables", "parameter", "column",
    }
)
_NUMBERED = re.compile(r"^([a-z ]+?)[ _-]*(\d+|[a-z])$")
# words that only number the parts of something when a number or letter follows: "Set-1".."Set-4" (SmolLM2-135M's
# split of the README run's root in session 18) names no property of a sample. Alone they can be real ("Sets")
_NUMBERED_PART = re.compile(r"^([a-z ]+?)(?:[ _-]*\d+|[ _-]+[a-z])$")  # a letter after a separator: "Part A", not "Sets"
_NUMBERING_WORDS = frozenset({"set", "subset", "part", "batch", "bucket", "segment", "partition", "split", "bin", "slice", "chunk", "portion", "subgroup"})
# a statement rather than a name: "The setting is a function,10," with values "The set is a set,10." (SmolLM2-135M's
# split of a 4-pivot node in session 19's run), and words glued to numbers by punctuation ("function,10")
_STATEMENT = re.compile(r"^(?:the|a|an|this|that|it|there)\b.*\b(?:is|are|was|were|has|have)\b")
_TRAILING_ELLIPSIS = re.compile(r"(?:\.\.\.|\u2026)[\W_]*$")  # "Howmany...": an ellipsis mid-label ("well... maybe") is fine
_GLUED = re.compile(r"[^\W\d_][,;:]\s*\d|[^\W\d_][,;:][^\W\d_]")  # "function,10" / "question:what's": no name
_CODE = re.compile(r"^[a-z][ _-]?\d+$")  # "d1", "v-2": a code, not a name (SmolLM2 split by 'd1' into 'd2', 'd3', 'd4')
# a model's dimension "dyn-2" is a code too (SmolLM2-135M split by 'dyn-2' into 'dyn-1', 'dyn-3', 'dyn-4' in session 24's
# README run); only a dimension: as one value among others "ISO-9001" or "CS-101" can be real (a user's tree file)
_SHORT_CODE = re.compile(r"^[a-z]{2,3}-\d+$")
# an identifier with a number: "response_data1", "item_2", "data3" (a stem of 4 letters or more, or an underscore,
# before the digits: "mp3" / "mp4" stay). Values that are all one such stem, numbered, only number the parts:
# SmolLM2-135M's split "structure = response_data1 .. response_data4" in session 21's README run
_NUMBERED_IDENT = re.compile(r"^([a-z][a-z0-9_]*?)[_-]?(\d+)$")
_FILE_NAME = re.compile(r"\.(?:json|jsonl|txt|csv|tsv|md|py|yaml|yml|toml|xml|html?|pdf)$")
# a label that ends on one of these was cut off mid-phrase ("A simple, everyday example of")
_DANGLING = frozenset({"of", "the", "a", "an", "and", "or", "to", "with", "for", "in", "on", "at", "from", "by", "as", "that"})


def placeholder_reason(label: str, fields: tuple[str, ...] | list[str] = (), task: str = "") -> str | None:
    """Why ``label`` is a placeholder rather than a real dimension or value; None if it is real."""
    if _TRAILING_ELLIPSIS.search(label):  # checked before normalise strips it: "The answer to the question:What's...?"
        return f"{label!r} is cut off, not a name"
    n = normalise(label).replace("_", " ")
    if len(n) < 2:
        return f"{label!r} is too short"
    if not any(c.isalpha() for c in n):
        return f"{label!r} has no words"
    if n in {normalise(f).replace("_", " ") for f in fields}:
        return f"{label!r} is a field name of the samples, not a criterion"
    if n in _PLACEHOLDER_WORDS:
        return f"{label!r} is a placeholder, not a concrete name"
    if _CODE.match(n):
        return f"{label!r} is a code, not a concrete name"
    m = _NUMBERED.match(n)
    if m and m.group(1).strip() in _PLACEHOLDER_WORDS:
        return f"{label!r} is a placeholder, not a concrete name"
    if (p := _NUMBERED_PART.match(n)) and p.group(1).strip() in _NUMBERING_WORDS:
        return f"{label!r} only numbers a part, it names no property of a sample"
    if _STATEMENT.match(n):
        return f"{label!r} is a sentence, not a name"
    if _GLUED.search(n):
        return f"{label!r} is broken text, not a name"
    words = n.split()
    if any(w in ("dimension", "dimensions", "criterion", "placeholder") for w in re.findall(r"[a-z]+", n)):
        return f"{label!r} names the format, not a criterion"
    if _FILE_NAME.search(n):
        return f"{label!r} is a file name, not a criterion"
    if len(words) >= 2 and re.sub(r"\W+$", "", words[-1]) in _DANGLING:
        return f"{label!r} is cut off mid-phrase"
    t = normalise(task)
    if t and (n == t or (len(words) >= 2 and f" {n} " in f" {t} ")):
        return f"{label!r} repeats the task's own words"
    if t and len(words) >= 3:  # "GEM-8K-style grade-school math word problems": the task again, misspelt
        task_words = set(re.findall(r"\w+", t))
        own = re.findall(r"\w+", n)
        if own and sum(w in task_words for w in own) >= 0.6 * len(own):
            return f"{label!r} repeats the task's own words"
    return None


def criterion_schema(max_values: int) -> dict[str, Any]:
    label = {"type": "string", "pattern": LABEL_PATTERN}
    return {
        "type": "object",
        "properties": {
            "dimension": label,
            "values": {"type": "array", "minItems": 2, "maxItems": max(2, max_values), "items": label},
        },
        "required": ["dimension", "values"],
        "additionalProperties": False,
    }


def numbered_identifiers(values: list[str]) -> str | None:
    """The stem, when two or more ``values`` are all that one identifier with a number ("response_data1",
    "response_data2", "dyn-1", "dyn-3"); else None. "Grade 1" / "Grade 2" (words and a number) are real values and pass."""
    stems = set()
    for v in values:
        low = v.strip().lower()
        m = _NUMBERED_IDENT.match(low)
        if m is None or not ("_" in low or "-" in low or (m.group(1).isalpha() and len(m.group(1)) >= 4)):
            return None
        stems.add(m.group(1))
    return stems.pop() if len(values) >= 2 and len(stems) == 1 else None


def beside_yes_no(values: list[str]) -> tuple[str, str, list[str]] | None:
    """(the yes/no pair as written, the other values) when ``values`` hold both of a yes/no pair ("True" and
    "False", "yes" and "no") and more: the pair covers every sample already, so any other value overlaps one
    of them (SmolLM2-135M in session 22's README run: "multiple" = True / False / double). None otherwise."""
    pair = yes_no_pair(values) if len(values) > 2 else None
    return None if pair is None else (*pair, [v for v in values if v not in pair])


def validate_criterion(
    raw: Any, ancestors: list[str] | tuple[str, ...], max_values: int,
    fields: tuple[str, ...] | list[str] = (), task: str = "",
) -> tuple[str, list[str]]:
    """Check a criterion answer: a real dimension, new on the path, and at least two real, distinct values."""
    if not isinstance(raw, dict):
        raise PartitionError("the answer must be an object with 'dimension' and 'values'")
    dim = raw.get("dimension")
    if not isinstance(dim, str) or not dim.strip():
        raise PartitionError("'dimension' must be a non-empty string")
    dim = " ".join(dim.split())
    why = placeholder_reason(dim, fields, task)
    if why:
        raise PartitionError(why)
    nd = normalise(dim)
    if _SHORT_CODE.match(nd):
        raise PartitionError(f"{dim!r} is a code, not a concrete name")
    if (why := _label_problem(dim)) is not None:
        raise PartitionError(f"dimension {why}")
    if any(normalise(a) == nd for a in ancestors):
        raise PartitionError(f"dimension {dim!r} was already used by an ancestor node; choose a different one")
    vals = raw.get("values")
    if not isinstance(vals, list):
        raise PartitionError("'values' must be a list of strings")
    out: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    for v in vals:
        if not isinstance(v, str) or not v.strip():
            problems.append("a value is empty")
            continue
        v = " ".join(v.split())
        n = normalise(v)
        if (why := _label_problem(v)) is not None:
            problems.append(f"value {why}")
        elif label_key(v) in seen:
            continue  # a repeat ("Soccer", "soccers") adds nothing; small models repeat, the rest may still be good
        elif n == nd or set(re.findall(r"\w+", n)) <= set(re.findall(r"\w+", nd)):
            problems.append(f"value {v!r} repeats the dimension")
        elif is_catch_all(v):
            problems.append(f"value {v!r} is a catch-all")
        elif (why := placeholder_reason(v, fields, task)) is not None:
            problems.append(why)
        else:
            seen.add(label_key(v))
            out.append(v)
    if (stem := numbered_identifiers(out)) is not None:
        raise PartitionError(f"the values of {dim!r} only number the parts of {stem!r} ({', '.join(out[:4])}): they name no property of a sample")
    # "a quarter and a nickel" beside "a quarter" (SmolLM2-135M, session 11): the values must not overlap
    whole = list(out)
    for v in whole:
        if (o := overlapped(v, whole)) is not None:
            problems.append(f"value {v!r} overlaps {o!r}")
            out.remove(v)
    if (yn := beside_yes_no(out)) is not None:
        yes, no, others = yn
        problems += [f"value {v!r} overlaps {yes!r}/{no!r}, which cover every sample" for v in others]
        out = [yes, no]
    if len(out) < 2:
        detail = f" ({'; '.join(problems[:3])})" if problems else ""
        raise PartitionError(f"need at least 2 distinct, concrete values of {dim!r}; got {len(out)}{detail}")
    return dim, out[:max_values]


def assign_schema(n_pivots: int, values: list[str]) -> dict[str, Any]:
    """One required property per pivot, in order, each one of ``values``: a decoder that enforces
    the schema can only assign every pivot exactly once, to a listed value."""
    one = {"type": "string", "enum": list(values)}
    keys = [str(i) for i in range(1, n_pivots + 1)]
    return {"type": "object", "properties": {k: one for k in keys}, "required": keys, "additionalProperties": False}


def validate_assignment(raw: Any, n_pivots: int, values: list[str]) -> list[int]:
    """Index into ``values`` for each pivot (0-based order). Accepts ``{"1": v, ...}`` or ``[v, ...]``;
    values match after normalisation."""
    lookup = {normalise(v): i for i, v in enumerate(values)}
    if isinstance(raw, dict) and isinstance(raw.get("assignments"), (list, dict)):
        raw = raw["assignments"]
    if isinstance(raw, list):
        raw = {str(i + 1): v for i, v in enumerate(raw)}
    if not isinstance(raw, dict):
        raise PartitionError("the answer must map each sample number to one value")
    out: list[int] = []
    missing: list[str] = []
    unknown: list[str] = []
    for i in range(1, n_pivots + 1):
        v = raw.get(str(i), raw.get(f"[{i}]"))
        if not isinstance(v, str):
            missing.append(str(i))
            continue
        j = lookup.get(normalise(v))
        if j is None:
            unknown.append(f"{i}: {v[:40]!r}")
            continue
        out.append(j)
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"samples {', '.join(missing)} have no value")
        if unknown:
            parts.append(f"unknown values ({'; '.join(unknown[:4])}); use only {', '.join(repr(v) for v in values)}")
        raise PartitionError("; ".join(parts))
    return out


def build_split(dimension: str, values: list[str], assignment: list[int]) -> tuple[Split, list[str]]:
    """The split made by an assignment, and the values no pivot took (candidates for coverage).
    Raises PartitionError when fewer than two values hold pivots: that is no split."""
    groups: dict[int, list[int]] = {}
    for p, j in enumerate(assignment):
        groups.setdefault(j, []).append(p)
    if len(groups) < 2:
        only = values[next(iter(groups))] if groups else "none"
        raise PartitionError(f"every sample was put under one value ({only!r}); that does not split them")
    split = Split(dimension, tuple(Value(values[j], tuple(groups[j]), "pivots") for j in sorted(groups)))
    unused = [v for j, v in enumerate(values) if j not in groups]
    return split, unused
