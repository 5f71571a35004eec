"""The run's row embedder, as its config names it (``embedder``; core/embedder_choice.py): the local
model (the default, or a model folder), an OpenAI-compatible endpoint, or Ray."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..embedder_choice import parse_embedder
from ..errors import ConfigError
from .embedder import LocalRowEmbedder, RowEmbedder, SyncEmbed

if TYPE_CHECKING:
    from ..cache import ResponseCache
    from ..config import RunConfig
    from ..llm import LLMClient


def make_row_embedder(
    cfg: RunConfig, *, client: LLMClient | None = None, cache: ResponseCache | None = None, local: SyncEmbed | None = None,
    **endpoint_options: Any,
) -> RowEmbedder:
    """``cfg.embedder``'s embedder. ``client``: the run's LLM client, whose usage, budget, pause/stop gate,
    retries and response cache an endpoint embedder shares (``cache`` overrides its cache). ``local``: the
    plain callable a local embedder wraps (default: ``LazyEmbedder`` of the configured model, loaded on
    first use). ``endpoint_options``: passed to ``EndpointRowEmbedder`` (batch_rows, parallel, price, ...)."""
    try:
        choice = parse_embedder(cfg.embedder)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if choice.kind == "local":
        if local is None:
            from ..lazy_embed import LazyEmbedder

            local = LazyEmbedder(choice.path)
        return LocalRowEmbedder(local, model=choice.model)
    if choice.kind == "endpoint":
        from .embed_endpoint import EndpointRowEmbedder

        opts: dict[str, Any] = {
            "timeout": cfg.timeout, "max_retries": cfg.max_retries, "budget": cfg.budget, "read_cache": cfg.cache, "prices": cfg.prices,
        }
        if client is not None:
            c = client
            opts.update(
                usage=c.usage, gate=c.gate, on_usage=lambda: c.on_usage(), max_retries=c.max_retries, cache=c.cache,
                read_cache=c.read_cache,
            )
        if cache is not None:
            opts["cache"] = cache
        opts.update(endpoint_options)
        return EndpointRowEmbedder(choice.model, cfg.embed_api_base, **opts)
    from .embed_ray import RayRowEmbedder

    return RayRowEmbedder(choice.model, choice.path, address=cfg.ray_address, workers=cfg.ray_workers)
