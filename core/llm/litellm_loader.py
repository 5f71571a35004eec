"""Loading litellm: lazily (3.5-4.7 s and ~210 MB: never at import time, so ``treesynth --help`` stays
fast), offline (its local cost map) and quiet, with the embedded model registered as its ``local/``
provider. The litellm transport, the prices (core/llm/pricing.py) and the preflight all load it here."""

from __future__ import annotations

import logging
import os
from typing import Any

from .transports.common import raise_open_files_limit

_litellm: Any = None


def load_litellm() -> Any:
    """Import litellm lazily (it takes seconds) and offline (local cost map)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        # litellm's shared aiohttp pool defaults to 500 connections per host: allow --concurrency's maximum
        os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", "4096")
        os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "4096")
        raise_open_files_limit(4096 + 256)
        import litellm

        litellm.suppress_debug_info = True
        litellm.drop_params = True
        litellm.telemetry = False
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        from .transports import local

        local.register(litellm)
        _litellm = litellm
    return _litellm
