"""The endpoint embedder's requests in a process of their own, for large gated runs.

A gated run's event loop is its bottleneck on two cores (benchmarks/README.md, "Gates at API speed"). Of
what the gates add to it, the embedding requests were the largest part: at 100k rows the loop wrote 40 MB
of requests, read 205 MB of base64 answers through aiohttp, parsed them and rounded the vectors to float16,
and the traffic also slowed the loop's other work (cache). With the vectors handed to the loop from memory
instead, its CPU fell by 1.0-1.4 s of about 2.5 s (session 25). Here a child process makes those requests:
the loop sends a request's texts (one pipe write) and reads its unit float16 vectors (768 bytes a row at
384 dimensions).

Only one try of one request runs in the child (``post_embeddings``, the same function the embedder runs in
process). Everything else stays with the embedder in the run's process: the budget and the run's gate
before each try, retries and their backoff, usage and cost, per-token answers asked again one by one, and
its notices. An error comes back as its kind and message and is raised there as the same exception.

The child is ``python -m treesynth.core.quality.embed_worker``. It reads frames (core/frames.py) on stdin and
answers on stdout, many requests at once (at most the embedder's ``parallel`` connections), each answer
naming its request; it ends when its stdin closes, so a parent that dies takes it along. The API key
travels in the first frame, through the pipe, never on disk or in the command line.

Frames: ``I`` (init, JSON: the endpoint, ``timeout``, ``parallel``); ``P`` a request: ``REQUEST`` (its id, 1
to ask for base64) then the texts as a JSON list. Answers: ``K``: ``ANSWER`` (id, flags: 1 per-token, 2 base64
refused; prompt tokens or -1; rows; dimension) then the rows as little-endian float16; ``E``: the id (uint64)
then JSON ``{"kind", "message", "retry_after", "refused"}``.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
from typing import Any

import numpy as np
import orjson

from ..errors import ProviderError, ProviderTimeout, TransientProviderError
from ..frames import FRAME, send_frame
from ..llm.embed_wire import Embeddings, EmbedEndpoint
from ..neardup_process import end, grow_pipe

REQUEST = struct.Struct("<QB")  # request id, ask for base64
ANSWER = struct.Struct("<QBqII")  # request id, flags, prompt tokens (-1: not given), rows, dimension
ERROR_ID = struct.Struct("<Q")
PER_TOKEN, REFUSED = 1, 2
_ERRORS: dict[str, type[Exception]] = {
    "ProviderError": ProviderError, "ProviderTimeout": ProviderTimeout, "TransientProviderError": TransientProviderError,
}
PIPE_LIMIT = 1 << 26  # the most one frame may hold (64 MiB: 40,000 rows of 768 bytes with room to spare)


class EmbedWorkerError(ProviderError):
    """The worker process ended or failed (not worth retrying: the run stops, and resumes)."""


class EmbedWorker:
    """The parent's side: ``post`` sends one try of one request and waits for its answer. It serves the event loop
    of its first ``post`` (``serves_this_loop``); the embedder makes other loops' requests itself."""

    def __init__(self, endpoint: EmbedEndpoint, timeout: float, parallel: int) -> None:
        self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-m", "treesynth.core.quality.embed_worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stdin is not None
        for f in (self._proc.stdin, self._proc.stdout):
            grow_pipe(f)
        init = {
            "model": endpoint.model, "wire_model": endpoint.wire_model, "api_base": endpoint.api_base, "key": endpoint.key,
            "timeout": timeout, "parallel": parallel,
        }
        send_frame(self._proc.stdin, b"I", json.dumps(init).encode())  # type: ignore[arg-type]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._transport: asyncio.WriteTransport | None = None
        self._rtransport: asyncio.ReadTransport | None = None
        self._reading: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[tuple[Embeddings, bool]]] = {}
        self._next = 0
        self._failed: Exception | None = None

    def serves_this_loop(self) -> bool:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        return self._proc is not None and (self._loop is None or self._loop is loop)

    async def _connect(self) -> None:
        if self._connecting is None:
            self._loop = asyncio.get_running_loop()
            self._connecting = self._loop.create_future()
            try:
                p = self._proc
                if p is None:
                    raise EmbedWorkerError("the embedding worker process is closed")
                reader = asyncio.StreamReader(limit=PIPE_LIMIT)
                self._rtransport, _ = await self._loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), p.stdout)
                self._transport, _ = await self._loop.connect_write_pipe(asyncio.BaseProtocol, p.stdin)
                self._reading = asyncio.ensure_future(self._read(reader))
                self._connecting.set_result(None)
            except BaseException as e:
                self._connecting.set_exception(e)
                self._connecting.exception()  # retrieved: this caller raises it, later ones await it
                raise
        await asyncio.shield(self._connecting)

    async def post(self, texts: list[str], base64: bool) -> tuple[Embeddings, bool]:
        """(the answer, whether the server refused base64) of one try; raises what the try raised."""
        await self._connect()
        if self._failed is not None:
            raise self._failed
        assert self._loop is not None and self._transport is not None
        i = self._next
        self._next += 1
        fut: asyncio.Future[tuple[Embeddings, bool]] = self._loop.create_future()
        self._waiting[i] = fut
        payload = REQUEST.pack(i, 1 if base64 else 0) + orjson.dumps(texts)
        self._transport.write(FRAME.pack(b"P", len(payload)) + payload)  # whole frames into the transport's buffer
        try:
            return await fut
        finally:
            self._waiting.pop(i, None)  # cancelled: its answer, when it comes, is dropped

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                kind, n = FRAME.unpack(await reader.readexactly(FRAME.size))
                body = await reader.readexactly(n)
                if kind == b"K":
                    i, flags, tokens, rows, dim = ANSWER.unpack_from(body)
                    X = np.frombuffer(body, dtype="<f2", count=rows * dim, offset=ANSWER.size).reshape(rows, dim)
                    result: Any = (Embeddings(X, tokens if tokens >= 0 else None, bool(flags & PER_TOKEN)), bool(flags & REFUSED))
                else:
                    (i,) = ERROR_ID.unpack_from(body)
                    result = _error(orjson.loads(body[ERROR_ID.size:]))
                fut = self._waiting.get(i)
                if fut is None or fut.done():
                    continue
                if isinstance(result, Exception):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError, struct.error) as e:
            self._fail(EmbedWorkerError(f"the embedding worker process ended unexpectedly ({type(e).__name__}{self._exit()})"))

    def _exit(self) -> str:
        code = self._proc.poll() if self._proc is not None else None
        return f", exit code {code}" if code is not None else ""

    def _fail(self, e: Exception) -> None:
        self._failed = e
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(e)

    def close(self) -> None:
        """End the child (its stdin closed); its exit is awaited in a daemon thread."""
        p, self._proc = self._proc, None
        if p is None:
            return
        self._fail(EmbedWorkerError("the embedding worker process is closed"))
        if self._reading is not None:
            self._reading.cancel()
        transports: list[Any] = [t for t in (self._transport, self._rtransport) if t is not None]
        if transports and self._loop is not None and not self._loop.is_closed():
            for t in transports:  # off the event loop's watch; a request still buffered is dropped
                try:
                    t.abort() if hasattr(t, "abort") else t.close()
                except Exception:  # noqa: BLE001 - closing never fails a run
                    pass
        end(p)  # its pipes closed (it ends when its stdin does), its exit awaited in a daemon thread


def _error(d: dict[str, Any]) -> Exception:
    cls = _ERRORS.get(str(d.get("kind")))
    message = str(d.get("message") or "the embedding worker failed")
    if cls is None:
        return EmbedWorkerError(f"the embedding worker failed: {message}")
    if issubclass(cls, TransientProviderError):
        return cls(message, d.get("retry_after"))
    return cls(message)


# ---- the child ------------------------------------------------------------------------------------------------


async def serve() -> None:
    """The child: requests from stdin, answers on stdout, until stdin ends."""
    import aiohttp

    from ..llm.transports.common import env_proxy
    from .embed_post import post_embeddings, unit_f16

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=PIPE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    out, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, sys.stdout.buffer)
    try:
        kind, n = FRAME.unpack(await reader.readexactly(FRAME.size))
        init = json.loads(await reader.readexactly(n))
    except asyncio.IncompleteReadError:
        return
    ep = EmbedEndpoint(init["model"], init["wire_model"], init["api_base"], init.get("key"))
    timeout = float(init["timeout"])
    parallel = max(1, int(init["parallel"]))
    ssl: Any = False
    if ep.url.startswith("https:"):
        from ..llm.transports.openai_http import _ssl_context

        ssl = _ssl_context()
    connector = aiohttp.TCPConnector(limit=parallel, limit_per_host=0, keepalive_timeout=30, ssl=ssl)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), headers=ep.headers())
    proxy, proxy_auth = env_proxy(ep.url)

    def answer(kind: bytes, *parts: bytes) -> None:
        out.write(FRAME.pack(kind, sum(len(p) for p in parts)) + b"".join(parts))

    async def one(body: bytes) -> None:
        i, b64 = REQUEST.unpack_from(body)
        try:
            texts = orjson.loads(body[REQUEST.size:])
            got, refused = await post_embeddings(session, ep, texts, bool(b64), proxy, proxy_auth, timeout)
            H = np.ascontiguousarray(unit_f16(got.vectors), dtype="<f2")
            flags = (PER_TOKEN if got.per_token else 0) | (REFUSED if refused else 0)
            tokens = got.prompt_tokens if got.prompt_tokens is not None else -1
            answer(b"K", ANSWER.pack(i, flags, tokens, H.shape[0], H.shape[1] if H.ndim == 2 else 0), H.tobytes())
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - the parent raises it as the same kind
            kind = type(e).__name__ if type(e).__name__ in _ERRORS else "other"
            message = str(e) if kind != "other" else f"{type(e).__name__}: {e}"
            answer(b"E", ERROR_ID.pack(i), orjson.dumps({"kind": kind, "message": ep.scrub(message), "retry_after": getattr(e, "retry_after", None)}))

    tasks: set[asyncio.Task[None]] = set()
    try:
        while True:
            try:
                kind, n = FRAME.unpack(await reader.readexactly(FRAME.size))
                body = await reader.readexactly(n)
            except asyncio.IncompleteReadError:
                return
            t = asyncio.ensure_future(one(body))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
    finally:
        for t in list(tasks):
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await session.close()


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends (it closes stdin)
    try:
        asyncio.run(serve())
    except (BrokenPipeError, ConnectionResetError):  # the parent left
        pass
