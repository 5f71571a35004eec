"""A small OpenAI-compatible HTTP server on loopback for integration tests.

It answers the engine's calls with valid, plausible JSON (tests/fake_provider.py: each protocol
step known by the request's schema), counts requests, and can inject faults: HTTP 429 with
Retry-After, 500s, or 401 for every request; reject some response_format forms (as servers without
structured output, or with their own dialect, do) or answer every request with one fixed error.
A request with ``"stream": true`` gets server-sent events (tests/sse_answer.py), unless ``no_stream``
rejects it with HTTP 400 as a server that cannot stream does.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fake_provider import Call, FakeProvider
from tests.sse_answer import sse_events, wants_usage

# the stub's words: "aspect at depth 0" names the root's split (tests/test_tui_terminal.py waits for it)
STUB = FakeProvider(dimension="aspect at depth {depth}", pivot="{field} number {tag}-{i} at depth {depth}",
                    sample="{field} number {tag}-{i} at depth {depth}")


def answer_for(call: Call, counter: int) -> dict:
    """The stub's answer to one call (tests/fake_provider.py), unique by ``counter``."""
    return STUB.answer(call, tag=counter)


class _Server(ThreadingHTTPServer):
    # the listen backlog: the default 5 drops connections beyond it when 64 calls open at once, and the
    # kernel's SYN retries (1 s, 3 s, 7 s later) then show up as leaves finishing seconds late
    request_queue_size = 1024


def rf_kind(body: dict) -> str:
    """The structured-output form a chat request asks for, in core/llm/structured.py's mode names."""
    rf = body.get("response_format") if isinstance(body, dict) else None
    if not isinstance(rf, dict):
        return "none"
    if rf.get("type") == "json_object":
        return "json_object_schema" if rf.get("schema") is not None else "json_object"
    return str(rf.get("type"))


class StubOpenAI:
    def __init__(self, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests = 0
        self.completions = 0
        self.fail_429 = 0  # answer this many requests with 429 + Retry-After first
        self.fail_500 = 0
        self.auth_fail = False
        self.reject_formats: dict[str, tuple[int, str]] = {}  # rf_kind -> (status, message) answered to that form
        self.fail_always: tuple[int, str] | None = None  # (status, message) answered to every request
        self.formats: Counter = Counter()  # rf_kind of every chat request
        self.no_stream = False  # reject "stream": true with HTTP 400 naming it
        self.streamed = 0  # chat requests that asked for a stream
        self.seen_auth: set[str] = set()
        self.seen_agents: set[str] = set()
        self.first_request_at: float | None = None  # time.time() of the first chat request, of the last answer sent
        self.last_answer_at: float | None = None
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, code: int, body: dict, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(200, {"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with stub.lock:
                    stub.first_request_at = stub.first_request_at or time.time()
                    stub.requests += 1
                    stub.seen_auth.add(self.headers.get("Authorization", ""))
                    stub.seen_agents.add(self.headers.get("User-Agent", ""))
                    kind = rf_kind(body)
                    stub.formats[kind] += 1
                    streamed = body.get("stream") is True
                    stub.streamed += streamed
                    if streamed and stub.no_stream:
                        return self._send(400, {"error": {"message": "'stream' is not supported", "type": "invalid_request_error", "param": "stream"}})
                    if kind in stub.reject_formats:
                        code, message = stub.reject_formats[kind]
                        return self._send(code, {"error": {"message": message, "type": "invalid_request_error"}})
                    if stub.fail_always:
                        code, message = stub.fail_always
                        return self._send(code, {"error": {"message": message, "type": "internal_server_error"}})
                    if stub.auth_fail:
                        return self._send(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}})
                    if stub.fail_429 > 0:
                        stub.fail_429 -= 1
                        return self._send(429, {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}, {"Retry-After": "0.2"})
                    if stub.fail_500 > 0:
                        stub.fail_500 -= 1
                        return self._send(500, {"error": {"message": "internal error", "type": "server_error"}})
                    stub.completions += 1
                    counter = stub.completions
                if stub.latency:
                    time.sleep(stub.latency)
                content = json.dumps(answer_for(Call.from_openai(body), counter))
                usage = {"prompt_tokens": 50, "completion_tokens": len(content) // 4, "total_tokens": 50 + len(content) // 4}
                if streamed:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()  # HTTP/1.0: the body ends when the connection closes
                    for data in sse_events(content, "stop", usage if wants_usage(body) else None, model=body.get("model", "stub-model"),
                                           cid=f"chatcmpl-{counter}"):
                        self.wfile.write(data)
                    stub.last_answer_at = time.time()
                    return
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{counter}", "object": "chat.completion", "created": int(time.time()),
                        "model": body.get("model", "stub-model"),
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                        "usage": usage,
                    },
                )
                stub.last_answer_at = time.time()

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        # a short poll: shutdown() waits for the next one (0.5 s by default, at every test's teardown)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> StubOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
