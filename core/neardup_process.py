"""The near-duplicate index in a process of its own, for large gated runs.

In a gated run the index's admits run in a worker thread beside the event loop (core/quality/pipeline.py).
Most of an admit is faiss and numpy, which release the GIL, but the Python between their calls does not:
at 100k rows the admits took about 3x their isolated time, waiting for the GIL the event loop held, and
the event loop waited for them (benchmarks/README.md, "Gates at API speed", session 18). In a process of its own the
index has the other core to itself: the event loop only writes a batch's vectors to a pipe and reads the
answer.

``IndexProcess`` has ``NearDuplicateIndex``'s ``add``/``admit``/``len`` and gives the same answers (the
same code runs in the child, on the same float32 vectors). The child is ``python -m
treesynth.core.neardup_process``: it reads framed requests on stdin and answers on stdout, and ends when
its stdin closes, so a parent that dies (even by SIGKILL) takes it along. It runs in a session of its own:
Ctrl-C in the terminal reaches the parent, which closes it.

Frames (little-endian): a request is one byte (``I`` init, ``A`` add, ``D`` admit; ``a`` and ``d`` the same
with float16 rows), a uint64 payload length and the payload: init a JSON object of ``NearDuplicateIndex``
keyword arguments, add and admit a uint32 row count then the rows as float32 (float16). An answer is ``K`` (ok) or ``E`` (error), a uint64 length and the
payload: admit's keep mask (one byte a row) then each row's max cosine (float32); an error its message
(UTF-8) after its kind (``V`` a ValueError, ``R`` anything else).
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import threading
from typing import Any, BinaryIO

import numpy as np

from .frames import FRAME as _FRAME
from .frames import recv_frame as _recv
from .frames import send_frame as _send

_ROWS = struct.Struct("<I")


class IndexProcessError(RuntimeError):
    """The index process ended or failed."""


def _rows(X: np.ndarray, dim: int) -> tuple[bool, int, bytes]:
    """(whether the rows go as float16, row count, the rows as little-endian bytes): what an add or admit
    request carries. float16 rows (the endpoint embedder's) go as they are, half the bytes of float32; any
    other type goes as float32."""
    half = getattr(X, "dtype", None) == np.float16
    A = np.asarray(X, dtype=np.float16 if half else np.float32)
    if A.ndim == 1:
        A = A.reshape(1, -1)
    if A.ndim != 2 or A.shape[1] != dim:
        raise ValueError(f"expected vectors of dimension {dim}, got an array of shape {A.shape}")
    return half, len(A), np.ascontiguousarray(A, dtype="<f2" if half else "<f4").tobytes()


class IndexProcess:
    """A ``NearDuplicateIndex`` (same keyword arguments) in a child process; thread-safe (one request at a time).

    ``admit_async`` is ``admit`` on the running event loop without a worker thread: it writes the request and
    reads the answer through the pipes in non-blocking mode. A thread blocked on the pipe took the GIL back from
    the event loop each time the child answered or the pipe drained, and with the default switch interval that
    cost the event loop about 0.5 CPU-s per 100k gated rows (benchmarks/README.md, "Gates at API speed", session
    21). The synchronous requests (init, ``add``, ``admit``) put the pipes back in blocking mode; requests never
    overlap (a lock), and each reads its whole answer, so the pipes hold nothing between requests."""

    def __init__(self, dim: int, threshold: float, *, process: subprocess.Popen[bytes] | None = None, **kwargs: Any) -> None:
        """``process``: a child started before (``spawn``), used unless it has ended."""
        self.dim = dim
        self._n = 0
        self._lock = threading.Lock()
        self._nonblocking = False  # the pipes' mode: blocking for the synchronous requests, not for ``admit_async``
        self._proc: subprocess.Popen[bytes] | None = process if process is not None and process.poll() is None else spawn()
        self._request(b"I", json.dumps({"dim": dim, "threshold": threshold, **kwargs}).encode())

    def __len__(self) -> int:
        return self._n

    def _request(self, kind: bytes, *payload: bytes | memoryview) -> bytes:
        with self._lock:
            p = self._proc
            if p is None:
                raise IndexProcessError("the dedup index process is closed")
            assert p.stdin is not None and p.stdout is not None
            self._blocking(p, True)
            try:
                _send(p.stdin, kind, *payload)  # type: ignore[arg-type]
                status, body = _recv(p.stdout)  # type: ignore[arg-type]
            except (EOFError, BrokenPipeError, OSError) as e:
                raise _ended(p) from e
        return _answer(status, body)

    def _blocking(self, p: subprocess.Popen[bytes], on: bool) -> None:
        if self._nonblocking == on:
            assert p.stdin is not None and p.stdout is not None
            os.set_blocking(p.stdin.fileno(), on)
            os.set_blocking(p.stdout.fileno(), on)
            self._nonblocking = not on

    async def _request_async(self, kind: bytes, *payload: bytes | memoryview) -> bytes:
        if not self._lock.acquire(blocking=False):  # a synchronous request in a thread: wait for it there
            return await asyncio.to_thread(self._request, kind, *payload)
        try:
            p = self._proc
            if p is None:
                raise IndexProcessError("the dedup index process is closed")
            assert p.stdin is not None and p.stdout is not None
            self._blocking(p, False)
            loop = asyncio.get_running_loop()
            done = False
            try:
                await _write_all(loop, p.stdin.fileno(), [_FRAME.pack(kind, sum(len(x) for x in payload)), *payload])
                status, n = _FRAME.unpack(await _read_exact(loop, p.stdout.fileno(), _FRAME.size))
                body = await _read_exact(loop, p.stdout.fileno(), n)
                done = True
            except (EOFError, BrokenPipeError, OSError) as e:
                raise _ended(p) from e
            finally:
                if not done:  # cancelled or failed halfway through a frame: the pipes are out of step for good
                    self._proc = None
                    _end(p)
        finally:
            self._lock.release()
        return _answer(status, body)

    def add(self, X: np.ndarray) -> None:
        half, n, data = _rows(X, self.dim)
        self._request(b"a" if half else b"A", _ROWS.pack(n), data)
        self._n += n

    def admit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half, n, data = _rows(X, self.dim)
        return self._verdicts(n, self._request(b"d" if half else b"D", _ROWS.pack(n), data))

    async def admit_async(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``admit`` on the running event loop, without a thread (class docstring). Cancelled halfway, the process
        is closed: a half-written request leaves its pipes out of step."""
        half, n, data = _rows(X, self.dim)
        return self._verdicts(n, await self._request_async(b"d" if half else b"D", _ROWS.pack(n), data))

    def _verdicts(self, n: int, body: bytes) -> tuple[np.ndarray, np.ndarray]:
        keep = np.frombuffer(body, dtype=np.uint8, count=n).astype(bool)
        sims = np.frombuffer(body, dtype="<f4", count=n, offset=n).astype(np.float32)
        self._n += int(keep.sum())
        return keep, sims

    def close(self, wait: bool = True) -> None:
        """End the child: its pipes closed, it ends. ``wait=False``: its exit (freeing the index, about 0.1 s at 100k
        rows) is awaited in a daemon thread, not here (a finished run's export need not wait for it)."""
        with self._lock:
            p, self._proc = self._proc, None
        if p is not None:
            _end(p, wait)

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - at interpreter exit
            pass


def spawn() -> subprocess.Popen[bytes]:
    """Start a child (``IndexProcess``'s ``process``). It imports numpy and faiss at once, then waits for its init: a
    run starts it before it has rows to gate (``SemanticDedup.prestart``), so that its start (about 0.25 CPU-s) falls
    while the tree grows, not on the cores generation needs."""
    env = dict(os.environ)
    # the child's numpy and faiss on one thread each (the index's products are small; idle BLAS threads spin)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    p = subprocess.Popen(
        [sys.executable, "-m", "treesynth.core.neardup_process"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env=env, start_new_session=True,
    )
    for f in (p.stdin, p.stdout):  # bigger pipes: an admit's rows in a few writes, not dozens
        grow_pipe(f)
    return p


def end(p: subprocess.Popen[bytes]) -> None:
    """End a helper child (one that ``spawn`` started and no ``IndexProcess`` took, an embedding worker): its pipes
    closed, its exit awaited in a daemon thread."""
    _end(p, wait=False)


PIPE_BYTES = 1 << 20  # Linux's default most for an unprivileged process (/proc/sys/fs/pipe-max-size)


def grow_pipe(f: Any) -> None:
    """Make a pipe hold ``PIPE_BYTES`` (Linux; elsewhere, or refused, it stays as it is). An admit on the event loop
    writes its request as fast as the pipe takes it, one wake-up per pipe-full: with Linux's default 64 KB, a
    4,096-row request waited for the loop ~50 times, which made admits slower than the thread they replace."""
    try:
        import fcntl

        fcntl.fcntl(f.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (OSError, AttributeError, ImportError, ValueError):
        pass


def _ended(p: subprocess.Popen[bytes]) -> IndexProcessError:
    code = p.poll()
    return IndexProcessError(f"the dedup index process ended unexpectedly (exit code {code if code is not None else 'unknown'})")


def _answer(status: bytes, body: bytes) -> bytes:
    if status == b"K":
        return body
    message = body[1:].decode("utf-8", "replace")
    raise (ValueError if body[:1] == b"V" else IndexProcessError)(message)


def _end(p: subprocess.Popen[bytes], wait: bool = True) -> None:
    """Close the child's pipes (it ends when its stdin does) and wait for it (``wait=False``: in a daemon
    thread); killed after 10 s."""
    for f in (p.stdin, p.stdout):
        try:
            if f is not None:
                f.close()
        except (OSError, ValueError):  # ValueError: a non-blocking stdin's buffer could not be flushed
            pass
    if wait:
        reap(p)
    else:
        threading.Thread(target=reap, args=(p,), name="treesynth-index-exit", daemon=True).start()


def reap(p: subprocess.Popen[bytes]) -> None:
    """Wait for a child whose stdin is closed to end; killed after 10 s."""
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


async def _ready(loop: asyncio.AbstractEventLoop, fd: int, write: bool) -> None:
    """Wait until ``fd`` can be written (``write``) or read."""
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await fut
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def _write_all(loop: asyncio.AbstractEventLoop, fd: int, parts: list[bytes | memoryview]) -> None:
    for part in parts:
        mv = memoryview(part).cast("B")
        while len(mv):
            try:
                mv = mv[os.write(fd, mv):]
            except BlockingIOError:
                await _ready(loop, fd, True)


async def _read_exact(loop: asyncio.AbstractEventLoop, fd: int, n: int) -> bytes:
    parts: list[bytes] = []
    while n:
        try:
            b = os.read(fd, n)
        except BlockingIOError:
            await _ready(loop, fd, False)
            continue
        if not b:
            raise EOFError
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """The child's loop: requests from ``inp``, answers to ``out``, until ``inp`` ends."""
    from .neardup import NearDuplicateIndex

    index: NearDuplicateIndex | None = None
    while True:
        try:
            kind, body = _recv(inp)
        except EOFError:
            return
        try:
            if kind == b"I":
                index = NearDuplicateIndex(**json.loads(body))
                _send(out, b"K")
                continue
            if index is None:
                raise RuntimeError("the index is not initialised")
            (n,) = _ROWS.unpack_from(body)
            X = np.frombuffer(body, dtype="<f4" if kind.isupper() else "<f2", offset=_ROWS.size).reshape(n, index.dim)
            if kind in (b"A", b"a"):
                index.add(X)
                _send(out, b"K")
            elif kind in (b"D", b"d"):
                keep, sims = index.admit(X)
                _send(out, b"K", keep.astype(np.uint8).tobytes(), np.ascontiguousarray(sims, dtype="<f4").tobytes())
            else:
                raise RuntimeError(f"unknown request {kind!r}")
        except ValueError as e:
            _send(out, b"E", b"V" + str(e).encode())
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
            _send(out, b"E", b"R" + f"{type(e).__name__}: {e}".encode())


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this ends (it closes stdin)
    from .neardup import NearDuplicateIndex  # noqa: F401 - imported now, before the parent asks (``spawn``)

    try:
        import faiss  # noqa: F401
    except ImportError:  # the index says so when it needs it
        pass
    try:
        serve(sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, ConnectionResetError):  # the parent closed the pipes mid-request (an admit cancelled): done
        pass
    sys.stdout.flush = lambda: None  # type: ignore[method-assign]  # nothing to say at exit to a parent that left

