"""A model's answer made safe to keep: parsed JSON without lone surrogates."""

from __future__ import annotations

import re
from typing import Any

from ..llm import clean_text
from ..parsing import parse_json

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


class Stale(Exception):
    """The node was pruned, reset or renamed while a call was in flight: drop the answer."""


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
    written as UTF-8, so one would crash the journal or samples.jsonl."""
    obj = parse_json(text)
    if text and "\\u" in text and _SURROGATE_ESCAPE.search(text):
        obj = _scrub(obj)
    return obj
