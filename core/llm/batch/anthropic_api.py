"""Anthropic's Message Batches (``/v1/messages/batches``) as a ``BatchAPI`` (core/llm/batch/api.py).

There is no file to upload: the create call carries the requests. A batch has no metadata either, so
a batch created just before a kill (its id never recorded) is found by what can be seen of it: created
after our batch was planned, holding exactly its number of requests, and not a batch we know. The
results then prove it: only results whose custom ids we asked for are used, and any request not
answered there is sent again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ...errors import ProviderError, TransientProviderError
from ..pricing import CallPrice
from ..types import Completion, LLMRequest
from . import anthropic_lines as wire
from .api import BatchState
from .http import JSONClient
from .lines import BatchResult

DEFAULT_BASE = "https://api.anthropic.com"
ROUTE = "/v1/messages/batches"


def api_root(api_base: str | None) -> str:
    """The server's root from ``--api-base`` as litellm takes it for anthropic/ models (a root, or one
    ending in /v1 or /v1/messages)."""
    base = (api_base or DEFAULT_BASE).rstrip("/")
    for tail in ("/v1/messages", "/v1"):
        if base.endswith(tail):
            base = base[: -len(tail)]
    return base


class AnthropicBatchAPI:
    label = "Anthropic's Message Batches"
    uploads = False

    def __init__(self, model: str, api_base: str | None, api_key: str | None, *, timeout_s: float = 120.0,
                 max_requests: int = wire.MAX_REQUESTS, max_bytes: int = wire.MAX_BYTES) -> None:
        self.model = model
        self.root = api_root(api_base)
        headers = {"anthropic-version": wire.API_VERSION, **({"x-api-key": api_key} if api_key else {})}
        self.http = JSONClient(self.root, headers, timeout_s=timeout_s)
        self.max_requests, self.max_bytes = max_requests, max_bytes

    @property
    def calls(self) -> int:
        return self.http.calls

    async def aclose(self) -> None:
        await self.http.aclose()

    # ---- wire format (pure) -------------------------------------------------------------------
    def body(self, req: LLMRequest) -> dict[str, Any]:
        return wire.params(req, self.model)

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        return wire.request_line(custom_id, body)

    def parse(self, content: bytes, expected: Iterable[str] | None = None) -> tuple[dict[str, BatchResult], list[str]]:
        return wire.parse_results(content, expected)

    def completion(self, body: dict[str, Any], req: LLMRequest, price: CallPrice | None) -> Completion:
        return wire.completion(body, req, price)

    # ---- network ------------------------------------------------------------------------------
    async def upload(self, content: bytes, filename: str) -> str:
        raise ProviderError(f"{self.label} takes no input file")

    async def create(self, file_id: str | None, content: bytes, name: str, metadata: dict[str, str]) -> BatchState:
        doc = await self.http.request("POST", ROUTE, raw_json=wire.create_body(content))
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            raise ProviderError(f"POST {ROUTE}: the answer has no batch id")
        return wire.batch_state(doc)

    async def retrieve(self, batch_id: str) -> BatchState:
        doc = await self.http.request("GET", f"{ROUTE}/{batch_id}")
        if not isinstance(doc, dict) or not isinstance(doc.get("processing_status"), str):
            raise TransientProviderError(f"GET {ROUTE}/{batch_id}: the answer has no processing_status")
        return wire.batch_state(doc)

    async def download(self, ref: str) -> bytes:
        """The results file at the batch's ``results_url``; the key is only ever sent to the API's own host."""
        a, b = urlsplit(ref), urlsplit(self.root)
        if (a.scheme, a.netloc) != (b.scheme, b.netloc):
            raise ProviderError(f"the batch's results_url is not on {b.netloc}: not sending the API key there")
        return bytes(await self.http.request("GET", ref, raw=True))

    async def cancel(self, batch_id: str) -> BatchState:
        return wire.batch_state(dict(await self.http.request("POST", f"{ROUTE}/{batch_id}/cancel")))

    async def find(self, name: str, since: float, requests: int, known: set[str]) -> BatchState | None:
        """The earliest unknown batch created since ``since`` (a minute of clock skew allowed) holding
        exactly ``requests`` requests (see the module docstring)."""
        after: str | None = None
        found: BatchState | None = None
        while True:
            page = await self.http.request("GET", ROUTE, params={"limit": "100", **({"after_id": after} if after else {})})
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list) or not data:
                return found
            for doc in data:
                if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
                    continue
                s = wire.batch_state(doc)
                if s.created_at is not None and s.created_at < since - 60:
                    return found  # newest first: everything after this is older
                if s.id not in known and s.requests == requests:
                    found = s  # keep going: the earliest match is the one created first after the plan
            if not page.get("has_more") or not isinstance(page.get("last_id"), str):
                return found
            after = page["last_id"]
