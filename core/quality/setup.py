"""Build a run's quality gates from its config: the validators it declares, semantic dedup when it
has a threshold, the judge when it asks for one (on its own model and client when ``judge_model``
names another model; that client shares the run's cache, usage and budget)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..llm import LLMClient
from ..llm.budget import reservation_price
from ..rundir import ROW_VECTORS
from .gates import QualityGates
from .judge import Judge

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..llm.pricing import CallPrice
    from ..prompts import Prompts
    from ..store import RunStore
    from .embedder import RowEmbedder


def role_client(cfg: RunConfig, client: LLMClient, transport: Any, price: CallPrice | None, adapt_timeout_s: float | None = None) -> LLMClient:
    """A client for another role's model (the tree's, the judge's): its own transport, concurrency limit,
    negotiation and outage; ``client``'s cache, usage and budget (so one budget covers every role)."""
    return LLMClient(
        transport, concurrency=cfg.concurrency, rpm=cfg.rpm, tpm=cfg.tpm, max_retries=cfg.max_retries,
        budget=cfg.budget, cache=client.cache, read_cache=cfg.cache, usage=client.usage, outage_timeout_s=cfg.outage_timeout,
        price=price, adapt_timeout_s=adapt_timeout_s,
    )


def judge_client(cfg: RunConfig, client: LLMClient, make_transport: Callable[[RunConfig], Any]) -> LLMClient:
    """The generation client, or one for ``cfg.judge_model`` sharing its cache, usage and budget."""
    if not cfg.judge_model or cfg.judge_model == cfg.model:
        return client
    transport = make_transport(cfg.model_copy(update={"model": cfg.judge_model}))
    return role_client(cfg, client, transport, reservation_price(cfg, cfg.judge_model))


def build_gates(
    cfg: RunConfig, store: RunStore, client: LLMClient, prompts: Prompts, embedder: RowEmbedder | None,
    make_transport: Callable[[RunConfig], Any], dedup_text: Callable[[dict[str, Any]], str] | None = None,
    dedup_seed: Callable[[], Any] | None = None,
) -> QualityGates:
    """``embedder``: what makes dedup's vectors (the run's); ``dedup_text``: what of a row semantic dedup
    embeds (default: all its fields); ``dedup_seed``: vectors every new row is also compared with (a
    balance run's real rows)."""
    dedup = None
    if cfg.dedup_threshold and embedder is not None:
        from ..text import sample_plain_text
        from .dedup import SemanticDedup

        dedup = SemanticDedup(
            embedder.as_sync(), cfg.dedup_threshold, store.p(ROW_VECTORS), lambda: store.iter_samples(stored=True),
            text_of=dedup_text or sample_plain_text, seed=dedup_seed, expected_rows=cfg.size,
        )
    judge = None
    if cfg.judge:
        jc = judge_client(cfg, client, make_transport)
        judge = Judge(jc, prompts, cfg.fields, cfg.judge_model or cfg.model, cfg.judge_batch, cfg.validation_retries, cfg.seed)
    return QualityGates(validators=tuple(cfg.validators), dedup=dedup, embedder=embedder, judge=judge)
