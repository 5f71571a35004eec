"""A tiny HTTP forwarding proxy for the real-server tests: it forwards every request unchanged to
an upstream server and counts the ``POST .../chat/completions`` it forwarded (with the status the
upstream answered and the ``response_format`` type the client sent). It answers nothing itself:
it is not a fake server. A streamed answer (server-sent events) is relayed as it arrives, chunk by
chunk, so the client's idle timeouts see the server's own pace."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.stub_server import rf_kind

_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "content-length", "host"}


class CountingProxy:
    def __init__(self, upstream_host: str, upstream_port: int, timeout: float = 600.0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.timeout = timeout
        self.lock = threading.Lock()
        self.completions = 0  # POST .../chat/completions forwarded
        self.statuses: Counter = Counter()  # upstream status of those
        self.formats: Counter = Counter()  # (response_format kind, upstream status)
        self.streamed = 0  # completions answered with server-sent events, relayed as they came
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                is_completion = self.command == "POST" and self.path.rstrip("/").endswith("/chat/completions")
                kind = None
                if is_completion:
                    kind = proxy._kind(body)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=proxy.timeout)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    status, rheaders = resp.status, resp.getheaders()
                    if status == 200 and (resp.getheader("Content-Type") or "").startswith("text/event-stream"):
                        if is_completion:
                            proxy._count(kind, status, streamed=True)
                        self._relay(resp, rheaders)
                        return
                    data = resp.read()
                except OSError:
                    self.close_connection = True
                    return  # the client sees a dropped connection, as it would from the server
                finally:
                    conn.close()
                if is_completion:
                    proxy._count(kind, status)
                try:
                    self.send_response(status)
                    for k, v in rheaders:
                        if k.lower() not in _HOP:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client went away (a test SIGKILLs a run mid-call)
                    self.close_connection = True

            def _relay(self, resp: http.client.HTTPResponse, rheaders: list[tuple[str, str]]) -> None:
                """A streamed answer, chunk by chunk as the upstream sends it (chunked transfer encoding)."""
                self.send_response(200)
                for k, v in rheaders:
                    if k.lower() not in _HOP:
                        self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    while True:
                        data = resp.read1(65536)
                        if not data:
                            break
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:  # either side went away: so does the other
                    self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def _kind(body: bytes | None) -> str:
        """The structured-output form a chat request asked for (core/llm/structured.py's mode names)."""
        try:
            return rf_kind(json.loads(body or b"{}"))
        except ValueError:
            return "?"

    def _count(self, kind: str | None, status: int, streamed: bool = False) -> None:
        with self.lock:
            self.completions += 1
            self.statuses[status] += 1
            self.formats[(kind, status)] += 1
            self.streamed += streamed

    def count(self) -> int:
        with self.lock:
            return self.completions

    def start(self) -> CountingProxy:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
