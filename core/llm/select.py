"""The in-process transport for a config, built as core/transport_choice.py decides (``make_local_transport``).
Each Ray worker builds its own with it too; ``make_transport`` (core/llm/lifecycle.py) adds the Ray pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..transport_choice import in_process
from .transports.litellm import LiteLLMTransport
from .transports.openai_http import OpenAIHTTPTransport

if TYPE_CHECKING:
    from ..config import RunConfig


def make_local_transport(cfg: RunConfig) -> OpenAIHTTPTransport | LiteLLMTransport:
    """The native OpenAI-compatible client where it applies (``cfg.transport`` auto or http), litellm
    otherwise: any provider, a Router, or the embedded model (registered with litellm as ``local/``)."""
    if in_process(cfg) == "http":
        return OpenAIHTTPTransport(cfg)
    return LiteLLMTransport(cfg)
