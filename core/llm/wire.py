"""The OpenAI chat-completions wire format shared by the interactive http transport
(core/llm/transports/openai_http.py) and the OpenAI batch API's output lines (core/llm/batch/openai_api.py):
both send, parse and price alike, and neither imports the other for it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import TransientProviderError
from .types import Completion, LLMRequest

if TYPE_CHECKING:
    from .pricing import CallPrice


def completion_from(doc: Any, req: LLMRequest, price: CallPrice | None) -> Completion:
    """A chat-completion response body as a ``Completion``, priced with ``price`` (None: unpriced).
    Shared by the interactive call and the batch API's output lines."""
    try:
        choice = doc["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise TransientProviderError("malformed response: no choices") from None
    if not isinstance(text, str):  # content parts: keep their text
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict)) if isinstance(text, list) else str(text)
    return priced(text, finish, doc.get("usage"), req, price)


def priced(text: str, finish: str | None, usage: Any, req: LLMRequest, price: CallPrice | None) -> Completion:
    """An answer's text and finish reason with its ``usage`` (the body's, or a stream's last chunk) as a priced
    ``Completion``. Token counts the server did not give are estimated as characters / 4 (the prompt's, the
    text's), as litellm's transport does. Shared by whole bodies, streamed answers and streams cut off midway."""
    if not isinstance(usage, dict):
        usage = {}
    try:
        tin = int(usage.get("prompt_tokens") or 0)
        tout = int(usage.get("completion_tokens") or 0)
    except (TypeError, ValueError):
        tin = tout = 0
    if not tin:
        tin = sum(len(m["content"]) for m in req.messages) // 4
    if not tout:
        tout = len(text) // 4
    if price is None:
        cost = None
    else:
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else 0
        cost = price(tin, tout, cached if isinstance(cached, int) and 0 < cached <= tin else 0)
    return Completion(text, finish, tin, tout, cost)
