"""Expected calls, tokens and cost of a run before anything is spent (pure: prices come in as a function,
e.g. core/llm/pricing.py's ``call_price``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .allocate import calls_for

if TYPE_CHECKING:
    from .config import RunConfig
    from .llm.pricing import Price
    from .prompts import Prompts
    from .taxonomy import GivenShape


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
    judge_calls: int = 0  # --judge: the rows of each generation call, judge_batch to a call
    tree_tokens_in: int = 0  # the part of tokens_in / tokens_out spent growing the tree (interactive even with --batch)
    tree_tokens_out: int = 0
    judge_tokens_in: int = 0  # the part spent judging rows (--judge)
    judge_tokens_out: int = 0
    given_splits: int = 0  # splits a reused tree (--tree-from) gives: no calls
    roles: tuple[tuple[str, float | None], ...] = ()  # (role, USD) for tree, rows and judge, when priced by role

    def role_tokens(self, role: str) -> tuple[int, int]:
        """(tokens in, tokens out) of one role's calls: ``tree``, ``rows`` or ``judge``."""
        if role == "tree":
            return self.tree_tokens_in, self.tree_tokens_out
        if role == "judge":
            return self.judge_tokens_in, self.judge_tokens_out
        return (self.tokens_in - self.tree_tokens_in - self.judge_tokens_in, self.tokens_out - self.tree_tokens_out - self.judge_tokens_out)

    def batch_cost(self, price: Price, batch_price: Price, tree_price: Price | None = None) -> float | None:
        """The cost with ``--batch``: the tree's calls at ``tree_price`` (default ``price``: they are interactive),
        the rest at ``batch_price``."""
        a = (tree_price or price)(self.tree_tokens_in, self.tree_tokens_out)
        b = batch_price(self.tokens_in - self.tree_tokens_in, self.tokens_out - self.tree_tokens_out)
        return None if a is None or b is None else a + b

    @property
    def calls(self) -> int:
        return self.tree_calls + self.synth_calls + self.judge_calls


def leaf_calls(size: int, leaves: int, samples_per_call: int) -> int:
    """Generation calls when ``size`` samples are split evenly over ``leaves``: each leaf asks for
    its own quota, so a leaf with fewer samples than ``samples_per_call`` still costs a whole call
    (with many leaves this exceeds size / samples_per_call)."""
    leaves = max(1, min(leaves, size)) if size > 0 else 1
    base, extra = divmod(max(0, size), leaves)
    return extra * calls_for(base + 1, samples_per_call) + (leaves - extra) * calls_for(base, samples_per_call)


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def _grow(levels: int, fanout: float, size: float) -> tuple[int, float]:
    """(internal nodes, leaves) of a tree grown ``levels`` deep at ``fanout`` for ``size`` rows: a level at
    least as wide as its rows is not split further."""
    internal, level = 0, 1.0
    for _d in range(levels):
        if level >= size:
            break
        internal += int(round(level))
        level *= fanout
    return internal, min(level, max(1.0, size))


def estimate(cfg: RunConfig, prompts: Prompts | None = None, fanout: float | None = None, retry_rate: float = 0.15,
             price: Price | None = None, given: GivenShape | None = None, tree_price: Price | None = None,
             judge_price: Price | None = None) -> Estimate:
    """Model: every node splits into ``fanout`` children (default: half of max_values, at
    least 2) until depth, or until quotas reach zero; each expansion makes 3 calls; leaves
    make ceil(quota / samples_per_call) calls each (``leaf_calls``); ``retry_rate`` extra calls for invalid answers.
    ``given``: the shape of a reused tree (core/taxonomy.py ``given_shape``): its splits cost nothing, its open
    values grow on to the depth. ``price(tokens_in, tokens_out) -> USD | None`` prices the rows' calls, and
    every call unless ``tree_price`` (the tree's steps) or ``judge_price`` (the judge's) is given; given either,
    ``roles`` has the cost of each role.
    """
    f = fanout or max(2.0, cfg.max_values / 2)
    if given is None:
        internal, leaves = _grow(cfg.depth, f, float(cfg.size))
    else:
        ends = max(1, len(given.open) + given.leaves)
        share = cfg.size / ends  # rows an end of the given tree gets
        internal, leaves = 0, float(given.leaves)
        for d in given.open:
            i, n = _grow(max(0, cfg.depth - d), f, share)
            internal += i
            leaves += n
        leaves = min(leaves, float(cfg.size))
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
    tree_in = internal * (piv_in + cls_in + piv_in)
    tree_out = internal * (cfg.pivots * field_tokens + 20 * cfg.pivots + 15 * cfg.max_values)
    tin = tree_in + synth_calls * gen_in
    tout = tree_out + synth_calls * cfg.samples_per_call * field_tokens
    judge_calls = judge_in = judge_out = 0
    if cfg.judge:  # every row read once (rows the judge fails are written and judged again: retry_rate)
        judge_calls = synth_calls * math.ceil(cfg.samples_per_call / cfg.judge_batch)
        rows_per_call = min(cfg.samples_per_call, cfg.judge_batch)
        judge_in = judge_calls * (gen_in + rows_per_call * field_tokens)
        judge_out = judge_calls * rows_per_call * (40 + 8 * cfg.depth)
        tin += judge_in
        tout += judge_out
    k = 1 + retry_rate
    tin, tout = int(tin * k), int(tout * k)
    est = Estimate(internal, leaves_i, tree_calls, synth_calls, tin, tout, None, f, judge_calls, int(tree_in * k), int(tree_out * k),
                   int(judge_in * k), int(judge_out * k), given.splits if given is not None else 0)
    if tree_price is None and judge_price is None:
        return replace(est, cost_usd=price(tin, tout) if price else None)
    roles: list[tuple[str, float | None]] = []
    for role, p in (("tree", tree_price or price), ("rows", price), ("judge", judge_price or price)):
        t_in, t_out = est.role_tokens(role)
        if role == "judge" and not cfg.judge:
            continue
        roles.append((role, p(t_in, t_out) if p else None))
    costs = [c for _r, c in roles]
    total = None if any(c is None for c in costs) else sum(c for c in costs if c is not None)
    return replace(est, cost_usd=total, roles=tuple(roles))


def estimate_balance(cfg: RunConfig, n_rows: int, route: str, route_batch: int, target: int, synth_share: float = 0.25,
                     fanout: float | None = None, retry_rate: float = 0.15, price: Price | None = None) -> Estimate:
    """A balance run: expansions make 2 calls (pivots come from the data); ``llm`` routing labels
    ``route_batch`` rows per call at every level; a ``synth_share`` of the target is assumed to be
    synthesised (the real share is known only once rows are routed)."""
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


UNPRICED = "model not in litellm's price table: give --price-in and --price-out, USD per million tokens"


def _shape_lines(cfg: RunConfig, est: Estimate, calls_detail: str) -> list[str]:
    from .progress import fmt_cost

    return [
        f"tree:           depth {cfg.depth}, ~{est.internal_nodes} expansions, ~{est.leaves} leaves (fan-out {est.assumed_fanout:g})",
        f"calls:          ~{est.calls:,} ({calls_detail})",
        f"tokens:         ~{est.tokens_in:,} in, ~{est.tokens_out:,} out",
        f"cost:           ~{fmt_cost(est.cost_usd)}" + ("" if est.cost_usd is not None else f" ({UNPRICED})"),
    ]


def estimate_lines(cfg: RunConfig, fanout: float | None = None) -> list[str]:
    """What ``treesynth estimate`` prints for a run of ``cfg``: its task and model(s), tree (a reused one's
    splits cost nothing), calls, tokens and cost at the config's prices or litellm's, by role when the tree or
    the judge has its own model, and the cost with ``--batch`` where the model has batch prices."""
    from .llm.pricing import batch_call_price, call_price
    from .progress import fmt_cost
    from .prompts import Prompts

    price = call_price(cfg.model, cfg.prices)
    tree_model = cfg.tree_role().model if cfg.has_tree_role else None
    judge_model = cfg.judge_model if cfg.judge and cfg.judge_model and cfg.judge_model != cfg.model else None
    given = None
    if cfg.tree_from:
        from .taxonomy import given_shape
        from .treesource import load_given_tree

        given = given_shape(load_given_tree(cfg.tree_from, task=cfg.task, fields=cfg.fields, depth=cfg.depth)[1])
    est = estimate(
        cfg, Prompts(cfg), fanout=fanout, price=price, given=given,
        tree_price=call_price(tree_model, cfg.prices) if tree_model else None,
        judge_price=call_price(judge_model, cfg.prices) if judge_model else None,
    )
    judging = f", {est.judge_calls:,} judging them" if est.judge_calls else ""
    lines = [f"task:           {cfg.task}", f"model:          {cfg.model}" + (" (rows)" if tree_model else "")]
    if tree_model:
        lines.append(f"tree model:     {tree_model}" + (f" at {cfg.tree_role().api_base}" if cfg.tree_role().api_base else ""))
    if judge_model:
        lines.append(f"judge model:    {judge_model}")
    growing = f"{est.tree_calls:,} growing the tree"
    if given is not None:
        growing += f" (its {given.splits:,} given split(s) cost none)"
    lines += _shape_lines(cfg, est, f"{growing}, {est.synth_calls:,} generating {cfg.size:,} samples{judging}")
    if est.roles:
        models = {"tree": tree_model or cfg.model, "rows": cfg.model, "judge": judge_model or cfg.model}
        lines.append("cost by role:   " + ", ".join(f"{r} ~{fmt_cost(c)} ({models[r]})" for r, c in est.roles))
    batch_price = batch_call_price(cfg.model, cfg.prices)
    if price is not None and batch_price is not None:
        tree_price = call_price(tree_model, cfg.prices) if tree_model else None
        if tree_model and tree_price is None:
            lines.append("with --batch:   the tree model has no price")
        else:
            lines.append(f"with --batch:   ~{fmt_cost(est.batch_cost(price, batch_price, tree_price))} (the tree's calls interactive, the rest at batch prices)"
                         + (" (chosen)" if cfg.batch else ""))
    elif cfg.batch:
        lines.append("with --batch:   no batch prices for this model in litellm's table")
    return lines


def balance_estimate_lines(cfg: RunConfig, n_rows: int, source: str, route: str, route_batch: int, size: int | None = None,
                           target_per_leaf: int | None = None, fanout: float | None = None) -> list[str]:
    """What ``treesynth estimate --balance`` prints for balancing ``n_rows`` rows of ``source``: ``size`` rows
    after balancing, else ``target_per_leaf`` times the leaves expected, else as many as there are."""
    from .llm.pricing import call_price

    leaves_guess = max(1, int(round(min(float(n_rows), max(2.0, cfg.max_values / 2) ** cfg.depth))))
    target = size or (target_per_leaf * leaves_guess if target_per_leaf else n_rows)
    est = estimate_balance(cfg, n_rows, route, route_batch, target, fanout=fanout, price=call_price(cfg.model, cfg.prices))
    return [f"balance:        {n_rows:,} rows of {source} ({route} routing)",
            *_shape_lines(cfg, est, f"{est.tree_calls:,} growing and routing, ~{est.synth_calls:,} synthesising, assuming a quarter of {target:,} rows are new")]
