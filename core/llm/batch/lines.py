"""Batch input and output files: pure functions.

An input file is JSONL, one request per line: ``{"custom_id", "method": "POST", "url", "body"}``.
An output or error file has one line per answered request: ``{"id", "custom_id", "response":
{"status_code", "request_id", "body"}, "error"}``; a request the provider never ran (the batch expired
or was cancelled) has ``"response": null`` and ``"error": {"code", "message"}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

CHAT_ENDPOINT = "/v1/chat/completions"
# OpenAI's documented limits for one batch input file
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024


def request_line(custom_id: str, body: dict[str, Any], endpoint: str = CHAT_ENDPOINT) -> bytes:
    """One input-file line (with its newline)."""
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": endpoint, "body": body}) + b"\n"


def group_lines(lines: Sequence[tuple[str, bytes]], max_requests: int = MAX_REQUESTS, max_bytes: int = MAX_BYTES) -> list[list[tuple[str, bytes]]]:
    """Split ``(custom_id, line)`` pairs, in order, into files within both limits. A single line over
    ``max_bytes`` is a ``ValueError`` (no provider would take it)."""
    if max_requests < 1 or max_bytes < 1:
        raise ValueError("limits must be positive")
    groups: list[list[tuple[str, bytes]]] = []
    cur: list[tuple[str, bytes]] = []
    size = 0
    for cid, line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"request {cid!r} is {len(line):,} bytes, over the batch file limit of {max_bytes:,}")
        if cur and (len(cur) >= max_requests or size + len(line) > max_bytes):
            groups.append(cur)
            cur, size = [], 0
        cur.append((cid, line))
        size += len(line)
    if cur:
        groups.append(cur)
    return groups


@dataclass(frozen=True)
class BatchResult:
    """One request's outcome in a finished batch."""

    custom_id: str
    status: int | None  # the HTTP status the provider gave the request; None when it never ran
    body: dict[str, Any] | None  # the response body (a chat completion, or an error body)
    error_code: str | None = None  # e.g. batch_expired, batch_cancelled; or the body's error code
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and isinstance(self.body, dict) and "error" not in self.body

    @property
    def retryable(self) -> bool:
        """Worth submitting again: it never ran (expired, cancelled), or failed in a way that may pass later."""
        if self.status is None:
            return True
        return self.status == 429 or self.status >= 500


def read_results(
    content: bytes | str, expected: Iterable[str] | None, result_of: Callable[[str, dict[str, Any]], BatchResult | None],
) -> tuple[dict[str, BatchResult], list[str]]:
    """The results in a result file, by custom id, and the problems met (lines that are not JSON, have
    no custom id, name one not asked for, or hold no result). ``result_of(custom_id, line)`` reads one
    line in a provider's format (None: no result in it). Untrusted input: nothing here raises."""
    want = set(expected) if expected is not None else None
    out: dict[str, BatchResult] = {}
    problems: list[str] = []
    raw = content.encode("utf-8") if isinstance(content, str) else content
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            problems.append(f"line {i} is not JSON")
            continue
        cid = doc.get("custom_id") if isinstance(doc, dict) else None
        if not isinstance(cid, str):
            problems.append(f"line {i} has no custom_id")
            continue
        if want is not None and cid not in want:
            problems.append(f"line {i}: custom_id {cid[:60]!r} was not asked for")
            continue
        r = result_of(cid, doc)
        if r is None:
            problems.append(f"line {i}: no result for {cid[:60]!r}")
        else:
            out[cid] = r
    return out, problems


def _openai_result(cid: str, doc: dict[str, Any]) -> BatchResult | None:
    resp, err = doc.get("response"), doc.get("error")
    if isinstance(resp, dict) and isinstance(resp.get("status_code"), int):
        body = resp.get("body") if isinstance(resp.get("body"), dict) else None
        code = msg = None
        if body is not None and isinstance(body.get("error"), dict):
            code, msg = body["error"].get("code"), body["error"].get("message")
        return BatchResult(cid, resp["status_code"], body, str(code) if code else None, str(msg or "")[:300])
    if isinstance(err, dict):
        return BatchResult(cid, None, None, str(err.get("code") or "error"), str(err.get("message") or "")[:300])
    return None  # neither a response nor an error


def parse_results(content: bytes | str, expected: Iterable[str] | None = None) -> tuple[dict[str, BatchResult], list[str]]:
    """The results in an OpenAI output or error file, by custom id, and the problems met."""
    return read_results(content, expected, _openai_result)
