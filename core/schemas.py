"""JSON schemas for every step whose answer is parsed. Tight bounds (maxItems, maxLength)
keep grammar-constrained decoders from running away."""

from __future__ import annotations

from typing import Any

LABEL_MAX = 60


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
