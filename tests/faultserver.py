"""A fault-injecting OpenAI-compatible server on loopback, for tests and benchmarks.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length or chunked request bodies) on a
bare asyncio protocol, so one process serves thousands of concurrent connections cheaply.
It answers the engine's calls with valid, plausible JSON (tests/fake_provider.py: each protocol
step known by the request's schema, see ``step_of``), deterministic per request body, so a whole run
completes through it and a repeated request gets the same answer.

Faults, each with a per-run probability (``FaultConfig``):

    p_500 / p_503      HTTP 500 / 503 with an OpenAI-style error body
    p_429              HTTP 429 with ``Retry-After: <retry_after>``
    p_hang             the request is never answered (until the client gives up or hang_s)
    p_drop             the connection is closed without an answer
    p_malformed        HTTP 200 whose body is not JSON
    p_truncated        a valid completion cut short, ``finish_reason: "length"``
    p_empty            a valid completion with empty content
    p_violation        (criterion steps only) an answer that breaks the partition rules:
                       a pivot classified twice, a catch-all value, or an ancestor's dimension

With ``deck=N`` faults are dealt from shuffled decks of N requests instead of drawn
independently: exact rates, and every kind occurs in every deck (``FaultConfig.flaky``).

Streaming: a request with ``"stream": true`` is answered with server-sent events (tests/sse_answer.py:
``chunk_chars`` characters of content a chunk, the usage chunk when ``stream_options.include_usage`` asks
for it and ``stream_usage`` allows it). Options for the idle timeouts (core/llm/transports/idle.py):

    trickle            seconds between two chunks (a slow server that keeps writing)
    stall              the first this many streamed answers send their first chunks, then go silent
                       (until the client hangs up, or stall_s)
    cut_short          the first this many streamed answers end after their first chunks without a finish
                       reason (llama-cpp-python's server does so when another request arrives)
    no_stream          reject ``stream`` with HTTP 400 naming it (a server that cannot stream)

Latency: ``latency`` seconds plus, per ``latency_dist``, nothing ("fixed"), U(0, spread)
("uniform") or Exp(mean=spread) ("exp"). Usage is reported on every answer (prompt tokens =
prompt characters / 4, or the model's tokenizer with ``count_tokens``, unless ``tokens_in`` /
``tokens_out`` fix them), so litellm prices priceable models (e.g. ``openai/gpt-4o-mini``).

Counters (attributes, and ``GET /_stats`` as JSON): ``requests`` (chat completion POSTs
received), ``in_flight`` and ``max_in_flight``, ``outcomes`` (per kind: ok, 500, 503, 429,
hang, drop, malformed, truncated, empty, violation), ``steps`` (by schema: pivots, criterion,
assign, supplement, samples, verdicts, other). With ``record=True`` every request is logged (body key, step,
epoch, times received / done, outcome) for the crash-soak accounting.

In tests: ``with FaultServer(FaultConfig(...)) as srv: ... srv.url``  (a thread of the test
process). For benchmarks, run it in its own process so it does not share the client's GIL::

    python -m tests.faultserver --latency 0.2 --port-file /tmp/port   # prints the URL
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import socket
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

from tests.fake_provider import Call, FakeProvider
from tests.sse_answer import event, sse_events, wants_usage

# ---------------------------------------------------------------------------
# answers
# ---------------------------------------------------------------------------

def step_of(body: dict) -> str:
    """Which protocol step a request is: its schema's (tests/fake_provider.py), "other" without one."""
    return Call.from_openai(body).step


def answer_for(body: dict, tag: str, violation: str | None = None, fanout: int = 3, supplement: int = 1,
               sample_words: int = 0) -> dict:
    """A valid (or, with ``violation``, deliberately invalid) answer for the request.

    ``tag`` makes samples unique: pass something derived from the request body. It also
    appears as the answer's ``"id"`` (which the engine ignores) and inside every sample, so a
    test can tell from a run directory which requests' answers were persisted (``persisted_keys``).
    """
    provider = FakeProvider(fanout=fanout, supplement=supplement, sample_words=sample_words)
    return {**provider.answer(Call.from_openai(body), violation=violation, tag=tag), "id": tag}


# ---------------------------------------------------------------------------
# configuration and counters
# ---------------------------------------------------------------------------

FAULTS = ("500", "503", "429", "hang", "drop", "malformed", "truncated", "empty")


@dataclass
class FaultConfig:
    latency: float = 0.0
    latency_dist: str = "fixed"  # fixed | uniform | exp
    latency_spread: float = 0.0
    p_500: float = 0.0
    p_503: float = 0.0
    p_429: float = 0.0
    retry_after: float = 0.1
    p_hang: float = 0.0
    hang_s: float = 30.0  # a hung request is released after this (or when the client hangs up)
    p_drop: float = 0.0
    p_malformed: float = 0.0
    p_truncated: float = 0.0
    p_empty: float = 0.0
    p_violation: float = 0.0  # per criterion request
    fanout: int = 3
    supplement: int = 1
    tokens_in: int | None = None
    tokens_out: int | None = None
    seed: int = 0
    record: bool = False
    status_all: int | None = None  # answer every request with this HTTP status (e.g. 401)
    deck: int = 0  # > 0: faults are dealt from shuffled decks of this many requests (exact rates, every kind per deck)
    sample_words: int = 0  # pad every sample field to about this many words
    count_tokens: str | None = None  # count usage with this model's tokenizer (litellm.token_counter) instead of chars / 4
    chunk_chars: int = 64  # a streamed answer's content characters per chunk
    trickle: float = 0.0  # seconds between two chunks of a streamed answer
    stall: int = 0  # the first this many streamed answers stall after their first chunks
    stall_chunks: int = 2  # chunks a stalled answer sends (the role chunk and one of content) before going silent
    stall_s: float = 30.0  # a stalled answer is dropped after this (or when the client hangs up)
    no_stream: bool = False  # reject "stream": true with HTTP 400 naming it
    cut_short: int = 0  # the first this many streamed answers end ([DONE]) after their first chunks, with no finish reason
    stream_usage: bool = True  # send the usage chunk a streamed request asks for

    @classmethod
    def flaky(cls, rate: float = 0.2, **kw: Any) -> FaultConfig:
        """``rate`` of all requests fail, spread evenly over every fault kind (violations extra)."""
        each = rate / len(FAULTS)
        kw.setdefault("deck", round(len(FAULTS) / rate))
        return cls(**{f"p_{k}": each for k in FAULTS}, p_violation=kw.pop("p_violation", rate), **kw)


@dataclass
class Record:
    key: str
    step: str
    epoch: int
    t_recv: float
    t_done: float | None = None
    outcome: str | None = None
    tokens_out: int = 0  # the usage an answer reports (a stalled one sends only its first chunks)


@dataclass
class Stats:
    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    connections: int = 0
    other_requests: int = 0  # GET /models and friends
    outcomes: Counter = field(default_factory=Counter)
    steps: Counter = field(default_factory=Counter)
    auth: set = field(default_factory=set)
    tokens_in: int = 0
    tokens_out: int = 0
    streamed: int = 0  # chat requests that asked for a stream (and were answered with one, unless no_stream)
    plain: int = 0  # chat requests without stream

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["outcomes"] = dict(self.outcomes)
        d["steps"] = dict(self.steps)
        d["auth"] = sorted(self.auth)
        return d


# ---------------------------------------------------------------------------
# the HTTP server
# ---------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    __slots__ = ("srv", "transport", "buf", "busy", "closed")

    def __init__(self, srv: FaultServer) -> None:
        self.srv = srv
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.closed = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.srv.stats.connections += 1

    def connection_lost(self, exc) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._next()

    def _next(self) -> None:
        if self.busy or self.closed:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        try:
            method, target, _ver = head[0].split(" ", 2)
        except ValueError:
            self._abort()
            return
        headers: dict[str, str] = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        start = end + 4
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body, used = _dechunk(self.buf, start)
            if body is None:
                return  # wait for more
            del self.buf[:used]
        else:
            n = int(headers.get("content-length") or 0)
            if len(self.buf) < start + n:
                return
            body = bytes(self.buf[start : start + n])
            del self.buf[: start + n]
        self.busy = True
        keep = headers.get("connection", "").lower() != "close"
        asyncio.ensure_future(self.srv._handle(self, method, target.split("?", 1)[0], headers, body, keep))

    def send(self, status: int, body: bytes, keep: bool, extra: dict[str, str] | None = None, ctype: str = "application/json") -> None:
        if self.closed or self.transport is None:
            return
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}.get(status, "Error")
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
        if not keep:
            lines.append("Connection: close")
        for k, v in (extra or {}).items():
            lines.append(f"{k}: {v}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if not keep:
            self.transport.close()
            self.closed = True
            return
        self.busy = False
        if self.buf:
            self._next()

    def start_stream(self, keep: bool) -> None:
        """Headers of a streamed answer (chunked transfer encoding); ``chunk`` writes its events, ``end_stream`` ends it."""
        if self.closed or self.transport is None:
            return
        lines = ["HTTP/1.1 200 OK", "Content-Type: text/event-stream", "Cache-Control: no-cache", "Transfer-Encoding: chunked"]
        if not keep:
            lines.append("Connection: close")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def chunk(self, data: bytes) -> None:
        if not self.closed and self.transport is not None and data:
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self, keep: bool) -> None:
        if self.closed or self.transport is None:
            return
        self.transport.write(b"0\r\n\r\n")
        if not keep:
            self.transport.close()
            self.closed = True
            return
        self.busy = False
        if self.buf:
            self._next()

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _dechunk(buf: bytearray, pos: int) -> tuple[bytes | None, int]:
    out = bytearray()
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None, 0
        size = int(bytes(buf[pos:eol]).split(b";")[0] or b"0", 16)
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None, 0
            return bytes(out), end + 2
        if len(buf) < pos + size + 2:
            return None, 0
        out += buf[pos : pos + size]
        pos += size + 2


class FaultServer:
    def __init__(self, config: FaultConfig | None = None, port: int = 0) -> None:
        self.config = config or FaultConfig()
        self.stats = Stats()
        self.records: list[Record] = []
        self.epoch = 0
        self._rng = random.Random(self.config.seed)
        self._decks: dict[str, list] = {}
        self._stalls = 0  # streamed answers stalled so far
        self._cuts = 0  # and cut short
        self._port = port
        self.port = 0
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # ---- convenience views -------------------------------------------------
    @property
    def requests(self) -> int:
        return self.stats.requests

    @property
    def in_flight(self) -> int:
        return self.stats.in_flight

    @property
    def failures(self) -> int:
        """Requests that failed at the transport level (the client retries these)."""
        o = self.stats.outcomes
        return sum(o[k] for k in ("500", "503", "429", "hang", "drop", "malformed", "stall", "hung_up", "no_stream", "cut_short"))

    @property
    def invalid(self) -> int:
        """Answers that arrived but are unusable (truncated, empty, rule-breaking)."""
        o = self.stats.outcomes
        return o["truncated"] + o["empty"] + o["violation"]

    def reset(self) -> None:
        self.stats = Stats()
        self.records = []

    # ---- request handling --------------------------------------------------
    def _latency(self) -> float:
        c = self.config
        if c.latency_dist == "uniform":
            return c.latency + self._rng.uniform(0, c.latency_spread)
        if c.latency_dist == "exp" and c.latency_spread > 0:
            return c.latency + self._rng.expovariate(1.0 / c.latency_spread)
        return c.latency

    def _deal(self, name: str, size: int, counts: dict[str, float]) -> str | None:
        deck = self._decks.setdefault(name, [])
        if not deck:
            deck.extend(k for k, p in counts.items() for _ in range(round(p * size)))
            deck.extend([None] * max(0, size - len(deck)))
            self._rng.shuffle(deck)
        return deck.pop()

    def _pick_fault(self, step: str) -> str | None:
        c = self.config
        if c.deck > 0:
            fault = self._deal("faults", c.deck, {k: getattr(c, f"p_{k}") for k in FAULTS})
            if fault is None and step == "criterion" and c.p_violation > 0:
                fault = self._deal("violation", max(1, round(1 / c.p_violation)), {"violation": c.p_violation})
            return fault
        u = self._rng.random()
        for kind in FAULTS:
            p = getattr(c, f"p_{kind}")
            if u < p:
                return kind
            u -= p
        if step == "criterion" and c.p_violation and self._rng.random() < c.p_violation:
            return "violation"
        return None

    async def _handle(self, conn: _Conn, method: str, path: str, headers: dict[str, str], body: bytes, keep: bool) -> None:
        st = self.stats
        if method == "GET" and path.endswith("/_stats"):
            conn.send(200, json.dumps({**st.to_dict(), "cpu_s": time.process_time()}).encode(), keep)
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            st.other_requests += 1
            if path.endswith("/models"):
                conn.send(200, b'{"object": "list", "data": [{"id": "fault-model", "object": "model"}]}', keep)
            else:
                conn.send(404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}', keep)
            return
        st.requests += 1
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        st.auth.add(headers.get("authorization", ""))
        rec = None
        outcome = "error"
        try:
            try:
                req = json.loads(body or b"{}")
                messages = req.get("messages") or []
            except ValueError:
                req, messages = {}, []
            key = hashlib.sha1(json.dumps(req, sort_keys=True).encode()).hexdigest()[:16]
            step = step_of(req) if messages else "other"
            st.steps[step] += 1
            if self.config.record:
                rec = Record(key, step, self.epoch, time.time())
                self.records.append(rec)
            c = self.config
            if c.status_all:
                outcome = str(c.status_all)
                conn.send(c.status_all, json.dumps({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}).encode(), keep)
                return
            streamed = req.get("stream") is True
            if streamed and c.no_stream:
                outcome = "no_stream"
                conn.send(400, json.dumps({"error": {"message": "'stream' is not supported by this server", "type": "invalid_request_error",
                                                     "param": "stream"}}).encode(), keep)
                return
            if streamed:
                st.streamed += 1
            else:
                st.plain += 1
            fault = self._pick_fault(step)
            delay = self._latency()
            if fault == "hang":
                outcome = "hang"
                t_end = time.monotonic() + c.hang_s
                while not conn.closed and time.monotonic() < t_end:
                    await asyncio.sleep(0.05)
                conn._abort()
                return
            if delay > 0:
                await asyncio.sleep(delay)
            if fault == "drop":
                outcome = "drop"
                conn._abort()
                return
            if fault in ("500", "503"):
                outcome = fault
                msg = {"500": "The server had an error while processing your request.", "503": "The engine is currently overloaded."}[fault]
                conn.send(int(fault), json.dumps({"error": {"message": msg, "type": "server_error"}}).encode(), keep)
                return
            if fault == "429":
                outcome = "429"
                conn.send(429, json.dumps({"error": {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"}}).encode(), keep, {"Retry-After": f"{c.retry_after:g}"})
                return
            if fault == "malformed":
                outcome = "malformed"
                if streamed:
                    conn.start_stream(keep)
                    conn.chunk(event({"id": "chatcmpl-broken", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
                    conn.chunk(b'data: {"id": "chatcmpl-broken", "choices": [{"index": 0, "delta": {"cont\n\n')
                    conn.end_stream(keep)
                else:
                    conn.send(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": {"role": "assist', keep)
                return
            violation = None
            if fault == "violation":
                violation = ("twice", "catch_all", "ancestor")[self._rng.randrange(3)]
            content = json.dumps(answer_for(req, key, violation, c.fanout, c.supplement, c.sample_words))
            finish = "stop"
            if fault == "truncated":  # cut inside the first object, so no whole sample is left to salvage
                first = content.find("}")
                cut = min(len(content) // 2, first if first > 0 else len(content))
                content, finish = content[: max(1, cut)], "length"
            elif fault == "empty":
                content = ""
            outcome = fault or "ok"
            if c.count_tokens:
                from treesynth.core.llm import load_litellm

                lit = load_litellm()
                tin = lit.token_counter(model=c.count_tokens, messages=messages)
                tout = lit.token_counter(model=c.count_tokens, text=content, count_response_tokens=True)
            else:
                prompt_chars = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
                tin = max(1, prompt_chars // 4)
                tout = max(1, len(content) // 4)
            tin = c.tokens_in if c.tokens_in is not None else tin
            tout = c.tokens_out if c.tokens_out is not None else tout
            st.tokens_in += tin
            st.tokens_out += tout
            if rec is not None:
                rec.tokens_out = tout
            usage = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
            if streamed:
                outcome = await self._stream(conn, keep, content, finish, usage if wants_usage(req) and c.stream_usage else None,
                                             req.get("model", "fault-model"), f"chatcmpl-{key}", outcome)
                return
            resp = {
                "id": f"chatcmpl-{key}", "object": "chat.completion", "created": int(time.time()),
                "model": req.get("model", "fault-model"), "system_fingerprint": "fp_fault",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish, "logprobs": None}],
                "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout},
            }
            conn.send(200, json.dumps(resp).encode(), keep)
        except Exception:  # noqa: BLE001 - never let the test server die; the client sees a drop
            outcome = "error"
            conn._abort()
        finally:
            st.in_flight -= 1
            st.outcomes[outcome] += 1
            if rec is not None:
                rec.t_done = time.time()
                rec.outcome = outcome

    async def _stream(self, conn: _Conn, keep: bool, content: str, finish: str, usage: dict | None, model: str, cid: str, outcome: str) -> str:
        """Write one streamed answer (``trickle`` seconds between chunks; a stalled one goes silent after its
        first chunks); its outcome."""
        c = self.config
        events = sse_events(content, finish, usage, model=model, cid=cid, chunk_chars=c.chunk_chars)
        stall = self._stalls < c.stall
        if stall:
            self._stalls += 1
        cut = not stall and self._cuts < c.cut_short
        if cut:
            self._cuts += 1
        conn.start_stream(keep)
        for i, data in enumerate(events):
            if conn.closed:
                return "hung_up"
            if cut and i == c.stall_chunks:
                conn.chunk(b"data: [DONE]\n\n")
                conn.end_stream(keep)
                return "cut_short"
            if stall and i == c.stall_chunks:
                t_end = time.monotonic() + c.stall_s
                while not conn.closed and time.monotonic() < t_end:
                    await asyncio.sleep(0.02)
                conn._abort()
                return "stall"
            if i and c.trickle:
                await asyncio.sleep(c.trickle)
            conn.chunk(data)
        conn.end_stream(keep)
        return outcome

    # ---- lifecycle -----------------------------------------------------------
    async def serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._port))
        sock.listen(4096)
        self._server = await self._loop.create_server(lambda: _Conn(self), sock=sock, backlog=4096)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._ready.set()
        async with self._server:
            await self._server.serve_forever()

    def _run_thread(self) -> None:
        try:
            asyncio.run(self.serve())
        except asyncio.CancelledError:
            pass

    def start(self) -> FaultServer:
        self._thread = threading.Thread(target=self._run_thread, daemon=True, name="faultserver")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault server did not start")
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None:

            def _shutdown() -> None:
                server.close()
                for t in asyncio.all_tasks():
                    t.cancel()

            try:
                loop.call_soon_threadsafe(_shutdown)
            except RuntimeError:  # the loop is already closed
                pass
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", help="write the bound port here once listening")
    for f in fields(FaultConfig):
        if f.name in ("record",):
            continue
        typ = {"float": float, "int": int, "str": str}.get(str(f.type).split(" ")[0], float)
        if f.name in ("tokens_in", "tokens_out", "status_all"):
            typ = int
        ap.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=typ, default=None)
    args = ap.parse_args(argv)
    cfg = FaultConfig(**{k: v for k, v in vars(args).items() if k in {f.name for f in fields(FaultConfig)} and v is not None})
    srv = FaultServer(cfg, port=args.port)

    async def run() -> None:
        task = asyncio.ensure_future(srv.serve())
        while not srv._ready.is_set():
            await asyncio.sleep(0.01)
        print(srv.url, flush=True)
        if args.port_file:
            with open(args.port_file, "w") as f:
                f.write(str(srv.port))
        await task

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass



# ---------------------------------------------------------------------------
# checks on a run directory (used by the fault, soak and hostile tests)
# ---------------------------------------------------------------------------

_KEY_IN_SAMPLE = re.compile(r"(?:sample|pivot) ([0-9a-f]{16})-\d+ at depth")
_KEY_IN_ANSWER = re.compile(r'"id": "([0-9a-f]{16})"')


def persisted_keys(run_dir) -> set[str]:
    """Request keys whose answers the run has persisted: in committed response-cache rows or
    in complete lines of samples.jsonl. (A killed process's uncommitted cache rows are gone.)"""
    import sqlite3
    from pathlib import Path

    run_dir = Path(run_dir)
    keys: set[str] = set()
    db = run_dir / "cache.sqlite"
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            for (text,) in con.execute("SELECT text FROM responses"):
                keys.update(_KEY_IN_ANSWER.findall(text or ""))
        except sqlite3.DatabaseError:
            pass
        finally:
            con.close()
    sp = run_dir / "samples.jsonl"
    if sp.exists():
        for line in sp.read_bytes().split(b"\n")[:-1]:  # complete lines only
            keys.update(_KEY_IN_SAMPLE.findall(line.decode("utf-8", "replace")))
    return keys


def check_run(run_dir, size: int, fields: tuple[str, ...] = ("question", "answer")) -> dict[str, Any]:
    """Assert a finished run is sound; returns a few counts.

    Exactly ``size`` rows with unique ids and unique content; every row belongs to a live leaf
    and carries that leaf's path; no generation call written twice (ids are <leaf>/<slot>/<i>);
    a (leaf, slot) is never both a sample call and an empty slot; no leaf holds more rows than
    its target; the tree obeys the partition rules (every pivot classified exactly once,
    distinct non-catch-all values, no ancestor's dimension).
    """
    from pathlib import Path

    from treesynth.core.partition import is_catch_all
    from treesynth.core.text import normalise
    from treesynth.core.treefile import load_tree_readonly

    run_dir = Path(run_dir)
    rows = [json.loads(x) for x in (run_dir / "dataset.jsonl").read_text().splitlines() if x.strip()]
    assert len(rows) == size, f"{len(rows)} rows, expected {size}"
    assert len({r["id"] for r in rows}) == size, "duplicate ids in the dataset"
    assert len({tuple(r[f] for f in fields) for r in rows}) == size, "duplicate samples in the dataset"
    samples = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines() if x.strip()]
    ids = [s["id"] for s in samples]
    assert len(set(ids)) == len(ids), "a generation call was written twice"
    for s_ in samples:
        assert s_["id"].startswith(f"{s_['leaf_id']}/{s_['slot']}/"), s_["id"]
    slots_path = run_dir / "slots.jsonl"
    empty = {(e["leaf_id"], e["slot"]) for e in map(json.loads, slots_path.read_text().splitlines())} if slots_path.exists() else set()
    assert not empty & {(s_["leaf_id"], s_["slot"]) for s_ in samples}, "a slot is both filled and empty"
    tree = load_tree_readonly(run_dir)
    per_leaf: Counter = Counter(s_["leaf_id"] for s_ in samples)
    for lid, n in per_leaf.items():
        node = tree.nodes.get(lid)
        assert node is not None and node.status == "leaf", f"rows for {lid}, which is not a leaf"
        assert n <= node.target, f"leaf {lid} has {n} rows for a target of {node.target}"
    for r in rows:
        node = tree.get(r["leaf_id"])
        want = tree.path(r["leaf_id"])
        if node.values:  # open-ended: the last value is sampled from the list
            assert [p["dimension"] for p in r["path"]] == [p["dimension"] for p in want]
            assert r["path"][-1]["value"] in node.values
        else:
            assert r["path"] == want, (r["path"], want)
    expanded = [n for n in tree if n.status == "expanded"]
    for n in expanded:
        kids = [tree.get(c) for c in n.children if c in tree.nodes and tree.get(c).status != "pruned"]
        values = [k.value or "" for k in kids]
        assert len({normalise(v) for v in values}) == len(values), f"node {n.id}: repeated values {values}"
        for v in n.split_values:
            assert not is_catch_all(v["value"]), f"node {n.id}: catch-all value {v['value']!r}"
        assigned = Counter(i for v in n.split_values for i in v["pivots"])
        assert sorted(assigned) == list(range(len(n.pivots))), f"node {n.id}: pivots not all classified"
        assert set(assigned.values()) <= {1}, f"node {n.id}: a pivot classified twice"
        anc = [normalise(d) for d in tree.ancestor_dimensions(n.id)]
        assert normalise(n.split_dimension or "") not in anc, f"node {n.id}: an ancestor's dimension"
    return {"rows": len(rows), "samples_written": len(samples), "leaves": len(tree.leaves()), "expanded": len(expanded)}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
