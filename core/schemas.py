"""JSON schemas for every step whose answer is parsed. Tight bounds (maxItems, maxLength)
keep grammar-constrained decoders from running away."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

LABEL_MAX = 60
# An answer of samples as JSON, beyond the fields' text: '{"samples": [' and its end, each sample's braces and
# comma, each field's quoted key, colon, quotes and comma, and the indentation of a pretty-printed answer.
ANSWER_OVERHEAD_CHARS = 32
SAMPLE_OVERHEAD_CHARS = 12
FIELD_OVERHEAD_CHARS = 16  # plus the field's name
SLACK_TOKENS = 32  # a fence or a sentence around the JSON (an endpoint without structured output), escapes


def _field_schema(max_chars: int, pattern: str | None) -> dict[str, Any]:
    if pattern:
        return {"type": "string", "pattern": pattern}
    return {"type": "string", "minLength": 1, "maxLength": max_chars}


def samples_schema(fields: tuple[str, ...], n: int, max_chars: int, patterns: dict[str, str] | None = None) -> dict[str, Any]:
    patterns = patterns or {}
    return {
        "type": "object",
        "properties": {
            "samples": {
                "type": "array",
                "minItems": n,  # ask for exactly n: small models otherwise stop after one
                "maxItems": n,
                "items": {
                    "type": "object",
                    "properties": {f: _field_schema(max_chars, patterns.get(f)) for f in fields},
                    "required": list(fields),
                    "additionalProperties": False,
                },
            }
        },
        "required": ["samples"],
        "additionalProperties": False,
    }


def supplement_schema(max_new: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["none", "complete", "open_ended"]},
            "values": {
                "type": "array",
                "maxItems": max(1, max_new),
                "items": {"type": "string", "minLength": 1, "maxLength": LABEL_MAX},
            },
        },
        "required": ["status", "values"],
        "additionalProperties": False,
    }


def chars_per_token(text: str) -> float:
    """How many characters of text like ``text`` a token holds, at the least, for sizing answers: English and
    code hold about 4 (3 leaves room for escapes and rare words); accented Latin scripts fewer; other scripts
    (CJK, Cyrillic, Devanagari...) can take a token per character."""
    if text.isascii():
        return 3.0
    if all(ord(ch) < 0x250 for ch in text):  # Latin-1 and Latin Extended
        return 2.0
    return 1.0


def samples_max_tokens(n: int, field_chars: Mapping[str, int], cap: int, per_token: float = 3.0) -> int:
    """The most tokens an answer of ``n`` samples can usefully take: every field at its length limit
    (``field_chars``: field -> characters; longer text is truncated or rejected, so tokens past it buy nothing),
    written as JSON, at ``per_token`` characters a token (``chars_per_token``), plus slack; at most ``cap``
    (the configured max_tokens). A call asks for no more, so a small model that runs away (repeats a field
    until the limit) stops near where a full answer would, not at ``cap``."""
    if n < 1 or not field_chars:
        return max(1, cap)
    per_sample = SAMPLE_OVERHEAD_CHARS + sum(max(0, chars) + len(name) + FIELD_OVERHEAD_CHARS for name, chars in field_chars.items())
    tokens = math.ceil((ANSWER_OVERHEAD_CHARS + n * per_sample) / max(per_token, 0.5)) + SLACK_TOKENS
    return max(1, min(cap, tokens))
