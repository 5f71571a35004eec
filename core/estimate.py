"""Expected calls, tokens and cost of a run before anything is spent (pure, plus litellm's price table)."""

from __future__ import annotations

from dataclasses import dataclass

from .allocate import calls_for


@dataclass(frozen=True)
class Estimate:
    internal_nodes: int
    leaves: int
    tree_calls: int
    synth_calls: int
    tokens_in: int
    tokens_out: int
    cost_usd: float | None
    assumed_fanout: float

    @property
    def calls(self) -> int:
        return self.tree_calls + self.synth_calls


def leaf_calls(size: int, leaves: int, samples_per_call: int) -> int:
    """Generation calls when ``size`` samples are split evenly over ``leaves``: each leaf asks for
    its own quota, so a leaf with fewer samples than ``samples_per_call`` still costs a whole call
    (with many leaves this exceeds size / samples_per_call)."""
    leaves = max(1, min(leaves, size)) if size > 0 else 1
    base, extra = divmod(max(0, size), leaves)
    return extra * calls_for(base + 1, samples_per_call) + (leaves - extra) * calls_for(base, samples_per_call)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def estimate(cfg, prompts=None, fanout: float | None = None, retry_rate: float = 0.15, price=None) -> Estimate:
    """Model: every node splits into ``fanout`` children (default: half of max_values, at
    least 2) until depth, or until quotas reach zero; each expansion makes 3 calls; leaves
    make ceil(quota / samples_per_call) calls each (``leaf_calls``); ``retry_rate`` extra calls for invalid answers.
    ``price(tokens_in, tokens_out) -> USD | None``.
    """
    f = fanout or max(2.0, cfg.max_values / 2)
    internal, level, leaves = 0, 1.0, 0.0
    for _d in range(cfg.depth):
        if level >= cfg.size:
            break
        internal += int(round(level))
        level *= f
    leaves = min(level, float(cfg.size))
    leaves_i = max(1, int(round(leaves)))
    tree_calls = int(round(internal * 3 * (1 + retry_rate)))
    synth_calls = int(round(leaf_calls(cfg.size, leaves_i, cfg.samples_per_call) * (1 + retry_rate)))
    field_tokens = 60 * len(cfg.fields)
    if prompts is not None:
        path = [{"dimension": "dimension name", "value": "attribute value"}] * cfg.depth
        gen_in = _tokens(prompts.system + prompts.generate(path, cfg.samples_per_call)[1]["content"])
        piv_in = _tokens(prompts.system + prompts.pivots(path[:-1], cfg.pivots)[1]["content"])
    else:
        gen_in, piv_in = 250, 250
    cls_in = piv_in + cfg.pivots * field_tokens
    tin = internal * (piv_in + cls_in + piv_in) + synth_calls * gen_in
    tout = internal * (cfg.pivots * field_tokens + 20 * cfg.pivots + 15 * cfg.max_values) + synth_calls * cfg.samples_per_call * field_tokens
    tin, tout = int(tin * (1 + retry_rate)), int(tout * (1 + retry_rate))
    cost = price(tin, tout) if price else None
    return Estimate(internal, leaves_i, tree_calls, synth_calls, tin, tout, cost, f)


def litellm_price(model: str):
    """A price function from litellm's (local) cost map, or None if the model is unpriced."""
    if model.startswith("local/"):
        return lambda tin, tout: 0.0
    from .llm import load_litellm

    litellm = load_litellm()

    def price(tin: int, tout: int) -> float | None:
        try:
            a, b = litellm.cost_per_token(model=model, prompt_tokens=tin, completion_tokens=tout)
            return float(a + b)
        except Exception:  # noqa: BLE001 - unpriced model
            return None

    return price


def call_price(model: str):
    """``price(tokens_in, tokens_out, cached_in=0) -> USD`` for pricing every call, or None when the
    model is unpriced. The same prices as ``litellm_price`` (litellm's table), but looked up once:
    litellm's calculator costs ~0.1 ms per call. Models with tiered prices (by prompt size) keep it."""
    price = litellm_price(model)
    if price(1000, 1000) is None:
        return None

    def slow(tin: int, tout: int, cached: int = 0) -> float | None:
        return price(tin, tout)

    try:
        from .llm import load_litellm

        info = load_litellm().get_model_info(model)
        p_in, p_out = float(info["input_cost_per_token"]), float(info["output_cost_per_token"])
        p_cached = info.get("cache_read_input_token_cost")
        p_cached = float(p_cached) if isinstance(p_cached, (int, float)) else p_in
    except Exception:  # noqa: BLE001 - priced, but not per token in the table: keep litellm's calculator
        return slow
    for a, b in ((1234, 567), (250_000, 30_000)):
        c = price(a, b)
        if c is None or abs(c - (a * p_in + b * p_out)) > 1e-6 * max(c, 1e-12):
            return slow  # not linear (prices by prompt size)

    def fast(tin: int, tout: int, cached: int = 0) -> float:
        return (tin - cached) * p_in + cached * p_cached + tout * p_out

    return fast


def estimate_balance(cfg, n_rows: int, route: str, route_batch: int, target: int, synth_share: float = 0.25,
                     fanout: float | None = None, retry_rate: float = 0.15, price=None) -> Estimate:
    """A balance run: expansions make 2 calls (pivots come from the data); ``llm`` routing labels
    ``route_batch`` rows per call at every level; a ``synth_share`` of the target is assumed to be
    synthesised (the real share is known only once rows are routed)."""
    import math

    f = fanout or max(2.0, cfg.max_values / 2)
    internal, level = 0, 1.0
    for _d in range(cfg.depth):
        if level >= n_rows:
            break
        internal += int(round(level))
        level *= f
    leaves = max(1, int(round(min(level, float(n_rows)))))
    levels = min(cfg.depth, max(1, math.ceil(math.log(max(n_rows, 2), f))))
    route_calls = levels * math.ceil(n_rows / max(1, route_batch)) if route == "llm" else 0
    tree_calls = int(round((internal * 2 + route_calls) * (1 + retry_rate)))
    synth = int(target * synth_share)
    synth_calls = int(round(math.ceil(synth / cfg.samples_per_call) * (1 + retry_rate)))
    field_tokens = 60 * len(cfg.fields)
    tin = internal * 2 * (250 + cfg.pivots * field_tokens) + route_calls * (250 + route_batch * field_tokens) + synth_calls * (250 + 3 * field_tokens)
    tout = internal * (20 * cfg.pivots + 15 * cfg.max_values) + route_calls * 4 * route_batch + synth_calls * cfg.samples_per_call * field_tokens
    tin, tout = int(tin * (1 + retry_rate)), int(tout * (1 + retry_rate))
    return Estimate(internal, leaves, tree_calls, synth_calls, tin, tout, price(tin, tout) if price else None, f)
