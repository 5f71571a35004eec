"""The partition protocol's rules, as pure functions.

A node's split is valid when:
  * one dimension is named, and it is not (after normalisation) an ancestor's dimension;
  * every pivot is assigned to exactly one attribute value (none missing, none twice);
  * values are distinct after case/whitespace normalisation and plurals (``label_key``) and none is a catch-all
    ("other", "misc", "various", ...).
The criterion step checks the dimension, its values and the assignment (core/criterion.py); this module
holds the split's types, the catch-all and overlap rules, the coverage supplement (whose values obey the
same rules) and the children a split makes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .text import normalise

CATCH_ALL_WORDS = frozenset(
    {
        "other", "others", "misc", "miscellaneous", "various", "varied", "general", "etc",
        "mixed", "any", "anything", "everything", "all", "rest", "remaining", "unknown",
        "unspecified", "none", "n/a", "na", "not applicable", "undefined", "default",
        "else", "something else", "more", "additional",
    }
)
_CATCH_ALL_PREFIXES = ("other ", "others ", "misc ", "miscellaneous ", "various ", "any other ", "all other ")
_CATCH_ALL_SUFFIXES = (" etc", " and others", " and more", " or other", " or others", " others")

COVERAGE_KINDS = ("none", "complete", "open_ended")


class PartitionError(ValueError):
    """A split that breaks the protocol; the message is fed back to the LLM."""


@dataclass(frozen=True)
class Value:
    value: str
    pivots: tuple[int, ...] = ()  # 0-based pivot indices
    source: str = "pivots"  # "pivots" | "coverage"


@dataclass(frozen=True)
class Split:
    dimension: str
    values: tuple[Value, ...]
    # a given open-ended split (a reused tree's ``one_of`` list): its values make one child whose rows each
    # draw one of them, however few there are (a grown split becomes so only past open_ended_threshold)
    open_ended: bool = False


@dataclass(frozen=True)
class Coverage:
    kind: str  # none | complete | open_ended
    added: tuple[str, ...] = ()
    rejected: tuple[str, ...] = field(default=())  # human-readable reasons for dropped values


def _singular(word: str) -> str:
    """A word's key without a plural ending, conservatively ("categories" -> "category", "boxes" -> "box",
    "soccers" -> "soccer"; "glass", "bus", "analysis" unchanged). A key, not always the English singular: a
    final "ie" and "oe" end like the plural's stem, so "movie"/"movies" and "potato"/"potatoes" meet."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 3 and word.endswith("ie"):  # movie(s), cookie(s), calorie(s): "movies" was "movy"
        return word[:-2] + "y"
    if len(word) > 3 and word.endswith("oe"):  # potatoe(s), heroe(s), shoe(s)
        return word[:-1]
    return word


def label_key(label: str) -> str:
    """What two values must differ in to be two values: normalised (case, spacing, punctuation at the ends),
    every word singular. "Soccer" and "Soccers" are one value, as are "Board game" and "board games"."""
    return " ".join(_singular(w) for w in normalise(label).split())


def is_catch_all(value: str) -> bool:
    n = normalise(value)
    if not n or n in CATCH_ALL_WORDS:
        return True
    return n.startswith(_CATCH_ALL_PREFIXES) or n.endswith(_CATCH_ALL_SUFFIXES)


_PARTS = re.compile(r"\s*(?:[,;/&+]|\band\b|\bor\b)\s*", re.IGNORECASE)


def overlapped(label: str, others: Iterable[str]) -> str | None:
    """The other value that ``label`` lists as one of its parts ("B-level-7, Math-level-9" beside
    "Math-level-9"), or None. Such a value overlaps that one: the set is no longer mutually exclusive."""
    parts = [normalise(p) for p in _PARTS.split(label) if p.strip()]
    if len(parts) < 2:
        return None
    mine = normalise(label)
    for o in others:
        n = normalise(o)
        if n != mine and n in parts:
            return o
    return None


_YES_NO = (("true", "false"), ("yes", "no"))


def yes_no_pair(values: Iterable[str]) -> tuple[str, str] | None:
    """Both halves of a yes/no pair ("True" and "False", "yes" and "no") as written in ``values``, or None. Such a
    pair covers every sample: a model's further value beside it overlaps one half (a user's taxonomy may still
    say "yes / no / maybe")."""
    low = {v.strip().lower(): v for v in values}
    for a, b in _YES_NO:
        if a in low and b in low:
            return low[a], low[b]
    return None


def _clean_label(v: Any, what: str, max_len: int = 120) -> str:
    if not isinstance(v, str):
        raise PartitionError(f"{what} must be a string")
    s = " ".join(v.split())
    if not s or not normalise(s):
        raise PartitionError(f"{what} is empty")
    if len(s) > max_len:
        raise PartitionError(f"{what} is longer than {max_len} characters")
    return s


def validate_coverage(raw: Any, existing: list[str] | tuple[str, ...], max_new: int) -> Coverage:
    """Check a coverage-supplement answer. Bad individual values are dropped (with reasons), not fatal."""
    if not isinstance(raw, dict):
        raise PartitionError("the answer must be an object with 'status' and 'values'")
    kind = raw.get("status")
    if isinstance(kind, str):
        kind = kind.strip().lower().replace("-", "_").replace(" ", "_")
    if kind not in COVERAGE_KINDS:
        raise PartitionError(f"'status' must be one of {', '.join(COVERAGE_KINDS)}")
    items = raw.get("values", [])
    if items is None:
        items = []
    if not isinstance(items, list):
        raise PartitionError("'values' must be a list of strings")
    if kind == "none":
        return Coverage("none")
    seen = {label_key(e) for e in existing}
    pair = yes_no_pair(existing)  # True and False already cover every sample: nothing is missing
    added: list[str] = []
    rejected: list[str] = []
    for v in items:
        try:
            label = _clean_label(v, "a value")
        except PartitionError as e:
            rejected.append(str(e))
            continue
        n = label_key(label)
        if n in seen:
            rejected.append(f"{label!r} repeats an existing value")
            continue
        if is_catch_all(label):
            rejected.append(f"{label!r} is a catch-all")
            continue
        o = f"{pair[0]}/{pair[1]}" if pair is not None else overlapped(label, [*existing, *added])
        if o is not None:
            rejected.append(f"{label!r} overlaps {o!r}")
            continue
        seen.add(n)
        added.append(label)
    if len(added) > max_new:
        rejected.append(f"{len(added) - max_new} values beyond the limit of {max_new} were dropped")
        added = added[:max_new]
    return Coverage(kind, tuple(added), tuple(rejected))


@dataclass(frozen=True)
class ChildSpec:
    value: str
    source: str  # pivots | coverage | open_ended
    values: tuple[str, ...] = ()  # for an open-ended child: the list sampled at generation time
    weight: float = 1.0


def open_ended_label(dimension: str, n_values: int) -> str:
    """The value an open-ended child shows: its rows draw one of the list's values at generation time."""
    return f"one of {n_values} {dimension} values"


def plan_children(split: Split, coverage: Coverage, open_ended_threshold: int) -> list[ChildSpec]:
    """Turn a valid split and its supplement into the node's children.

    An open-ended dimension whose values exceed the threshold becomes one child whose
    value is sampled from the list at generation time, weighted by the list's length.
    """
    all_values = [(v.value, v.source) for v in split.values] + [(a, "coverage") for a in coverage.added]
    if coverage.kind == "open_ended" and len(all_values) > open_ended_threshold:
        labels = tuple(v for v, _ in all_values)
        return [ChildSpec(value=open_ended_label(split.dimension, len(labels)), source="open_ended", values=labels, weight=float(len(labels)))]
    return [ChildSpec(value=v, source=s) for v, s in all_values]
