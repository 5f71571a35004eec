"""Tolerant parsing of LLM output. LLM output is untrusted text: parse, never evaluate."""

from __future__ import annotations

import json
import re
from typing import Any

from .text import clean_text

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)


class ParseError(ValueError):
    """The answer holds no usable JSON."""


def parse_json(text: str | None) -> Any:
    """Return the first JSON value in ``text``.

    Tries, in order: the whole text, fenced code blocks, then the first balanced
    object or array found by scanning. Raises ParseError if none parses.
    """
    if text is None:
        raise ParseError("empty answer")
    s = str(text).strip()
    if not s:
        raise ParseError("empty answer")
    try:
        return json.loads(s)
    except (ValueError, RecursionError):
        pass
    for m in _FENCE.finditer(s):
        try:
            return json.loads(m.group(1).strip())
        except (ValueError, RecursionError):
            continue
    dec = json.JSONDecoder()
    tries = 0
    for i, ch in enumerate(s):
        if ch in "{[":
            tries += 1
            if tries > 50:  # bounded: hostile input cannot make this quadratic forever
                break
            try:
                obj, _ = dec.raw_decode(s, i)
                return obj
            except (ValueError, RecursionError):
                continue
    raise ParseError("no JSON object found in the answer")


def salvage_items(text: str | None, max_items: int = 100) -> list[Any]:
    """The complete items of the first JSON array in an answer cut off by the token limit:
    ``{"samples": [{...}, {...}, {"quest`` gives the two complete objects. Each item is whole JSON
    (its closing brace was written), so it is as good as in an answer that ended."""
    if not text:
        return []
    s = str(text)
    start = s.find("[")
    if start < 0:
        return []
    dec = json.JSONDecoder()
    items: list[Any] = []
    i = start + 1
    n = len(s)
    while len(items) < max_items:
        while i < n and s[i] in " \t\r\n,":
            i += 1
        if i >= n or s[i] == "]":
            break
        try:
            obj, i = dec.raw_decode(s, i)
        except (ValueError, RecursionError):
            break
        items.append(obj)
    return items


def _as_text(v: Any) -> str | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return None


def parse_samples(
    obj: Any, fields: tuple[str, ...] | list[str], *, max_items: int, max_chars: int, patterns: dict[str, Any] | None = None,
) -> tuple[list[dict[str, str]], int]:
    """Extract samples with every field a non-empty string.

    Accepts ``{"samples": [...]}``, a bare list, or a single object. With one field a
    sample may be a bare string. ``patterns`` (field -> compiled regex): a sample whose field,
    whitespace collapsed, does not match is rejected. Returns (valid samples, number rejected).
    """
    fields = tuple(fields)
    if patterns:
        kept, bad = _parse(obj, fields, max_items, max_chars)
        good = [s for s in kept if all(rx.search(" ".join(s[f].split())) for f, rx in patterns.items() if f in s)]
        bad += len(kept) - len(good)
        bad += max(0, len(good) - max_items)
        return good[:max_items], bad
    out, rejected = _parse(obj, fields, max_items, max_chars)
    rejected += max(0, len(out) - max_items)
    return out[:max_items], rejected


def _parse(obj: Any, fields: tuple[str, ...], max_items: int, max_chars: int) -> tuple[list[dict[str, str]], int]:
    if isinstance(obj, dict):
        items = None
        for key in ("samples", "items", "data", "examples", "pivots"):
            if isinstance(obj.get(key), list):
                items = obj[key]
                break
        if items is None:
            items = [obj]
    elif isinstance(obj, list):
        items = obj
    else:
        raise ParseError("expected a list of samples")
    out: list[dict[str, str]] = []
    rejected = 0
    for it in items[: max_items * 2]:
        if len(fields) == 1 and not isinstance(it, dict):
            t = _as_text(it)
            if t is None:
                rejected += 1
                continue
            out.append({fields[0]: t[:max_chars]})
            continue
        if not isinstance(it, dict):
            rejected += 1
            continue
        sample: dict[str, str] = {}
        for f in fields:
            t = _as_text(it.get(f))
            if t is None:
                break
            sample[f] = t[:max_chars]
        else:
            out.append(sample)
            continue
        rejected += 1
    return out, rejected


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _scrub(obj: Any) -> Any:
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, list):
        return [_scrub(x) for x in obj]
    if isinstance(obj, dict):
        return {_scrub(k) if isinstance(k, str) else k: _scrub(v) for k, v in obj.items()}
    return obj


def parse_answer(text: str | None) -> Any:
    """parse_json, minus lone surrogates that JSON escapes (\\ud800) can smuggle in: they cannot be
    written as UTF-8, so one would crash the journal or samples.jsonl. A model's answer made safe to keep:
    the engine's steps and the judge read every answer with it."""
    obj = parse_json(text)
    if text and "\\u" in text and _SURROGATE_ESCAPE.search(text):
        obj = _scrub(obj)
    return obj
