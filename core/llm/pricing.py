"""What tokens cost, from litellm's (local, offline) cost map: a run's estimate prices its token
counts with ``litellm_price``; the http transport prices every call with ``call_price``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .transports.litellm import load_litellm

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
    model is unpriced. The same prices as ``litellm_price`` (litellm's table), but looked up once:
    litellm's calculator costs ~0.1 ms per call. Models with tiered prices (by prompt size) keep it."""
    price = litellm_price(model)
    if price(1000, 1000) is None:
        return None

    def slow(tin: int, tout: int, cached: int = 0) -> float | None:
        return price(tin, tout)

    try:
        info = load_litellm().get_model_info(model)
        p_in, p_out = float(info["input_cost_per_token"]), float(info["output_cost_per_token"])
        cached_cost = info.get("cache_read_input_token_cost")
        p_cached = float(cached_cost) if isinstance(cached_cost, (int, float)) else p_in
    except Exception:  # noqa: BLE001 - priced, but not per token in the table: keep litellm's calculator
        return slow
    for a, b in ((1234, 567), (250_000, 30_000)):
        c = price(a, b)
        if c is None or abs(c - (a * p_in + b * p_out)) > 1e-6 * max(c, 1e-12):
            return slow  # not linear (prices by prompt size)

    def fast(tin: int, tout: int, cached: int = 0) -> float:
        return (tin - cached) * p_in + cached * p_cached + tout * p_out

    return fast
