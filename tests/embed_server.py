"""A fake OpenAI-compatible ``/v1/embeddings`` server on loopback (a thread of the test process), for the
endpoint embedder's tests (tests/test_embed_endpoint.py).

Each text's vector is a fixed function of the text (``vector_of``: seeded by its hash, ``dim`` numbers of
norm ``scale``, deliberately not unit-norm), answered in REVERSED order with each item's ``index``, so a
client that ignores the index gets them wrong. ``usage.prompt_tokens`` is the number of words (``usage=False``:
no usage); with ``encoding_format: base64`` the vectors come as base64 float32 bytes. Models other than ``models`` get ``unknown_status`` (400, as OpenAI's ``model_not_found``).

Faults, served one per request before normal answers (``faults``, a list consumed in order):
``"503"`` / ``"500"``, ``"429:<seconds>"`` (with Retry-After), ``"drop"`` (the connection closed with no
answer), ``"401"``, ``"nopool"`` (llama-cpp-python without --embedding: HTTP 500 "Llama model must be created
with embedding=True"). ``strict=True``: a request naming ``encoding_format`` gets 422. ``start_after``: the port is bound only after that many seconds (connections
refused until then).

``per_token=True``: each text's answer is per-token vectors (3 rows averaging to its vector), as
llama-cpp-python's server gives for a model without pooling, and like that server (0.3.36) every text after
the first of a request gets unrelated numbers.

Recorded: ``requests`` (each POST body's model and inputs, the time it arrived and the request line's target: a
full URL when the request came through it as a proxy), ``max_in_flight``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np


def vector_of(text: str, dim: int = 8, scale: float = 3.0) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(dim)
    return (v / np.linalg.norm(v) * scale).astype(np.float64)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeEmbeddings:
    def __init__(
        self, *, dim: int = 8, models: tuple[str, ...] = ("emb-small", "text-embedding-3-small"), faults: list[str] | None = None,
        usage: bool = True, latency: float = 0.0, unknown_status: int = 400, port: int | None = None, start_after: float = 0.0,
        key: str | None = None, per_token: bool = False, strict: bool = False, max_request_chars: int | None = None,
        max_input_chars: int | None = None,
    ) -> None:
        self.per_token = per_token
        self.strict = strict
        self.max_request_chars = max_request_chars
        self.max_input_chars = max_input_chars
        self.dim = dim
        self.models = models
        self.faults = list(faults or [])
        self.usage = usage
        self.latency = latency
        self.unknown_status = unknown_status
        self.port = port or free_port()
        self.start_after = start_after
        self.key = key
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._srv: _Server | None = None
        self._timer: threading.Timer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, code: int, body: dict, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in fake.models]})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with fake._lock:
                    fake.requests.append({"model": body.get("model"), "input": body.get("input"), "t": time.monotonic(),
                                          "auth": self.headers.get("Authorization"), "encoding_format": body.get("encoding_format"),
                                          "path": self.path})
                    fault = fake.faults.pop(0) if fake.faults else None
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.latency:
                        time.sleep(fake.latency)
                    self._answer(body, fault)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _answer(self, body: dict, fault: str | None) -> None:
                if urlsplit(self.path).path.rstrip("/") != "/v1/embeddings":  # a full URL: asked as a proxy
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                if fault in ("500", "503"):
                    return self._send(int(fault), {"error": {"message": "the server is overloaded", "type": "server_error"}})
                if fault and fault.startswith("429"):
                    wait = fault.partition(":")[2] or "1"
                    return self._send(429, {"error": {"message": "rate limit reached", "type": "rate_limit"}}, {"Retry-After": wait})
                if fault == "401" or (fake.key and self.headers.get("Authorization") != f"Bearer {fake.key}"):
                    return self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
                if fault == "nopool":
                    return self._send(500, {"error": {"message": "Llama model must be created with embedding=True to call this method"}})
                model = body.get("model")
                if model not in fake.models:
                    return self._send(fake.unknown_status, {"error": {"message": f"The model `{model}` does not exist", "code": "model_not_found"}})
                if fake.strict and "encoding_format" in body:  # a server validating requests strictly
                    return self._send(422, {"error": {"message": "Extra inputs are not permitted: body.encoding_format"}})
                texts = body.get("input")
                total = sum(len(t) for t in texts) if isinstance(texts, list) else len(str(texts))
                if fake.max_request_chars is not None and total > fake.max_request_chars:  # OpenAI: 300,000 tokens a request
                    return self._send(400, {"error": {"message": f"Requested {total} tokens, max {fake.max_request_chars} tokens per request",
                                                      "type": "max_tokens_per_request", "code": "max_tokens_per_request"}})
                longest = max((len(t) for t in texts), default=0) if isinstance(texts, list) else len(str(texts))
                if fake.max_input_chars is not None and longest > fake.max_input_chars:  # OpenAI: 8,192 tokens an input
                    return self._send(400, {"error": {"message": f"This model's maximum context length is {fake.max_input_chars} tokens, "
                                                      f"however you requested {longest} tokens", "type": "invalid_request_error"}})
                if isinstance(texts, str):
                    texts = [texts]
                items = [{"object": "embedding", "index": i, "embedding": fake.vector(t, i)} for i, t in enumerate(texts)]
                if body.get("encoding_format") == "base64" and not fake.per_token:  # OpenAI's: little-endian float32 bytes
                    # (per_token imitates llama-cpp-python's server, which ignores the field)
                    for it in items:
                        it["embedding"] = base64.b64encode(np.asarray(it["embedding"], dtype="<f4").tobytes()).decode()
                doc: dict[str, Any] = {"object": "list", "data": items[::-1], "model": model}
                if fake.usage:
                    n = sum(len(t.split()) for t in texts)
                    doc["usage"] = {"prompt_tokens": n, "total_tokens": n}
                return self._send(200, doc)

        return Handler

    def vector(self, text: str, position: int) -> list:
        v = vector_of(text, self.dim)
        if not self.per_token:
            return v.tolist()
        if position > 0:  # llama-cpp-python's slicing bug: another text's numbers
            v = vector_of(f"garbage {text}", self.dim)
        return [(v + d).tolist() for d in (-0.5, 0.0, 0.5)]

    def start(self) -> FakeEmbeddings:
        def bind() -> None:
            self._srv = _Server(("127.0.0.1", self.port), self._handler())
            threading.Thread(target=self._srv.serve_forever, daemon=True).start()

        if self.start_after:
            self._timer = threading.Timer(self.start_after, bind)
            self._timer.start()
        else:
            bind()
        return self

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join()
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()

    def __enter__(self) -> FakeEmbeddings:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
