"""The JSON-over-HTTP client both batch APIs use (aiohttp).

Errors split like the chat transport's: a rejected request, a bad key or an unknown id is a
``ProviderError`` (asking again cannot help); 429, 5xx (Anthropic's 529 included), timeouts and
dropped connections are ``TransientProviderError`` with the provider's Retry-After when it gave one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ...errors import ProviderError, TransientProviderError
from ..transports.common import error_message, retry_after_from_headers

TRANSIENT = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


class JSONClient:
    def __init__(self, base_url: str, headers: dict[str, str], *, timeout_s: float = 120.0) -> None:
        self.base = base_url.rstrip("/")
        self.headers = headers
        self.timeout_s = timeout_s
        self._session: Any = None
        self.calls = 0  # HTTP requests made (polls included)

    async def _http(self) -> Any:
        if self._session is None or self._session.closed:
            import aiohttp

            self._session = aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def request(self, method: str, path: str, *, json: Any = None, raw_json: bytes | None = None, data: Any = None,
                      params: dict[str, str] | None = None, raw: bool = False) -> Any:
        """``path`` is relative to the base URL, or a whole URL (a results URL the provider gave);
        ``raw_json``: a body already serialised."""
        import aiohttp

        session = await self._http()
        self.calls += 1
        url = path if path.startswith(("http://", "https://")) else self.base + path
        shown = path if not path.startswith(("http://", "https://")) else url.split("?", 1)[0]
        body: Any = None
        try:
            kw: dict[str, Any] = {"params": params, "data": data}
            if json is not None or raw_json is not None:
                payload = raw_json if raw_json is not None else orjson.dumps(json)
                kw = {"params": params, "data": payload, "headers": {"content-type": "application/json"}}
            async with session.request(method, url, **kw) as r:
                body = await r.read()
                if r.status >= 400:
                    msg = f"{method} {shown}: HTTP {r.status}: {error_message(body)}"
                    if r.status in TRANSIENT:
                        raise TransientProviderError(msg, retry_after=retry_after_from_headers(r.headers))
                    raise ProviderError(msg)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise TransientProviderError(f"{method} {shown}: {type(e).__name__}: {e}") from None
        if raw:
            return body
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise TransientProviderError(f"{method} {shown}: the answer is not JSON") from None
