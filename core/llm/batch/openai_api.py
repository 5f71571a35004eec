"""OpenAI's Files and Batches endpoints (also any ``openai/`` endpoint that implements the same
routes), as a ``BatchAPI`` (core/llm/batch/api.py): upload an input file, create a batch, poll it,
download its output and error files, cancel it, and find a batch again by its metadata.

Request bodies are the interactive http transport's own (``body_of``), and answers are read by the
same ``completion_from`` (core/llm/wire.py): batched and interactive calls are sent, parsed and priced alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ...errors import ProviderError, TransientProviderError
from ..pricing import CallPrice
from ..types import Completion, LLMRequest
from ..wire import completion_from
from .api import FINAL, BatchState
from .http import JSONClient
from .lines import CHAT_ENDPOINT, MAX_BYTES, MAX_REQUESTS, BatchResult, parse_results, request_line

META_KEY = "treesynth_batch"


def openai_state(doc: dict[str, Any]) -> BatchState:
    """A batch object as a ``BatchState`` (pure)."""
    status = str(doc.get("status"))
    results = tuple((suffix, doc[key]) for key, suffix in (("output_file_id", "out"), ("error_file_id", "err"))
                    if isinstance(doc.get(key), str))
    errors = "; ".join(str(e.get("message", "")) for e in ((doc.get("errors") or {}).get("data") or []) if isinstance(e, dict))
    raw_counts = doc.get("request_counts")
    counts: dict[str, Any] = raw_counts if isinstance(raw_counts, dict) else {}
    total = counts.get("total") if isinstance(counts.get("total"), int) else None
    created = doc.get("created_at")
    return BatchState(
        id=str(doc.get("id")), status=status if status in FINAL else "running", provider_status=status, results=results,
        errors=errors[:300], requests=total, created_at=float(created) if isinstance(created, (int, float)) else None,
    )


class OpenAIBatchAPI:
    label = "OpenAI's Batch API"
    uploads = True

    def __init__(self, base_url: str, api_key: str | None, *, body_of: Callable[[LLMRequest], dict[str, Any]] | None = None,
                 timeout_s: float = 120.0, endpoint: str = CHAT_ENDPOINT, max_requests: int = MAX_REQUESTS,
                 max_bytes: int = MAX_BYTES) -> None:
        self.http = JSONClient(base_url, {"Authorization": f"Bearer {api_key}"} if api_key else {}, timeout_s=timeout_s)
        self._body_of = body_of
        self.endpoint = endpoint
        self.max_requests, self.max_bytes = max_requests, max_bytes

    @property
    def calls(self) -> int:
        return self.http.calls

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---- wire format (pure) -------------------------------------------------------------------
    def body(self, req: LLMRequest) -> dict[str, Any]:
        if self._body_of is None:
            raise ProviderError("this batch API was made without a request builder")
        return self._body_of(req)

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        return request_line(custom_id, body, self.endpoint)

    def parse(self, content: bytes, expected: Iterable[str] | None = None) -> tuple[dict[str, BatchResult], list[str]]:
        return parse_results(content, expected)

    def completion(self, body: dict[str, Any], req: LLMRequest, price: CallPrice | None) -> Completion:
        return completion_from(body, req, price)

    # ---- network ------------------------------------------------------------------------------
    async def upload(self, content: bytes, filename: str) -> str:
        """The id of the uploaded batch input file."""
        import aiohttp

        form = aiohttp.FormData()
        form.add_field("purpose", "batch")
        form.add_field("file", content, filename=filename, content_type="application/jsonl")
        doc = await self.http.request("POST", "/files", data=form)
        fid = doc.get("id") if isinstance(doc, dict) else None
        if not isinstance(fid, str):
            raise ProviderError("POST /files: the answer has no file id")
        return fid

    async def create(self, file_id: str | None, content: bytes, name: str, metadata: dict[str, str]) -> BatchState:
        if file_id is None:
            raise ProviderError("POST /batches: no input file was uploaded")
        doc = await self.http.request("POST", "/batches", json={"input_file_id": file_id, "endpoint": self.endpoint,
                                                                "completion_window": "24h", "metadata": {META_KEY: name, **metadata}})
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise ProviderError("POST /batches: the answer has no batch id")
        return openai_state(doc)

    async def retrieve(self, batch_id: str) -> BatchState:
        doc = await self.http.request("GET", f"/batches/{batch_id}")
        if not isinstance(doc, dict) or not isinstance(doc.get("status"), str):
            raise TransientProviderError(f"GET /batches/{batch_id}: the answer has no status")
        return openai_state(doc)

    async def download(self, ref: str) -> bytes:
        return bytes(await self.http.request("GET", f"/files/{ref}/content", raw=True))

    async def cancel(self, batch_id: str) -> BatchState:
        return openai_state(dict(await self.http.request("POST", f"/batches/{batch_id}/cancel")))

    async def find(self, name: str, since: float, requests: int, known: set[str]) -> BatchState | None:
        """The newest batch whose metadata names ``name`` (``treesynth_batch``), among batches created
        since ``since`` (a minute of clock skew allowed)."""
        after: str | None = None
        while True:
            params = {"limit": "100", **({"after": after} if after else {})}
            page = await self.http.request("GET", "/batches", params=params)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list) or not data:
                return None
            for b in data:
                if not isinstance(b, dict):
                    continue
                if (b.get("metadata") or {}).get(META_KEY) == name and b.get("id") not in known:
                    return openai_state(b)
                created = b.get("created_at")
                if isinstance(created, (int, float)) and created < since - 60:
                    return None  # newest first: everything after this is older
            if not page.get("has_more"):
                return None
            after = data[-1].get("id")
