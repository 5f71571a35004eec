"""What tokens cost, from litellm's (local, offline) cost map: ``call_price`` reads it as data (the
estimate, the TUI's form, the http transport's every call); ``litellm_price`` asks litellm's own
calculator (models priced in tiers by prompt size)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .costmap import Tiered, batch_token_prices, token_prices
from .litellm_loader import load_litellm

# (tokens_in, tokens_out) -> USD, or None when the model is unpriced
Price = Callable[[int, int], "float | None"]


class CallPrice(Protocol):
    """``(tokens_in, tokens_out, cached_in=0) -> USD`` (None: unpriced); ``cached_in`` of the prompt
    tokens were served from the provider's prompt cache."""

    def __call__(self, tin: int, tout: int, cached: int = 0) -> float | None: ...


def litellm_price(model: str) -> Price:
    """A price function from litellm's (local) cost map; it answers None when the model is unpriced."""
    if model.startswith("local/"):
        return lambda tin, tout: 0.0
    litellm = load_litellm()

    def price(tin: int, tout: int) -> float | None:
        try:
            a, b = litellm.cost_per_token(model=model, prompt_tokens=tin, completion_tokens=tout)
            return float(a + b)
        except Exception:  # noqa: BLE001 - unpriced model
            return None

    return price


def call_price(model: str) -> CallPrice | None:
    """``price(tokens_in, tokens_out, cached_in=0) -> USD`` for pricing every call, or None when the
    model is unpriced. The same prices as ``litellm_price`` (litellm's table), looked up once and read
    as data (core/llm/costmap.py): litellm is not imported, and its calculator (~0.1 ms a call) is not
    run. Models with tiered prices (by prompt size) keep litellm's calculator."""
    if model.startswith("local/"):
        return lambda tin, tout, cached=0: 0.0
    try:
        p = token_prices(model)
    except Tiered:
        price = litellm_price(model)

        def slow(tin: int, tout: int, cached: int = 0) -> float | None:
            return price(tin, tout)

        return slow
    if p is None:
        return None

    def fast(tin: int, tout: int, cached: int = 0) -> float:
        return (tin - cached) * p.input + cached * p.cached_input + tout * p.output

    return fast


def batch_call_price(model: str) -> CallPrice | None:
    """Like ``call_price``, at the provider's batch prices (litellm's table); None when it has none."""
    p = batch_token_prices(model)
    if p is None:
        return None

    def price(tin: int, tout: int, cached: int = 0) -> float:
        return tin * p.input + tout * p.output

    return price

