"""The LLM layer: every call a run makes goes through here.

    types.py       LLMRequest, Completion, UsageTotals, the call priorities, the Transport protocol
    client.py      LLMClient: cache, pause/stop/budget gates, concurrency, RPM/TPM limits, retries, usage
    lifecycle.py   make_local_transport (which transport a config gets) and close_transport
    structured.py  structured-output negotiation (which response_format an endpoint accepts)
    pricing.py     what tokens cost (litellm's local cost map)
    transports/    the calls themselves: openai_http.py (native OpenAI-compatible client), litellm.py
                   (any provider), local.py (the embedded llama.cpp model), ray.py (calls on Ray workers)

Nothing here imports litellm, aiohttp, llama.cpp or Ray at import time: each is loaded on first use.
"""

from __future__ import annotations

from .client import LLMClient, clean_text
from .lifecycle import close_transport, close_transport_sync, make_local_transport
from .transports.litellm import LiteLLMTransport, load_litellm
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
]
