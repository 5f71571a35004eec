"""The one extension point for a provider's batch API: a ``BatchAPI`` object passed to ``BatchTransport``.

Two providers implement it: OpenAI's Files + Batches (``openai_api.OpenAIBatchAPI``, also any
``openai/`` endpoint with the same routes) and Anthropic's Message Batches
(``anthropic_api.AnthropicBatchAPI``). The transport owns everything they share: collecting calls,
the journal, the budget, polling, resubmission, resume. An API object only speaks its provider's
wire format.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..pricing import CallPrice
from ..types import Completion, LLMRequest
from .lines import BatchResult

FINAL = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class BatchState:
    """One batch as the provider last described it, in our words."""

    id: str
    status: str  # "running" until one of FINAL
    provider_status: str  # the provider's own word (shown to the user)
    results: tuple[tuple[str, str], ...] = ()  # (suffix, reference) of each result file to fetch once final
    errors: str = ""  # why the whole batch failed, when the provider said
    requests: int | None = None  # how many requests the provider says the batch holds
    created_at: float | None = None  # seconds since the epoch

    @property
    def final(self) -> bool:
        return self.status in FINAL


class BatchAPI(Protocol):
    """A provider's batch API. Network methods raise ``ProviderError`` (asking again cannot help) or
    ``TransientProviderError`` (worth retrying); the pure ones never raise on untrusted input."""

    label: str  # the provider's name for its batch API, for messages
    max_requests: int  # per batch
    max_bytes: int  # per batch (its input file, or its request body)
    uploads: bool  # True: the requests go up as a file before the batch is created

    @property
    def calls(self) -> int:
        """HTTP requests made so far (polls included)."""
        ...

    def body(self, req: LLMRequest) -> dict[str, Any]:
        """The provider's request body for one call (what a batch line carries)."""
        ...

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """One line of the batch's input (JSONL, with its newline)."""
        ...

    async def upload(self, content: bytes, filename: str) -> str:
        """Upload the input file (only when ``uploads``); its id."""
        ...

    async def create(self, file_id: str | None, content: bytes, name: str, metadata: dict[str, str]) -> BatchState:
        """Create the batch from the uploaded file, or from ``content`` itself."""
        ...

    async def retrieve(self, batch_id: str) -> BatchState: ...

    async def download(self, ref: str) -> bytes:
        """One result file named in ``BatchState.results``."""
        ...

    async def find(self, name: str, since: float, requests: int, known: set[str]) -> BatchState | None:
        """A batch created from our batch ``name`` just before a kill (so its id was never recorded):
        created since ``since``, holding ``requests`` requests, not one of the ``known`` ids. None when
        there is none."""
        ...

    def parse(self, content: bytes, expected: Iterable[str] | None = None) -> tuple[dict[str, BatchResult], list[str]]:
        """The results in a result file, by custom id, and the problems met."""
        ...

    def completion(self, body: dict[str, Any], req: LLMRequest, price: CallPrice | None) -> Completion:
        """A successful result's body as a ``Completion`` (``TransientProviderError`` when malformed)."""
        ...

    async def cancel(self, batch_id: str) -> BatchState: ...

    async def aclose(self) -> None: ...
