"""Structured-output negotiation: which ``response_format`` an endpoint accepts, decided from its errors.

Both transports (core/llm/transports/openai_http.py and .../litellm.py) start at the strongest
form and step down the ladder when the endpoint rejects it, remembering the step for the rest of
the run (one ``Negotiator`` per transport instance, i.e. per endpoint):

    json_schema          {"type": "json_schema", "json_schema": {"name", "schema", "strict": false}}   (OpenAI, vLLM, ...)
    json_object_schema   {"type": "json_object", "schema": <schema>}   (llama.cpp's dialect: still grammar-constrained)
    json_object          {"type": "json_object"}                        (any JSON)
    none                 no response_format: the prompt alone; the engine parses tolerantly

The classification of an error is pure (status code and message in, a verdict out) so that both
transports decide alike:

    DOWNGRADE      the endpoint rejected the response_format we sent: re-send now, one step down
                   (no backoff, not a transient error);
    DETERMINISTIC  the same request-shaped error came back again (a bad parameter answered with 500,
                   a schema error at the bottom of the ladder): retrying cannot help, end the run;
    TRANSIENT      worth retrying with backoff (5xx, 429, ... whose message is not a request error);
    REJECTED       another 4xx: the transport's own handling (auth, unknown model, parameter tweaks).
"""

from __future__ import annotations

import re
import threading
from typing import Any

JSON_SCHEMA = "json_schema"
JSON_OBJECT_SCHEMA = "json_object_schema"
JSON_OBJECT = "json_object"
NONE = "none"
LADDER = (JSON_SCHEMA, JSON_OBJECT_SCHEMA, JSON_OBJECT, NONE)

DOWNGRADE = "downgrade"
DETERMINISTIC = "deterministic"
TRANSIENT = "transient"
REJECTED = "rejected"

RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# What a request to an endpoint in llama.cpp's dialect (JSON_OBJECT_SCHEMA) also carries: the embedded
# model's sampling (core/llm/transports/local_sampler.py has no repetition penalty). llama-cpp-python's
# server defaults to repeat_penalty 1.1 over the last 64 tokens, which biases structured answers: measured
# with SmolLM2-135M as judge (benchmarks/bench_judge.py rows), 1.1 passed 67% of good and 67% of bad rows
# and failed 30 of the first 30 rows of a 200-row run; 1.0 passed 100% of both, as in-process.
LLAMA_CPP_SAMPLING = {"repeat_penalty": 1.0}
GRAMMAR_MAX_LENGTH = 500

# An error about the response_format itself (OpenAI, vLLM, llama.cpp, pydantic validation, litellm's wrappers).
_STRUCTURED = re.compile(
    r"response[_ ]format|json[_ ]schema|json[_ ]object|\bschema\b|\bgrammar\b|structured output"
    r"|input should be 'text' or 'json_object'",
    re.I,
)
# A message that describes the request (so repeating it is deterministic), not the server's state.
_REQUEST_SHAPED = re.compile(
    r"input should be|validation error|field required|extra inputs? (?:are|is) not permitted|unrecognized|unrecognised"
    r"|unsupported|not supported|invalid|must be|\bexpected\b|unexpected keyword|is not a valid|not allowed|not permitted"
    r"|unknown (?:field|parameter|argument)|missing (?:required|field|parameter)|failed to parse|parse error"
    r"|keyerror|valueerror|typeerror|attributeerror|type_error|value_error",
    re.I,
)


def next_mode(mode: str) -> str | None:
    """The step below ``mode`` on the ladder (None at the bottom)."""
    i = LADDER.index(mode)
    return LADDER[i + 1] if i + 1 < len(LADDER) else None


def response_format(mode: str, schema: dict[str, Any] | None, name: str = "answer") -> dict[str, Any] | None:
    """The ``response_format`` to send in ``mode`` for ``schema`` (None: send none)."""
    if schema is None or mode == NONE:
        return None
    if mode == JSON_SCHEMA:
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}
    if mode == JSON_OBJECT_SCHEMA:
        # llama.cpp turns the schema into a grammar; long maxLength limits crash its grammar parser
        return {"type": "json_object", "schema": grammar_safe(schema)}
    if mode == JSON_OBJECT:
        return {"type": "json_object"}
    raise ValueError(f"unknown structured-output mode {mode!r}")


def grammar_safe(schema: Any) -> Any:
    """llama.cpp expands ``maxLength`` into nested optional rules; long limits crash its grammar
    parser (measured: 600 compiles and runs, 1200 kills the process). Cap them at 500 characters, so a
    small model's strings still end (unbounded, SmolLM2 writes one field until max_tokens), and keep
    every other constraint. Used for llama.cpp servers (``json_object_schema``) and the embedded model."""
    if isinstance(schema, dict):
        out = {k: grammar_safe(v) for k, v in schema.items()}
        if isinstance(out.get("maxLength"), int) and out["maxLength"] > GRAMMAR_MAX_LENGTH:
            out["maxLength"] = GRAMMAR_MAX_LENGTH
        return out
    if isinstance(schema, list):
        return [grammar_safe(x) for x in schema]
    return schema


def names_structured_output(message: str, param: str = "") -> bool:
    """Whether an error message (or its ``param``) is about the response_format."""
    return param in ("response_format", "json_schema") or bool(_STRUCTURED.search(message or ""))


def request_shaped(message: str) -> bool:
    """Whether a message reads as an error about the request (validation, a bad parameter)."""
    return bool(message) and (bool(_REQUEST_SHAPED.search(message)) or names_structured_output(message))


def classify(status: int | None, message: str, *, param: str = "", sent_rf: bool, repeated: bool = False) -> str:
    """The verdict for one error (see the module docstring).

    ``status``: the HTTP status (None when unknown, e.g. a wrapped exception without one);
    ``sent_rf``: the request carried a response_format that can still be stepped down from;
    ``repeated``: this exact message was already seen from this endpoint.
    """
    if sent_rf and status not in (401, 403, 404, 429) and names_structured_output(message, param):
        return DOWNGRADE
    if status is None or status in RETRYABLE_STATUS or status >= 500:
        if repeated and request_shaped(message) and status not in (429, 408):
            return DETERMINISTIC
        return TRANSIENT
    return REJECTED


class Negotiator:
    """One endpoint's structured-output mode and the error messages it has seen (thread-safe)."""

    def __init__(self, start: str = JSON_SCHEMA) -> None:
        if start not in LADDER:
            raise ValueError(f"unknown structured-output mode {start!r}")
        self.mode = start
        self.downgrades: list[tuple[str, str, str]] = []  # (from, to, message): what the endpoint rejected
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def response_format(self, schema: dict[str, Any] | None, name: str = "answer") -> tuple[str, dict[str, Any] | None]:
        """(the mode used, the response_format to send) for one request."""
        mode = self.mode
        return mode, response_format(mode, schema, name)

    def classify(self, status: int | None, message: str, *, param: str = "", sent_mode: str | None) -> str:
        """Classify an error answered to a request sent in ``sent_mode`` (None: no response_format sent)."""
        key = f"{status}|{message}"
        with self._lock:
            n = self._seen.get(key, 0)
            if len(self._seen) < 1024 or key in self._seen:
                self._seen[key] = n + 1
        can_step = sent_mode is not None and sent_mode != NONE
        return classify(status, message, param=param, sent_rf=can_step, repeated=n > 0)

    def downgrade(self, sent_mode: str | None, message: str = "") -> str:
        """Step down from ``sent_mode`` (a no-op if another request already did, or if nothing was sent:
        None); returns the mode now in force."""
        with self._lock:
            below = next_mode(sent_mode) if sent_mode is not None else None
            if below is not None and LADDER.index(below) > LADDER.index(self.mode):
                self.downgrades.append((self.mode, below, message[:200]))
                self.mode = below
            return self.mode

    def deterministic_message(self, status: int | None, message: str, endpoint: str) -> str:
        """The one line a deterministic rejection ends the run with."""
        code = f"HTTP {status}" if status else "an error"
        tried = ""
        if self.downgrades:
            tried = f" (after stepping response_format down to {self.mode!r})"
        return f"{endpoint} rejects the request deterministically with {code}{tried}: {message}"[:400]
