"""``--batch``: the batch transport for a run's config, beside its interactive transport.

``openai/`` models on the native http transport go through OpenAI's Files + Batches routes at their
endpoint; ``anthropic/`` models through Anthropic's Message Batches (key: ``ANTHROPIC_API_KEY``;
``--api-base`` as litellm takes it). A judge model (``--judge-model``) gets its own batch transport
when its provider has a batch API, sharing the run's ``Ledger``; otherwise its calls stay interactive.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..pricing import batch_call_price, call_price
from .transport import BatchTransport, Ledger

if TYPE_CHECKING:
    from ...config import RunConfig
    from ..types import UsageTotals
    from .api import BatchAPI

# calls the engine may hold in flight in batch mode: they wait in batches, not on connections
BATCH_IN_FLIGHT = 50_000


def batch_api(cfg: RunConfig, interactive: Any) -> BatchAPI:
    """The provider's batch API for ``cfg.model``; a ``ConfigError`` (one line) when it has none here."""
    from ..transports.openai_http import OpenAIHTTPTransport

    if cfg.model.startswith("anthropic/") and cfg.executor == "local":
        from .anthropic_api import AnthropicBatchAPI

        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key and not cfg.api_base:
            raise ConfigError("--batch with an anthropic/ model needs ANTHROPIC_API_KEY in the environment")
        return AnthropicBatchAPI(cfg.model, cfg.api_base, key, timeout_s=max(cfg.timeout, 120.0))
    if isinstance(interactive, OpenAIHTTPTransport):
        api: BatchAPI = interactive.batch_api()
        return api
    raise ConfigError(
        f"--batch needs an openai/ model on the http transport (OpenAI's batch API, or an endpoint with the same routes) "
        f"or an anthropic/ model (Message Batches); {cfg.model!r} with --executor {cfg.executor} and --transport {cfg.transport} is neither"
    )


def batch_transport(
    cfg: RunConfig, interactive: Any, run_dir: Path, usage: UsageTotals, *, tag: str = "b", ledger: Ledger | None = None,
) -> BatchTransport:
    """The run's calls through the provider's batch API; ``interactive`` makes the tree's calls."""
    if isinstance(interactive, BatchTransport):
        return interactive
    api = batch_api(cfg, interactive)
    price = batch_call_price(cfg.model, cfg.prices)  # the config's price, else litellm's batch price
    if price is None:  # no batch price in litellm's table: the interactive one (an upper bound), or unknown
        price = getattr(interactive, "price", None) or call_price(cfg.model, cfg.prices)
    return BatchTransport(
        interactive, api, run_dir, run_id=Path(run_dir).name, price=price, budget=cfg.budget, usage=usage,
        linger_s=cfg.batch_linger, tag=tag, ledger=ledger,
    )


def judge_transport_maker(run_batch: BatchTransport, make_transport: Any, run_dir: Path, usage: UsageTotals) -> Any:
    """``make_transport`` for a judge model in a --batch run: its calls in its own provider's batches
    (tag ``j``, the run's ledger) when the provider has a batch API, else interactive."""

    def make(cfg: RunConfig) -> Any:
        interactive = make_transport(cfg)
        try:
            return batch_transport(cfg, interactive, run_dir, usage, tag="j", ledger=run_batch.ledger)
        except ConfigError:
            return interactive

    return make
