"""``--batch``: the batch transport for a run's config, beside its interactive transport."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..pricing import batch_call_price
from .transport import BatchTransport

if TYPE_CHECKING:
    from ...config import RunConfig
    from ..types import UsageTotals

# calls the engine may hold in flight in batch mode: they wait in batches, not on connections
BATCH_IN_FLIGHT = 50_000


def batch_transport(cfg: RunConfig, interactive: Any, run_dir: Path, usage: UsageTotals) -> BatchTransport:
    """The run's calls through the provider's batch API; ``interactive`` makes the tree's calls."""
    from ..transports.openai_http import OpenAIHTTPTransport

    if isinstance(interactive, BatchTransport):
        return interactive
    if not isinstance(interactive, OpenAIHTTPTransport):
        raise ConfigError(
            f"--batch needs an openai/ model on the http transport (OpenAI's batch API, or an endpoint with the same routes); "
            f"{cfg.model!r} with --executor {cfg.executor} and --transport {cfg.transport} is not one"
        )
    price = batch_call_price(cfg.model)
    if price is None:  # no batch price in litellm's table: the interactive one (an upper bound), or unknown
        price = interactive.price
    return BatchTransport(
        interactive, interactive.batch_api(), run_dir, run_id=Path(run_dir).name, price=price, budget=cfg.budget, usage=usage,
        linger_s=cfg.batch_linger,
    )
