"""A chat completion in its streamed form, as the fake servers write it (tests/faultserver.py, tests/stub_server.py):
server-sent events of ``chat.completion.chunk`` objects, as OpenAI and vLLM send them: a first chunk with the
role, the content in pieces, a chunk with the finish reason, the usage chunk (``choices: []``) when the
request asked for it (``stream_options.include_usage``), then ``data: [DONE]``."""

from __future__ import annotations

import json
import time

DONE = b"data: [DONE]\n\n"


def event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def wants_usage(body: dict) -> bool:
    opts = body.get("stream_options") if isinstance(body, dict) else None
    return isinstance(opts, dict) and opts.get("include_usage") is True


def sse_events(content: str, finish: str | None, usage: dict | None, *, model: str, cid: str, chunk_chars: int = 64) -> list[bytes]:
    """The events of one streamed answer (``usage`` None: no usage chunk), ``[DONE]`` last."""
    base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}

    def chunk(delta: dict, fin: str | None = None) -> bytes:
        return event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": fin}]})

    out = [chunk({"role": "assistant", "content": ""})]
    step = max(1, chunk_chars)
    out += [chunk({"content": content[i:i + step]}) for i in range(0, len(content), step)]
    out.append(chunk({}, finish))
    if usage is not None:
        out.append(event({**base, "choices": [], "usage": usage}))
    out.append(DONE)
    return out
