"""The values an LLM call is made of, and the protocol a transport implements.

``LLMRequest`` goes in, ``Completion`` comes out, ``UsageTotals`` adds them up over a run. A
``Transport`` makes the call itself (core/llm/transports/); ``LLMClient`` (core/llm/client.py) stands
in front of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .budget import Reservations

# Priorities at the client's concurrency gate: growing the tree goes before judging rows already
# written, which goes before writing more (a judged row is kept or rewritten at once, and progress shows
# kept rows, instead of every verdict waiting behind the whole generation queue).
PRIORITY_TREE = 0
PRIORITY_JUDGE = 1
PRIORITY_LEAF = 2

# A call's role, by its priority: what the run's usage and cost are broken down by (``UsageTotals.roles``).
# The tree's steps may have their own model (``tree_model``), the judge its own (``judge_model``); the rows
# are written by ``model``. A balance run's task inference is a tree step.
ROLES = ("tree", "rows", "judge")
_ROLE_OF = {PRIORITY_TREE: "tree", PRIORITY_JUDGE: "judge", PRIORITY_LEAF: "rows"}


def role_of(priority: int) -> str:
    """The role (``ROLES``) a call of ``priority`` plays."""
    return _ROLE_OF.get(priority, "rows")


@dataclass(frozen=True)
class LLMRequest:
    messages: list[dict[str, str]]
    slot: str  # identifies the call within the run: "<node>:<step>:<attempt>" or "<leaf>:gen:<slot>"
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    temperature: float = 0.8
    max_tokens: int = 1024
    seed: int | None = None
    priority: int = PRIORITY_TREE


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    tokens_in: int
    tokens_out: int
    cost: float | None = 0.0  # None: unknown for this model
    cached: bool = False


class Transport(Protocol):
    """Makes one call. Raises ``ProviderError`` (retrying cannot help) or ``TransientProviderError``
    (worth retrying with backoff), both from core/errors.py.

    Optional, both idempotent: ``async aclose()`` closes what the transport holds on the event loop it
    was called on (the http transport's session); ``close()`` releases what it holds synchronously (a
    Ray worker pool). The code base never probes for them: it calls ``close_transport`` (core/llm/lifecycle.py).
    """

    @property
    def model(self) -> str:
        """The model name the response cache keys on."""
        ...

    async def __call__(self, req: LLMRequest) -> Completion: ...


@dataclass
class RoleUsage:
    """One role's calls (``ROLES``): the model that answered them (the last one, if a resume changed it),
    and what they cost. Cache hits cost nothing and are not counted here."""

    model: str = ""
    requests: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    cost_known: bool = True

    @property
    def cost_usd(self) -> float | None:
        return self.cost if self.cost_known else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "requests": self.requests, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "cost": self.cost, "cost_known": self.cost_known}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RoleUsage:
        r = cls(model=d["model"] if isinstance(d.get("model"), str) else "", cost_known=bool(d.get("cost_known", True)))
        for k in ("requests", "tokens_in", "tokens_out"):
            if isinstance(d.get(k), int):
                setattr(r, k, d[k])
        if isinstance(d.get("cost"), (int, float)):
            r.cost = float(d["cost"])
        return r


@dataclass
class UsageTotals:
    requests: int = 0
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    cost_known: bool = True
    retries: int = 0
    errors: int = 0
    invalid: int = 0
    in_flight: int = 0
    extra: dict[str, int] = field(default_factory=dict)
    # an endpoint embedder's calls (core/quality/embed_endpoint.py): apart from the LLM calls above, except
    # that ``cost`` (and so the budget) includes ``embed_cost``, and ``retries`` / ``errors`` count them too
    embed_requests: int = 0
    embed_texts: int = 0  # texts sent to the endpoint (a text repeated within a call is sent once)
    embed_cache_hits: int = 0  # texts whose vector came from the run's cache: no call
    embed_tokens: int = 0
    embed_cost: float = 0.0
    # what the calls in flight hold against the budget (core/llm/budget.py): shared, like these counts, by
    # every client of the run and its endpoint embedder; never saved (nothing is in flight in a saved run)
    reserved: Reservations = field(default_factory=Reservations, compare=False, repr=False)
    # the same calls by role (``ROLES``: tree, rows, judge), each with its model: every call is in the totals
    # above and in one role here (an endpoint embedder's calls are in no role)
    roles: dict[str, RoleUsage] = field(default_factory=dict)

    def role(self, name: str, model: str) -> RoleUsage:
        """The running totals of role ``name``, answered by ``model``."""
        r = self.roles.get(name)
        if r is None:
            r = self.roles[name] = RoleUsage(model=model)
        elif r.model != model:
            r.model = model
        return r

    @property
    def cost_usd(self) -> float | None:
        return self.cost if self.cost_known else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "requests": self.requests, "cache_hits": self.cache_hits, "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out, "cost": self.cost, "cost_known": self.cost_known,
            "retries": self.retries, "errors": self.errors, "invalid": self.invalid,
        }
        if self.embed_requests or self.embed_cache_hits:
            d.update({
                "embed_requests": self.embed_requests, "embed_texts": self.embed_texts, "embed_cache_hits": self.embed_cache_hits,
                "embed_tokens": self.embed_tokens, "embed_cost": self.embed_cost,
            })
        if self.roles:
            d["roles"] = {k: r.to_dict() for k, r in self.roles.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UsageTotals:
        u = cls()
        for k in ("requests", "cache_hits", "tokens_in", "tokens_out", "retries", "errors", "invalid",
                  "embed_requests", "embed_texts", "embed_cache_hits", "embed_tokens"):
            if isinstance(d.get(k), int):
                setattr(u, k, d[k])
        for k in ("cost", "embed_cost"):
            if isinstance(d.get(k), (int, float)):
                setattr(u, k, float(d[k]))
        u.cost_known = bool(d.get("cost_known", True))
        roles = d.get("roles")
        if isinstance(roles, dict):
            u.roles = {k: RoleUsage.from_dict(v) for k, v in roles.items() if k in ROLES and isinstance(v, dict)}
        return u
