"""Anthropic's Message Batches wire format: pure functions, nothing here raises on untrusted input.

A batch is one ``POST /v1/messages/batches`` whose body carries its requests,
``{"requests": [{"custom_id", "params": <a Messages API request>}, ...]}`` (at most 100,000 requests
or 256 MB); its results are JSONL, one line per request: ``{"custom_id", "result": {"type":
"succeeded", "message": <a Message>} | {"type": "errored", "error": {"type": "error", "error": {"type",
"message"}}} | {"type": "canceled"} | {"type": "expired"}}``.

A call's JSON schema becomes one tool the model must call (``tool_choice``), the form Anthropic's
Messages API has always accepted for structured answers; the tool's input is the answer's text, so a
batched answer reaches the engine's parser exactly like an interactive one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson

from ..pricing import CallPrice
from ..types import Completion, LLMRequest
from .api import BatchState
from .lines import BatchResult, read_results

API_VERSION = "2023-06-01"
MAX_REQUESTS = 100_000
MAX_BYTES = 256 * 1024 * 1024
MAX_TEMPERATURE = 1.0
# an error type in an errored result -> the HTTP status Anthropic gives it interactively
ERROR_STATUS = {
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402, "permission_error": 403,
    "not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}
_TOOL_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def model_id(model: str) -> str:
    """``anthropic/claude-x`` -> ``claude-x``."""
    return model.split("/", 1)[1] if model.startswith("anthropic/") else model


def tool_name(schema_name: str) -> str:
    return (_TOOL_NAME.sub("_", schema_name) or "answer")[:64]


def params(req: LLMRequest, model: str) -> dict[str, Any]:
    """The Messages API request for one call: system messages joined into ``system``, the schema as a
    forced tool, the temperature within Anthropic's 0-1 (there is no seed)."""
    system = "\n\n".join(m["content"] for m in req.messages if m.get("role") == "system" and m.get("content"))
    messages = [{"role": m["role"], "content": m["content"]} for m in req.messages if m.get("role") in ("user", "assistant")]
    out: dict[str, Any] = {"model": model_id(model), "max_tokens": req.max_tokens, "messages": messages}
    if system:
        out["system"] = system
    out["temperature"] = min(MAX_TEMPERATURE, max(0.0, float(req.temperature)))
    if req.schema is not None:
        name = tool_name(req.schema_name)
        out["tools"] = [{"name": name, "description": "Give your answer as this tool's input.", "input_schema": req.schema}]
        out["tool_choice"] = {"type": "tool", "name": name}
    return out


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    return orjson.dumps({"custom_id": custom_id, "params": body}) + b"\n"


def create_body(content: bytes) -> bytes:
    """The create call's body from a batch's input lines (each already one request's JSON)."""
    return b'{"requests":[' + b",".join(ln for ln in content.splitlines() if ln.strip()) + b"]}"


def _result(cid: str, doc: dict[str, Any]) -> BatchResult | None:
    res = doc.get("result")
    if not isinstance(res, dict):
        return None
    kind = res.get("type")
    if kind == "succeeded" and isinstance(res.get("message"), dict):
        return BatchResult(cid, 200, res["message"])
    if kind == "errored":
        err = res.get("error")
        inner = err.get("error") if isinstance(err, dict) and isinstance(err.get("error"), dict) else err
        etype = str(inner.get("type")) if isinstance(inner, dict) else "error"
        msg = str(inner.get("message", "")) if isinstance(inner, dict) else ""
        return BatchResult(cid, ERROR_STATUS.get(etype, 500), err if isinstance(err, dict) else None, etype, msg[:300])
    if kind in ("canceled", "expired"):
        code = "batch_cancelled" if kind == "canceled" else "batch_expired"
        return BatchResult(cid, None, None, code, f"the request was {kind} before it ran")
    return None


def parse_results(content: bytes | str, expected: Iterable[str] | None = None) -> tuple[dict[str, BatchResult], list[str]]:
    """The results in a results file, by custom id, and the problems met."""
    return read_results(content, expected, _result)


def completion(message: dict[str, Any], req: LLMRequest, price: CallPrice | None) -> Completion:
    """A Message as a ``Completion``: the forced tool's input as JSON text (or the text blocks)."""
    content = message.get("content")
    blocks: list[Any] = content if isinstance(content, list) else []
    tool = next((b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"), None)
    if tool is not None:
        text = orjson.dumps(tool.get("input") if tool.get("input") is not None else {}).decode()
    else:
        text = "".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    finish = "length" if message.get("stop_reason") == "max_tokens" else "stop"
    raw_usage = message.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}

    def n(key: str) -> int:
        v = usage.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else 0

    tin = n("input_tokens") + n("cache_creation_input_tokens") + n("cache_read_input_tokens")
    tout = n("output_tokens")
    if not tin:
        tin = sum(len(m["content"]) for m in req.messages) // 4
    if not tout:
        tout = len(text) // 4
    return Completion(text, finish, tin, tout, None if price is None else price(tin, tout, 0))


def _ts(v: Any) -> float | None:
    if not isinstance(v, str):
        return None
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def batch_state(doc: dict[str, Any]) -> BatchState:
    """A message batch object as a ``BatchState``: ``ended`` is final (``cancelled`` when a cancel was
    asked for); each request's own outcome is in the results."""
    ps = str(doc.get("processing_status"))
    raw_counts = doc.get("request_counts")
    counts: dict[str, Any] = raw_counts if isinstance(raw_counts, dict) else {}
    nums = {k: v for k, v in counts.items() if isinstance(v, int) and not isinstance(v, bool)}
    if ps == "ended":
        status = "cancelled" if doc.get("cancel_initiated_at") else "completed"
    else:
        status = "running"
    shown = ps + (" (" + ", ".join(f"{k} {v}" for k, v in nums.items() if v) + ")" if any(nums.values()) else "")
    url = doc.get("results_url")
    return BatchState(
        id=str(doc.get("id")), status=status, provider_status=shown, results=(("out", url),) if isinstance(url, str) else (),
        requests=sum(nums.values()) if nums else None, created_at=_ts(doc.get("created_at")),
    )
