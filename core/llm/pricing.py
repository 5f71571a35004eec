"""What tokens cost: the prices a run's config gives (``prices``, ``--price-in`` / ``--price-out``), else
litellm's (local, offline) cost map. ``call_price`` is the one lookup every cost goes through (the estimate,
the TUI's form, the http transport's every call, an endpoint embedder, the budget's reservations), so
given prices win everywhere at once; ``litellm_price`` asks litellm's own calculator (models priced in
tiers by prompt size)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from .costmap import Tiered, batch_token_prices, token_prices
from .litellm_loader import load_litellm

# (tokens_in, tokens_out) -> USD, or None when the model is unpriced
Price = Callable[[int, int], "float | None"]


class CallPrice(Protocol):
    """``(tokens_in, tokens_out, cached_in=0) -> USD`` (None: unpriced); ``cached_in`` of the prompt
    tokens were served from the provider's prompt cache."""

    def __call__(self, tin: int, tout: int, cached: int = 0) -> float | None: ...


class PerMillion(Protocol):
    """A given price (core/config.py ``ModelPrice``): USD per million tokens."""

    @property
    def input(self) -> float: ...

    @property
    def output(self) -> float: ...


# model name -> its given price (a run's ``cfg.prices``)
Given = Mapping[str, PerMillion]


def given_price(model: str, prices: Given | None) -> CallPrice | None:
    """The price ``prices`` gives ``model`` (by its exact name), None when it gives none. Cached prompt
    tokens cost the input price: a given price says nothing of a provider's cache discount."""
    p = prices.get(model) if prices else None
    if p is None:
        return None
    p_in, p_out = p.input / 1e6, p.output / 1e6

    def price(tin: int, tout: int, cached: int = 0) -> float:
        return tin * p_in + tout * p_out

    return price


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


def call_price(model: str, prices: Given | None = None) -> CallPrice | None:
    """``price(tokens_in, tokens_out, cached_in=0) -> USD`` for pricing every call, or None when the
    model is unpriced. ``prices`` (a run's ``cfg.prices``) wins; else the same prices as ``litellm_price``
    (litellm's table), looked up once and read as data (core/llm/costmap.py): litellm is not imported,
    and its calculator (~0.1 ms a call) is not run. Models with tiered prices (by prompt size) keep
    litellm's calculator."""
    given = given_price(model, prices)
    if given is not None:
        return given
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


def batch_call_price(model: str, prices: Given | None = None) -> CallPrice | None:
    """Like ``call_price``, at the provider's batch prices (litellm's table); None when it has none. A
    price ``prices`` gives is the model's price through the batch API too: the user's word for what it costs."""
    given = given_price(model, prices)
    if given is not None:
        return given
    p = batch_token_prices(model)
    if p is None:
        return None

    def price(tin: int, tout: int, cached: int = 0) -> float:
        return tin * p.input + tout * p.output

    return price

