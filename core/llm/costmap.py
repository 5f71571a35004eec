"""Token prices read as data from litellm's bundled cost map (``model_prices_and_context_window_backup.json``),
located through the import system without importing litellm (3.5-4.7 s and ~210 MB): the native http
transport prices ``openai/`` and ``hosted_vllm/`` calls from it, so a run on that path starts without
litellm. The lookup follows litellm's for these providers (the model name with, then without, its
provider prefix). A model whose prices depend on the prompt size (``*_above_*_tokens`` keys) is not
answered here: the caller falls back to litellm's own calculator."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

COST_MAP_FILE = "model_prices_and_context_window_backup.json"


@dataclass(frozen=True)
class TokenPrices:
    input: float  # USD per prompt token
    output: float  # USD per completion token
    cached_input: float  # USD per prompt token served from the provider's prompt cache


class Tiered(Exception):
    """The model's prices depend on the prompt size: use litellm's calculator."""


@cache
def _cost_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / COST_MAP_FILE
        if p.is_file():
            import orjson

            doc = orjson.loads(p.read_bytes())
            return doc if isinstance(doc, dict) else {}
    return {}


def _entry(model: str) -> dict[str, Any] | None:
    table = _cost_map()
    for key in (model, model.split("/", 1)[1] if "/" in model else None):
        if key and isinstance(table.get(key), dict):
            return table[key]
    return None


def token_prices(model: str) -> TokenPrices | None:
    """The model's per-token prices, None when the map has none (an unpriced or self-hosted model).
    Raises ``Tiered`` when they depend on the prompt size."""
    e = _entry(model)
    if e is None:
        return None
    p_in, p_out = e.get("input_cost_per_token"), e.get("output_cost_per_token")
    if not isinstance(p_in, (int, float)) or not isinstance(p_out, (int, float)):
        return None
    if any("_above_" in k and k.endswith("_tokens") for k in e):
        raise Tiered(model)
    cached = e.get("cache_read_input_token_cost")
    return TokenPrices(float(p_in), float(p_out), float(cached) if isinstance(cached, (int, float)) else float(p_in))


def batch_token_prices(model: str) -> TokenPrices | None:
    """The model's per-token prices through the provider's batch API (``*_cost_per_token_batches``;
    half the interactive price at OpenAI), None when the map has none."""
    e = _entry(model)
    if e is None:
        return None
    p_in, p_out = e.get("input_cost_per_token_batches"), e.get("output_cost_per_token_batches")
    if not isinstance(p_in, (int, float)) or not isinstance(p_out, (int, float)):
        return None
    return TokenPrices(float(p_in), float(p_out), float(p_in))

