"""A TCP proxy that forwards a client's bytes at once and trickles the server's back, ``chunk_bytes`` every
``gap_s`` seconds: a slow server that keeps sending (tests/test_server_faults.py). It speaks no HTTP and
answers nothing itself. ``longest_call_s``: the longest stretch from a client's request to the last byte of
what the server sent back before the client's next request."""

from __future__ import annotations

import socket
import threading
import time


class TrickleProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, chunk_bytes: int = 1024, gap_s: float = 0.2) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.chunk_bytes = chunk_bytes
        self.gap_s = gap_s
        self.longest_call_s = 0.0
        self._lock = threading.Lock()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._stop = threading.Event()

    def __enter__(self) -> TrickleProxy:
        threading.Thread(target=self._accept, daemon=True, name="trickle-accept").start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            state = {"start": None}
            threading.Thread(target=self._to_server, args=(client, up, state), daemon=True).start()
            threading.Thread(target=self._to_client, args=(up, client, state), daemon=True).start()

    def _to_server(self, client: socket.socket, up: socket.socket, state: dict) -> None:
        try:
            while data := client.recv(65536):
                state["start"] = time.monotonic()  # a request (or more of one)
                up.sendall(data)
        except OSError:
            pass
        finally:
            _close(up)

    def _to_client(self, up: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while data := up.recv(65536):
                for i in range(0, len(data), self.chunk_bytes):
                    client.sendall(data[i : i + self.chunk_bytes])
                    if state["start"] is not None:
                        with self._lock:
                            self.longest_call_s = max(self.longest_call_s, time.monotonic() - state["start"])
                    time.sleep(self.gap_s)
        except OSError:
            pass
        finally:
            _close(client)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()
