"""A streamed chat completion: its chunks added up into the same ``Completion`` a whole body gives, and
which endpoints refuse to stream.

Both OpenAI-compatible transports (core/llm/transports/openai_http.py, .../litellm.py) stream their calls
so that ``--timeout`` can bound the silence between tokens instead of a call's whole duration: a slow
server that keeps writing is never cut off (on a loaded llama.cpp server a 1,425-token answer at 15
tokens/s took 95 s, was cut at 120 s and sent again, identically, forever), and one that stops writing
is noticed within the gap. A call cut off midway still spent tokens: ``StreamedAnswer.partial`` prices
what arrived, so usage, cost and the budget stay honest.

Usage comes from the stream's last chunk (``stream_options: {"include_usage": true}``); a server that
sends none gets its tokens estimated as ``completion_from`` does (core/llm/wire.py: characters / 4).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..errors import TransientProviderError
from .types import Completion, LLMRequest
from .wire import priced

if TYPE_CHECKING:
    from .pricing import CallPrice

# What a streamed request carries besides ``"stream": true``: the token counts in a last chunk.
STREAM_OPTIONS = {"include_usage": True}
# The stream negotiation's steps (``refusal``): drop stream_options (keep streaming, count tokens), or stop streaming.
STREAM_OPTIONS_REFUSED = "stream_options"
STREAM_REFUSED = "stream"
_NAMES_STREAM = re.compile(r"\bstream(?:_options|ing)?\b", re.I)


def refusal(status: int | None, message: str, param: str = "") -> str | None:
    """What a rejected request says about streaming: ``STREAM_OPTIONS_REFUSED`` (the endpoint rejects
    stream_options), ``STREAM_REFUSED`` (it rejects stream itself), or None (another error).
    Only a request error (HTTP 400 or 422) whose message or ``param`` names them counts: a 5xx is the
    server's state, not a refusal."""
    if status not in (400, 422):
        return None
    if param == "stream_options" or "stream_options" in (message or "").lower():
        return STREAM_OPTIONS_REFUSED
    if param == "stream" or _NAMES_STREAM.search(message or ""):
        return STREAM_REFUSED
    return None


def cut_short_notice(endpoint: str) -> str:
    """The run log's line when ``endpoint`` ended a stream without its finish reason (``StreamedAnswer.complete``)
    and is asked plainly from then on."""
    return (
        f"{endpoint} ended a streamed answer before its finish reason (llama-cpp-python's server does so to a stream "
        "when another request arrives, unless started with --interrupt_requests False): its calls are no longer streamed, "
        "each bounded as a whole by --first-token-timeout"
    )


class StreamedAnswer:
    """The chunks of one streamed answer, added up (choice 0's content deltas, its finish reason, the usage)."""

    __slots__ = ("_parts", "finish", "usage", "chunks", "done")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.chunks = 0  # chunks received, the usage-only one included
        self.done = False  # the stream said it ended (``[DONE]``)

    @property
    def complete(self) -> bool:
        """Whether the answer ended: it has its finish reason. A stream that ends (``[DONE]``, or the body's
        end) without one was cut short: see ``cut_short``."""
        return self.finish is not None

    @property
    def text(self) -> str:
        return "".join(self._parts)

    def add(self, doc: Any) -> None:
        """One ``chat.completion.chunk`` as JSON-decoded (the http transport's SSE events). An ``error``
        object in the stream (vLLM and others report a failure midway so) is a transient error."""
        if not isinstance(doc, dict):
            raise TransientProviderError("malformed stream: a chunk is not a JSON object")
        err = doc.get("error")
        if err is not None:
            msg = err.get("message") if isinstance(err, dict) else err
            raise TransientProviderError(f"the stream reported an error: {' '.join(str(msg).split())[:200]}")
        content, finish = None, None
        choices = doc.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
            elif isinstance(choice.get("message"), dict):  # a server that answers with whole messages
                content = choice["message"].get("content")
            finish = choice.get("finish_reason")
        self.take(content, finish, doc.get("usage"))

    def take(self, content: Any, finish: Any, usage: Any) -> None:
        """One chunk's parts, however the transport read them (litellm's chunk objects give them as attributes)."""
        self.chunks += 1
        if content:
            self._parts.append(content if isinstance(content, str) else str(content))
        if finish:
            self.finish = str(finish)
        if isinstance(usage, dict) and usage:
            self.usage = usage

    def completion(self, req: LLMRequest, price: CallPrice | None) -> Completion:
        """The whole answer as a ``Completion``, like the non-streamed body's (core/llm/wire.py)."""
        return priced(self.text, self.finish, self.usage, req, price)

    def partial(self, req: LLMRequest, price: CallPrice | None) -> Completion | None:
        """What a call cut off midway received, priced (its output tokens estimated from the text when the
        server sent no usage); None when nothing arrived (no evidence the server spent anything)."""
        if not self.chunks:
            return None
        return priced(self.text, self.finish, self.usage, req, price)
