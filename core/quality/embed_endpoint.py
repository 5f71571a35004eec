"""An OpenAI-compatible ``/v1/embeddings`` endpoint as the run's row embedder (``--embedder openai/<model>``
or ``hosted_vllm/<model>``, ``--embed-api-base``): OpenAI's text-embedding-3-small, or a vLLM or llama.cpp
server started with embeddings on.

* Batched: at most ``batch_rows`` texts per request (bigger inputs are split), and at most 250,000 of the
  300,000 tokens OpenAI takes in one request by a high estimate (``embed_wire.text_tokens``: half the UTF-8
  bytes; long rows go in smaller requests); at most ``parallel`` requests in flight over all callers; a
  text repeated within one call is sent once. A text's first ``MAX_INPUT_CHARS`` (6,000) characters are
  sent: OpenAI refuses an input over 8,192 tokens, and near-duplicates show in their first thousands of
  characters (the local model reads 256 tokens).
* Cached: vectors go into the run's cache file (core/cache.py, table ``vectors``, float16) keyed by the
  model's name as sent and the text, so a text that can be asked for again (a balance run's real rows, a
  resumed run's stored rows without a vector) is sent once (``read_cache=False``, ``--no-cache``: vectors
  are written, never read). Not a run's newly generated rows (``embed(..., fresh=True)``, the gate
  pipeline): their vectors are kept in the run directory (``row_vectors.f16``) the moment they are
  stored, so the cache could only ever serve the few rows a crash catches between their embedding and
  their store, while its 100k writes and reads cost seconds of CPU and stalled the event loop's response
  cache, which shares the connection and its lock (benchmarks/README.md, "Gates at API speed").
* Counted: ``usage.prompt_tokens`` of each answer (else characters / 4) into the run's ``UsageTotals``
  (``embed_*``; its cost into ``cost``), priced at the config's ``prices`` or litellm's table
  (core/llm/pricing.py; an unpriced model makes the cost unknown, as an unpriced chat model does). No call
  starts once the budget is spent (``BudgetExhausted``), nor while the run is paused or stopping (the run's
  ``LLMClient.gate``); a call in flight holds its most (its texts' estimated tokens) against the budget, as
  the run's LLM calls do (core/llm/budget.py).
* Retried like every call: a dropped or refused connection, a timeout, 429 (its Retry-After honoured) and
  5xx wait with capped exponential backoff and jitter, up to ``max_retries`` times; 400, 401, 403, 404
  raise ``ProviderError`` with one line at once.

Per-token answers (a llama.cpp server on a model without pooling, e.g. a chat model) are mean-pooled, one
text per request: llama-cpp-python's server (0.3.36) slices every text after the first of such a batch
at the wrong offset (``Llama.embed``, pooling NONE: ``ptr[pos + j * n_embd ...]`` with ``pos`` counted in
tokens), so its vectors are unrelated to the text (cosine -0.02 to the same text sent alone, measured). On
the first per-token answer to several texts the embedder sends them again one by one, and every later text
alone (``notices`` says so once).

Vectors come out unit-norm float32 after float16 rounding (core/embeddings.py ``quantise``), as the local
model's do, whether they came from the endpoint or the cache. aiohttp is imported on the first call.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..cache import vector_key
from ..embeddings import quantise
from ..errors import BudgetExhausted, ProviderError, TransientProviderError
from ..llm.budget import SPENT, WAIT, budget_state, call_ceiling, prompt_tokens
from ..llm.embed_wire import (
    Embeddings,
    EmbedEndpoint,
    request_spans,
    resolve_endpoint,
)
from ..llm.pricing import CallPrice, Given, call_price
from ..llm.types import UsageTotals
from .embed_post import post_embeddings, unit_rows
from .embedder import RowEmbedder, SyncEmbed

if TYPE_CHECKING:
    from ..cache import ResponseCache
    from .embed_worker import EmbedWorker

# what of a text is sent: OpenAI's embedding models take at most 8,192 tokens an input and refuse a longer one (HTTP
# 400, on every try: a resumed run would meet the same row again); 6,000 characters stay under that even at 1.3
# tokens a character (Chinese in cl100k), and are ~1,500 tokens of English, more than the local model's 256
MAX_INPUT_CHARS = 6_000
BATCH_ROWS = 256  # OpenAI takes up to 2048 inputs per request; 256 keeps a request near 100 KB of text
PARALLEL = 8


class _Lookup:
    """The default of ``price``: litellm's table, looked up once."""


_LOOKUP = _Lookup()


class _LoopState:
    """What lives on one event loop: the connection pool and the in-flight limit."""

    def __init__(self, session: Any, parallel: int, proxy: tuple[Any, Any] = (None, None)) -> None:
        self.session = session
        self.sem = asyncio.Semaphore(parallel)
        self.proxy, self.proxy_auth = proxy  # from the environment, read once (transports/common.py env_proxy)


class EndpointRowEmbedder(RowEmbedder):
    """Rows to vectors through an OpenAI-compatible embeddings endpoint (see the module docstring)."""

    kind = "endpoint"
    batch_rows = BATCH_ROWS
    parallel = PARALLEL

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 6,
        batch_rows: int = BATCH_ROWS,
        parallel: int = PARALLEL,
        usage: UsageTotals | None = None,
        budget: float | None = None,
        gate: Callable[[bool], Awaitable[None]] | None = None,
        on_usage: Callable[[], None] | None = None,
        cache: ResponseCache | None = None,
        read_cache: bool = True,
        price: CallPrice | None | _Lookup = _LOOKUP,
        prices: Given | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
        endpoint: EmbedEndpoint | None = None,
    ) -> None:
        """``model``: ``openai/<name>`` or ``hosted_vllm/<name>``. ``gate``: awaited before every request
        (the run's ``LLMClient.gate``: pause, stop, budget; ``room=True`` once it holds a slot); without one,
        ``budget`` is checked here. ``on_usage``: called after ``usage`` changed (the engine's progress events).
        ``price``: what a request costs (default: ``call_price`` of the model, ``prices`` winning)."""
        super().__init__(model)
        self.endpoint = endpoint or resolve_endpoint(model, api_base)
        self._base64 = self.endpoint.base64  # asked for, until the server refuses it (rejects_base64)
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.batch_rows = max(1, int(batch_rows))
        self.parallel = max(1, int(parallel))
        self.usage = usage if usage is not None else UsageTotals()
        self.budget = budget
        self._gate_fn = gate
        self.on_usage = on_usage or (lambda: None)
        self.cache = cache
        self.read_cache = read_cache
        self.price: CallPrice | None = call_price(model, prices) if isinstance(price, _Lookup) else price
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.dim: int | None = None
        self.notices: list[str] = []  # what the embedder changed on its own, for the run's log
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._closed_sessions: list[Any] = []
        self._worker: EmbedWorker | None = None  # the process requests go through (``offload``), once started

    def identity(self) -> dict[str, str]:
        return {"kind": self.kind, "model": self.model}

    @property
    def wire_model(self) -> str:
        return self.endpoint.wire_model

    # ---- the session -----------------------------------------------------------
    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        st = self._states.get(loop)
        if st is not None and not st.session.closed:
            return st
        import aiohttp

        from ..llm.transports.common import env_proxy, raise_open_files_limit

        raise_open_files_limit(self.parallel + 256)
        ssl: Any = False
        if self.endpoint.url.startswith("https:"):
            from ..llm.transports.openai_http import _ssl_context

            ssl = _ssl_context()
        connector = aiohttp.TCPConnector(limit=self.parallel, limit_per_host=0, keepalive_timeout=30, ssl=ssl)
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout), headers=self.endpoint.headers(),
        )
        st = self._states[loop] = _LoopState(session, self.parallel, env_proxy(self.endpoint.url))
        return st

    async def aclose(self) -> None:
        """Close the connections of the running loop's session (and drop those of loops gone since)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        st = self._states.pop(loop, None) if loop is not None else None
        if st is not None and not st.session.closed:
            try:
                await st.session.close()
            except Exception:  # noqa: BLE001 - closing never fails a run
                pass
        self.close()

    def close(self) -> None:
        """Synchronous close: the connections of every session, without waiting for them, and the worker process."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
        for loop in list(self._states):
            st = self._states.pop(loop)
            try:
                conn = st.session.connector
                if conn is not None and not conn.closed:
                    conn._close()
                st.session._connector = None
            except Exception:  # noqa: BLE001
                pass

    # ---- embedding -------------------------------------------------------------
    async def embed(self, texts: Sequence[str], *, fresh: bool = False) -> np.ndarray:
        """Unit-norm float32 vectors of ``texts`` (float16-rounded), in order: from the cache where it has
        them, the rest from the endpoint in requests of at most ``batch_rows`` texts. ``fresh`` (a run's new
        rows, whose vectors the run directory keeps): the cache is left out, neither read nor written."""
        return quantise(await self._unit_f16(texts, fresh))

    async def embed_fresh(self, texts: Sequence[str]) -> np.ndarray:
        """The unit vectors rounded to float16, as float16 (``embed``'s before they are widened again)."""
        return await self._unit_f16(texts, True)

    async def _unit_f16(self, texts: Sequence[str], fresh: bool) -> np.ndarray:
        texts = list(texts)
        distinct = list(dict.fromkeys(texts))
        inv: np.ndarray | None = None  # each text's position in ``distinct``, when some text repeats
        if len(distinct) < len(texts):
            where = {t: i for i, t in enumerate(distinct)}
            inv = np.fromiter((where[t] for t in texts), dtype=np.int64, count=len(texts))
        cache = None if fresh else self.cache
        hits: dict[int, np.ndarray] = {}  # position in ``distinct`` -> its cached vector
        keys = [vector_key(self.wire_model, t) for t in distinct] if cache is not None else []
        if cache is not None and self.read_cache and distinct:
            found = self._cache_get(keys)
            for i, k in enumerate(keys):
                v = found.get(k)
                if v is not None and (self.dim is None or len(v) == self.dim):
                    hits[i] = v
                    self.dim = len(v)
            if hits:
                self.usage.embed_cache_hits += len(hits)
                self.on_usage()
        missing = [i for i in range(len(distinct)) if i not in hits] if hits else list(range(len(distinct)))
        # a text's first MAX_INPUT_CHARS characters; at most ``batch_rows`` texts a request, and fewer tokens than
        # OpenAI takes in one (long rows: ``request_chunks``)
        sent = [distinct[i][:MAX_INPUT_CHARS] for i in missing]
        spans = request_spans(sent, self.batch_rows)
        chunks = [missing[a:b] for a, b in spans]
        answered: list[tuple[list[int], np.ndarray]] = []  # (positions, float16 unit vectors)
        if chunks:
            results = await self._all(self._batch(sent[a:b]) for a, b in spans)
            for c, X in zip(chunks, results, strict=True):
                if X.dtype != np.float16:  # the worker process's are unit rows in float16 already
                    X = unit_rows(X)
                if self.dim is None:
                    self.dim = X.shape[1]
                elif X.shape[1] != self.dim:
                    raise ProviderError(
                        f"the embedder {self.model} answered {X.shape[1]}-dimensional vectors after {self.dim}-dimensional ones: "
                        "the endpoint's model changed"
                    )
                H = X.astype(np.float16, copy=False)
                answered.append((c, H))
                if cache is not None:  # in a worker thread: 100k inserts are seconds of the event loop's time
                    await asyncio.to_thread(self._cache_put, [(keys[i], H[j].tobytes()) for j, i in enumerate(c)])
        if not texts:
            return np.zeros((0, self.dim or 0), dtype=np.float16)
        assert self.dim is not None
        if not hits and len(answered) == 1 and inv is None:  # one request, no repeats: as answered
            return answered[0][1]
        U = np.empty((len(distinct), self.dim), dtype=np.float16)  # whole arrays, no per-row step (100k rows a run)
        for i, v in hits.items():
            U[i] = v
        for c, H in answered:
            U[np.asarray(c, dtype=np.int64)] = H
        return U if inv is None else U[inv]

    def embed_blocking(self, texts: list[str]) -> np.ndarray:
        """From a thread with no running event loop: its own loop, and its own connections, closed after."""

        async def once() -> np.ndarray:
            try:
                return await self.embed(texts)
            finally:
                st = self._states.pop(asyncio.get_running_loop(), None)
                if st is not None:
                    await st.session.close()

        return asyncio.run(once())

    def as_sync(self, loop: asyncio.AbstractEventLoop | None = None) -> SyncEmbed:
        """A plain callable for a worker thread: its calls run on ``loop`` (the run's, so they share its
        connections, in-flight limit and cache), or on a loop of their own without one."""
        if loop is None:
            return self.embed_blocking

        def embed(texts: list[str]) -> np.ndarray:
            return asyncio.run_coroutine_threadsafe(self.embed(texts), loop).result()

        return embed

    # ---- one request, retried --------------------------------------------------
    async def _all(self, coros: Any) -> list[np.ndarray]:
        """Every request's vectors; the first failure cancels the rest and is raised."""
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _batch(self, texts: list[str]) -> np.ndarray:
        """One request's vectors; per-token answers to several texts are asked again one text at a time
        (see the module docstring)."""
        got = await self._request(texts)
        if not got.per_token or len(texts) == 1:
            return got.vectors
        if self.batch_rows > 1:
            self.batch_rows = 1
            self.notices.append(
                f"the embeddings endpoint {self.endpoint.api_base} answers per-token vectors (a model without pooling): "
                "one text per request from now on (llama-cpp-python's server mis-slices every text after the first)"
            )
        return np.concatenate(await self._all(self._batch([t]) for t in texts))

    async def _gate(self, room: bool = False) -> None:
        if self._gate_fn is not None:
            await self._gate_fn(room)
            return
        if room and self._budget_state() == WAIT:
            await self.usage.reserved.wait_for(lambda: self._budget_state() != WAIT)
        if self._budget_state() == SPENT:
            raise BudgetExhausted()

    def _budget_state(self) -> str:
        u = self.usage
        return budget_state(self.budget, u.cost, u.reserved.total, u.cost_known)

    def _hold(self, texts: list[str]) -> float | None:
        """Reserve the most a request for ``texts`` can cost while it is in flight (None: no budget or no price)."""
        if self.budget is None or self.price is None:
            return None
        return self.usage.reserved.hold(call_ceiling(self.price, prompt_tokens({"content": t} for t in texts), 0))

    async def _request(self, texts: list[str]) -> Embeddings:
        st = self._state()
        attempt = 0
        while True:
            await self._gate()
            async with st.sem:
                await self._gate(room=True)  # the state may have changed while this waited for a slot
                self.usage.embed_requests += 1
                held = self._hold(texts)
                try:
                    got = await self._post(st, texts)
                except TransientProviderError as e:
                    self.usage.errors += 1
                    if attempt >= self.max_retries:
                        self.on_usage()
                        raise
                    attempt += 1
                    self.usage.retries += 1
                    self.on_usage()
                    delay = self._backoff(attempt, e.retry_after)
                else:
                    self._account(texts, got.prompt_tokens)
                    return got
                finally:  # its cost is counted by now: the reservation goes
                    self._release(held)
            await asyncio.sleep(delay)

    async def _post(self, st: _LoopState, texts: list[str]) -> Embeddings:
        """One try of one request: here, or in the embedding worker process (``offload``)."""
        w = self._worker
        if w is not None and w.serves_this_loop():
            got, refused = await w.post(texts, self._base64)
        else:
            got, refused = await post_embeddings(st.session, self.endpoint, texts, self._base64, st.proxy, st.proxy_auth, self.timeout)
        if refused:  # float lists from now on
            self._base64 = False
        return got

    def offload(self) -> None:
        """Send every request from now on through a worker process of its own (core/quality/embed_worker.py): its
        HTTP, JSON and base64 decoding and float16 rounding leave the event loop's process. Retries, the budget,
        usage and notices stay here."""
        if self._worker is None:
            from .embed_worker import EmbedWorker

            self._worker = EmbedWorker(self.endpoint, self.timeout, self.parallel)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """As the LLM client's: capped exponential with equal jitter, at least the server's Retry-After (at most 10 minutes)."""
        expo = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        delay = random.uniform(expo / 2, expo)
        if retry_after is not None:
            delay = max(delay, min(retry_after, 600.0))
        return delay

    def _release(self, held: float | None) -> None:
        if held is not None:
            self.usage.reserved.release(held)

    def _account(self, texts: list[str], tokens: int | None) -> None:
        u = self.usage
        n_tokens = tokens if tokens is not None else max(1, sum(len(t) for t in texts) // 4)
        u.embed_texts += len(texts)
        u.embed_tokens += n_tokens
        cost = self.price(n_tokens, 0) if self.price is not None else None
        if cost is None:
            u.cost_known = False
        else:
            u.cost += cost
            u.embed_cost += cost
        self.on_usage()

    # ---- the cache ---------------------------------------------------------------
    def _cache_get(self, keys: list[str]) -> dict[str, np.ndarray]:
        assert self.cache is not None
        try:
            found = self.cache.get_vectors(keys)
        except Exception:  # noqa: BLE001 - a closed or broken cache: embed again
            return {}
        return {k: np.frombuffer(b, dtype=np.float16).astype(np.float32) for k, b in found.items() if b and len(b) % 2 == 0}

    def _cache_put(self, items: list[tuple[str, bytes]]) -> None:
        assert self.cache is not None
        try:
            self.cache.put_vectors(items)
        except Exception:  # noqa: BLE001 - the vectors are made; only a later run pays for them again
            pass
