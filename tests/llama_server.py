"""llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) on the shipped SmolLM2 GGUF, as
a process of its own for the real-server tests (tests/test_real_server.py: chat; tests/test_embed_server.py:
``--embedding true``). Started on a free loopback port, waited for until ``GET /v1/models`` answers 200,
terminated (then killed) on exit. The model runs on ONE CPU thread (``THREADS``), prompt and decoding alike: the
suite runs two model units side by side on 2 cores (tests/conftest.py), and llama.cpp's threads spin at their
barriers, so two 2-thread processes (or one beside a busy test worker) slow down several times over, while
1-thread processes share the cores evenly (measured: 1 thread 35 tok/s alone, 32 beside a busy core, two
at once 30 each; 2 threads 58 alone but 20 beside a busy core)."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def skip_without_server() -> None:
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None:
        pytest.skip("needs llama-cpp-python[server]")


THREADS = ("--n_threads", "1", "--n_threads_batch", "1")


@contextlib.contextmanager
def llama_cpp_server(log: Path, *extra: str, n_ctx: int = 4096, ready_s: float = 180) -> Iterator[tuple[subprocess.Popen, int]]:
    """(the server process, its port), ready; ``extra``: more server flags (e.g. ``--embedding true``)."""
    from treesynth.core.llm.transports.local import find_gguf

    gguf = find_gguf()
    port = free_port()
    t0 = time.monotonic()
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "smollm2", "--host", "127.0.0.1",
             "--port", str(port), *THREADS, "--n_ctx", str(n_ctx), "--verbose", "False", *extra],
            stdout=f, stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer /v1/models within {ready_s:g}s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        print(f"\nllama_cpp.server ready in {time.monotonic() - t0:.1f}s on port {port}")
        yield proc, port
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class RestartableServer:
    """llama-cpp-python's server on a port that stays the same across a kill and a restart (the fault
    tests: an OOM kill and a supervisor's restart, a stop with SIGSTOP)."""

    def __init__(self, log: Path, *extra: str, n_ctx: int = 4096) -> None:
        self.log = log
        self.extra = extra
        self.n_ctx = n_ctx
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, ready_s: float = 180) -> RestartableServer:
        from treesynth.core.llm.transports.local import find_gguf

        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llama_cpp.server", "--model", str(find_gguf()), "--model_alias", "smollm2",
                 "--host", "127.0.0.1", "--port", str(self.port), *THREADS, "--n_ctx", str(self.n_ctx),
                 "--verbose", "False", *self.extra],
                stdout=f, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + ready_s
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {ready_s:g}s: {self.log.read_text()[-2000:]}")
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL, as the OOM killer does; the port is free again at once (no TIME_WAIT on the listener)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def __enter__(self) -> RestartableServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            import signal as _signal

            self.proc.send_signal(_signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
