"""One try of one request to an OpenAI-compatible ``/v1/embeddings`` endpoint on an aiohttp session, and the
gates' unit float16 vectors: what the endpoint embedder (core/quality/embed_endpoint.py) runs in the run's
process and its worker process (core/quality/embed_worker.py) runs in its own."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from ..errors import ProviderError, ProviderTimeout, TransientProviderError
from ..llm.embed_wire import Embeddings, EmbedEndpoint, error_for, parse_embeddings, rejects_base64, request_body


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Unit rows, float32 (a zero row stays zero)."""
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return (X / np.where(n > 0, n, 1.0)).astype(np.float32, copy=False)  # float32 already: no second copy


def unit_f16(X: np.ndarray) -> np.ndarray:
    """Unit rows rounded to float16 (the gates' vectors)."""
    return unit_rows(X).astype(np.float16)


async def post_embeddings(
    session: Any, ep: EmbedEndpoint, texts: list[str], b64: bool, proxy: Any = None, proxy_auth: Any = None, timeout: float = 120.0,
) -> tuple[Embeddings, bool]:
    """One try of one request on an aiohttp ``session``: (the answer, whether the server refused base64 and was
    asked again with float lists). Raises ``ProviderError`` (one line; retrying cannot help) or
    ``TransientProviderError`` (``ProviderTimeout`` for no answer within ``timeout``)."""
    import aiohttp

    refused = False
    try:
        while True:
            body = request_body(ep.wire_model, texts, b64)
            async with session.post(ep.url, data=body, proxy=proxy, proxy_auth=proxy_auth) as resp:
                status = resp.status
                raw = await resp.read()
                if status == 200:
                    break
                if b64 and rejects_base64(status, raw):
                    b64, refused = False, True
                    continue
                raise error_for(status, raw, resp.headers, ep)
    except (ProviderError, TransientProviderError):
        raise
    except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
        raise ProviderTimeout(f"no answer from {ep.api_base} within {timeout:g}s") from None
    except (aiohttp.ClientError, OSError) as e:
        line = ep.scrub(" ".join(str(e).split())[:200] or type(e).__name__)
        raise TransientProviderError(f"connection to {ep.api_base} failed: {type(e).__name__}: {line}") from None
    return parse_embeddings(raw, len(texts), ep.url), refused
