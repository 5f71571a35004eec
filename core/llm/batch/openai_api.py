"""OpenAI's Files and Batches endpoints over aiohttp (also any ``openai/`` endpoint that implements
the same routes): upload an input file, create a batch, poll it, download its output and error
files, cancel it, and find a batch again by its metadata.

Errors split like the chat transport's: a rejected request, a bad key or an unknown id is a
``ProviderError`` (asking again cannot help); 429, 5xx, timeouts and dropped connections are
``TransientProviderError`` with the provider's Retry-After when it gave one.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from ...errors import ProviderError, TransientProviderError
from ..transports.common import error_message, retry_after_from_headers

TRANSIENT = {408, 409, 429, 500, 502, 503, 504}


class OpenAIBatchAPI:
    def __init__(self, base_url: str, api_key: str | None, *, timeout_s: float = 120.0) -> None:
        self.base = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self._session: Any = None
        self.calls = 0  # HTTP requests made (polls included)

    async def _http(self) -> Any:
        if self._session is None or self._session.closed:
            import aiohttp

            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._session = aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def _request(self, method: str, path: str, *, json: Any = None, data: Any = None, params: dict[str, str] | None = None,
                       raw: bool = False) -> Any:
        import aiohttp

        session = await self._http()
        self.calls += 1
        try:
            async with session.request(method, self.base + path, json=json, data=data, params=params) as r:
                body = await r.read()
                if r.status >= 400:
                    msg = f"{method} {path}: HTTP {r.status}: {error_message(body)}"
                    if r.status in TRANSIENT:
                        raise TransientProviderError(msg, retry_after=retry_after_from_headers(r.headers))
                    raise ProviderError(msg)
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as e:
            raise TransientProviderError(f"{method} {path}: {type(e).__name__}: {e}") from None
        if raw:
            return body
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise TransientProviderError(f"{method} {path}: the answer is not JSON") from None

    async def upload(self, content: bytes, filename: str) -> str:
        """The id of the uploaded batch input file."""
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename=filename, content_type="application/jsonl")
        doc = await self._request("POST", "/files", data=form)
        fid = doc.get("id") if isinstance(doc, dict) else None
        if not isinstance(fid, str):
            raise ProviderError("POST /files: the answer has no file id")
        return fid

    async def create(self, file_id: str, endpoint: str, metadata: dict[str, str]) -> dict[str, Any]:
        doc = await self._request("POST", "/batches", json={"input_file_id": file_id, "endpoint": endpoint,
                                                            "completion_window": "24h", "metadata": metadata})
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise ProviderError("POST /batches: the answer has no batch id")
        return doc

    async def retrieve(self, batch_id: str) -> dict[str, Any]:
        doc = await self._request("GET", f"/batches/{batch_id}")
        if not isinstance(doc, dict) or not isinstance(doc.get("status"), str):
            raise TransientProviderError(f"GET /batches/{batch_id}: the answer has no status")
        return doc

    async def content(self, file_id: str) -> bytes:
        return bytes(await self._request("GET", f"/files/{file_id}/content", raw=True))

    async def cancel(self, batch_id: str) -> dict[str, Any]:
        return dict(await self._request("POST", f"/batches/{batch_id}/cancel"))

    async def find(self, key: str, value: str, since: float) -> dict[str, Any] | None:
        """The newest batch whose metadata has ``key`` = ``value``, among batches created since ``since``
        (seconds since the epoch, a minute of clock skew allowed); None if there is none."""
        after: str | None = None
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            page = await self._request("GET", "/batches", params=params)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list) or not data:
                return None
            for b in data:
                if not isinstance(b, dict):
                    continue
                if (b.get("metadata") or {}).get(key) == value:
                    return b
                created = b.get("created_at")
                if isinstance(created, (int, float)) and created < since - 60:
                    return None  # newest first: everything after this is older
            if not page.get("has_more"):
                return None
            after = data[-1].get("id")
