"""An endpoint embedder's requests in a process of their own, for large gated runs.

At 100k rows an endpoint's answers are 200 MB of JSON and base64; reading them (and sending the requests) was
the largest share of what semantic dedup added to the event loop, which the run's generation also needs
(benchmarks/README.md, "The gates at 100k"). Here a child process makes the POSTs and reads the answers
into unit float16 vectors; the event loop hands it a request body and gets the vectors back, or what went
wrong, which ``EndpointRowEmbedder`` then treats as it treats its own requests' outcomes (retries, errors,
usage and budget stay in the run's process).

The child is ``python -m treesynth.core.quality.embed_process``, in a session of its own (Ctrl-C reaches the
parent, which closes it); it ends when its stdin closes, so a parent that dies takes it along. Frames as
core/neardup_process.py's (a kind byte, a uint64 length, the payload). Requests: ``I`` (init: JSON of the
URL, headers, timeout and the most requests at once), ``P`` (a uint64 id, a uint32 text count, the body).
Answers, each with its request's id first: ``V`` (a uint32 token count, 0 when not given, a flags byte (1:
per-token vectors, mean-pooled), uint32 rows and dim, then the unit float16 vectors), ``H`` (a non-200
answer: a uint32 length of a JSON of status and headers, that JSON, then the body), ``T`` (a timeout), ``C``
(a connection error's message), ``M`` (a malformed answer's message), ``X`` (anything else).
The API key travels in the init frame (memory and a pipe), never on disk or in an argument.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..frames import recv_frame as _recv
from ..frames import send_frame as _send

_ID = struct.Struct("<QI")  # request id, text count
_VEC = struct.Struct("<IBII")  # tokens, flags, rows, dim
_LEN = struct.Struct("<I")


class EmbedProcessError(RuntimeError):
    """The embedding process ended or failed."""


@dataclass(frozen=True)
class Answer:
    """One request's outcome, as the child saw it."""

    kind: str  # "V" vectors, "H" a non-200 answer, "T" timeout, "C" connection error, "M" malformed, "X" other
    vectors: np.ndarray | None = None  # unit float16 (n, dim)
    tokens: int | None = None
    per_token: bool = False
    status: int = 0
    headers: dict[str, str] | None = None
    body: bytes = b""
    message: str = ""


def unit_f16(X: np.ndarray) -> np.ndarray:
    """Unit rows, rounded to float16: what the embedder keeps of an answer (in this process or the child)."""
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return (X / np.where(n > 0, n, 1.0)).astype(np.float32).astype(np.float16)


class EmbedProcess:
    """The parent's side: ``await post(n, body)`` from any event loop; a writer and a reader thread move the frames."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float, parallel: int) -> None:
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "treesynth.core.quality.embed_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            start_new_session=True,
        )
        self._next = 0
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Answer]]] = {}
        self._outbox: queue.SimpleQueue[tuple[bytes, bytes] | None] = queue.SimpleQueue()
        self._failed: str | None = None
        init = json.dumps({"url": url, "headers": headers, "timeout": timeout, "parallel": parallel}).encode()
        self._outbox.put((b"I", init))
        self._writer = threading.Thread(target=self._write_loop, name="treesynth-embed-writer", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="treesynth-embed-reader", daemon=True)
        self._writer.start()
        self._reader.start()

    async def post(self, n: int, body: bytes) -> Answer:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Answer] = loop.create_future()
        with self._lock:
            if self._failed is not None or self._proc is None:
                raise EmbedProcessError(self._failed or "the embedding process is closed")
            rid = self._next
            self._next += 1
            self._pending[rid] = (loop, fut)
        self._outbox.put((b"P", _ID.pack(rid, n) + body))
        try:
            return await fut
        finally:
            with self._lock:
                self._pending.pop(rid, None)

    def _write_loop(self) -> None:
        p = self._proc
        assert p is not None and p.stdin is not None
        while True:
            item = self._outbox.get()
            if item is None:
                break
            try:
                _send(p.stdin, *item)  # type: ignore[arg-type]
            except (OSError, ValueError):
                break
        try:
            p.stdin.close()
        except OSError:
            pass

    def _read_loop(self) -> None:
        p = self._proc
        assert p is not None and p.stdout is not None
        out: BinaryIO = p.stdout  # type: ignore[assignment]
        try:
            while True:
                kind, payload = _recv(out)
                rid, _ = _ID.unpack_from(payload)
                answer = _answer(kind, memoryview(payload)[_ID.size:])
                with self._lock:
                    waiting = self._pending.get(rid)
                if waiting is not None:
                    loop, fut = waiting
                    loop.call_soon_threadsafe(_resolve, fut, answer)
        except (EOFError, OSError, ValueError):
            pass
        code = p.poll()
        with self._lock:
            self._failed = self._failed or f"the embedding process ended unexpectedly (exit code {code if code is not None else 'unknown'})"
            left = list(self._pending.values())
        for loop, fut in left:
            try:
                loop.call_soon_threadsafe(_fail, fut, EmbedProcessError(self._failed))
            except RuntimeError:  # that loop is closed
                pass

    def close(self) -> None:
        with self._lock:
            p, self._proc = self._proc, None
            self._failed = self._failed or "the embedding process is closed"
        if p is None:
            return
        self._outbox.put(None)
        self._writer.join(timeout=10)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        self._reader.join(timeout=10)
        if p.stdout is not None:
            p.stdout.close()


def _resolve(fut: asyncio.Future[Answer], answer: Answer) -> None:
    if not fut.done():
        fut.set_result(answer)


def _fail(fut: asyncio.Future[Answer], e: BaseException) -> None:
    if not fut.done():
        fut.set_exception(e)


def _answer(kind: bytes, b: memoryview) -> Answer:
    k = kind.decode()
    if k == "V":
        tokens, flags, rows, dim = _VEC.unpack_from(b)
        V = np.frombuffer(b, dtype="<f2", count=rows * dim, offset=_VEC.size).reshape(rows, dim)
        return Answer("V", vectors=V, tokens=tokens or None, per_token=bool(flags & 1))
    if k == "H":
        (hn,) = _LEN.unpack_from(b)
        meta = json.loads(bytes(b[_LEN.size : _LEN.size + hn]))
        return Answer("H", status=int(meta["status"]), headers=meta["headers"], body=bytes(b[_LEN.size + hn :]))
    return Answer(k, message=bytes(b).decode("utf-8", "replace"))


# ---- the child ---------------------------------------------------------------------
async def _serve(inp: BinaryIO, out: BinaryIO) -> None:
    import aiohttp

    from ..errors import TransientProviderError
    from ..llm.embed_wire import parse_embeddings

    loop = asyncio.get_running_loop()
    frames: asyncio.Queue[tuple[bytes, bytes] | None] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                frame = _recv(inp)
            except (EOFError, OSError):
                loop.call_soon_threadsafe(frames.put_nowait, None)
                return
            loop.call_soon_threadsafe(frames.put_nowait, frame)

    threading.Thread(target=read, daemon=True).start()
    first = await frames.get()
    if first is None or first[0] != b"I":
        return
    cfg = json.loads(first[1])
    url = cfg["url"]
    ssl: Any = False
    if url.startswith("https:"):
        from ..llm.transports.openai_http import _ssl_context

        ssl = _ssl_context()
    connector = aiohttp.TCPConnector(limit=int(cfg["parallel"]), limit_per_host=0, keepalive_timeout=30, ssl=ssl)
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=float(cfg["timeout"])), headers=cfg["headers"], trust_env=True,
    )
    write_lock = threading.Lock()

    def answer(kind: bytes, rid: int, n: int, *payload: bytes) -> None:
        with write_lock:
            _send(out, kind, _ID.pack(rid, n), *payload)

    async def one(rid: int, n: int, body: bytes) -> None:
        try:
            async with session.post(url, data=body) as resp:
                status, raw, headers = resp.status, await resp.read(), {k.lower(): v for k, v in resp.headers.items()}
            if status != 200:
                meta = json.dumps({"status": status, "headers": headers}).encode()
                answer(b"H", rid, n, _LEN.pack(len(meta)), meta, raw)
                return
            try:
                got = parse_embeddings(raw, n, url)
            except TransientProviderError as e:
                answer(b"M", rid, n, str(e).encode())
                return
            H = unit_f16(got.vectors)
            head = _VEC.pack(got.prompt_tokens or 0, 1 if got.per_token else 0, H.shape[0], H.shape[1])
            answer(b"V", rid, n, head, np.ascontiguousarray(H, dtype="<f2").tobytes())
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError):
            answer(b"T", rid, n)
        except (aiohttp.ClientError, OSError) as e:
            answer(b"C", rid, n, f"{type(e).__name__}: {' '.join(str(e).split())[:200] or type(e).__name__}".encode())
        except Exception as e:  # noqa: BLE001 - reported to the parent
            answer(b"X", rid, n, f"{type(e).__name__}: {e}".encode())

    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            frame = await frames.get()
            if frame is None:
                break
            kind, payload = frame
            if kind != b"P":
                continue
            rid, n = _ID.unpack_from(payload)
            t = asyncio.ensure_future(one(rid, n, payload[_ID.size :]))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends (it closes stdin)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    asyncio.run(_serve(sys.stdin.buffer, sys.stdout.buffer))
