"""The LLM layer: every call a run makes goes through here.

    types.py       LLMRequest, Completion, UsageTotals, the call priorities, the Transport protocol
    client.py      LLMClient: cache, pause/stop/budget gates, concurrency, RPM/TPM limits, retries, usage
    select.py      make_local_transport: the in-process transport core/transport_choice.py picks for a config
    lifecycle.py   make_transport (a Ray pool, or the in-process one) and close_transport
    structured.py  structured-output negotiation (which response_format an endpoint accepts)
    wire.py        the OpenAI chat-completions answer as a Completion (interactive and batch calls alike)
    pricing.py     what tokens cost (the config's prices, else litellm's local cost map)
    budget.py      the budget's reservations: calls in flight count at the most they can cost
    litellm_loader.py  load_litellm: litellm imported on first use, offline and quiet
    transports/    the calls themselves: openai_http.py (native OpenAI-compatible client), litellm.py
                   (any provider), local.py (the embedded llama.cpp model), ray.py (calls on Ray workers)

Nothing here imports litellm, aiohttp, llama.cpp or Ray at import time: each is loaded on first use.
"""

from __future__ import annotations

from ..text import clean_text
from .client import LLMClient
from .lifecycle import close_transport, close_transport_sync, make_transport
from .litellm_loader import load_litellm
from .select import make_local_transport
from .transports.litellm import LiteLLMTransport
from .types import PRIORITY_JUDGE, PRIORITY_LEAF, PRIORITY_TREE, Completion, LLMRequest, Transport, UsageTotals

__all__ = [
    "PRIORITY_JUDGE",
    "PRIORITY_LEAF",
    "PRIORITY_TREE",
    "Completion",
    "LLMClient",
    "LLMRequest",
    "LiteLLMTransport",
    "Transport",
    "UsageTotals",
    "clean_text",
    "close_transport",
    "close_transport_sync",
    "load_litellm",
    "make_local_transport",
    "make_transport",
]
