"""A native OpenAI-compatible chat-completions transport: one aiohttp request per call.

litellm costs 3.5-4 ms of CPU per call (the OpenAI SDK, pydantic objects, its logging and
cost machinery), which caps one event loop near 250-280 calls/s. For the models that speak the
OpenAI chat API (``openai/<model>``, and ``hosted_vllm/<model>`` with an api_base) this
transport posts the request itself: orjson in and out, one pooled ``aiohttp.ClientSession`` per
event loop, prices looked up once (core/llm/pricing.py). It behaves like ``LiteLLMTransport``: the same ``Completion``
fields, the same split between ``ProviderError`` (auth, unknown model, rejected request) and
``TransientProviderError`` (429/5xx with Retry-After, timeouts, dropped connections, malformed
bodies), and the same structured-output negotiation (core/llm/structured.py): ``json_schema``, then llama.cpp's
``json_object`` + schema, then ``json_object``, then none (tolerant parsing), stepped down at once when
the endpoint rejects one, whatever the status code.

Calls are streamed (server-sent events, ``stream_options.include_usage`` for the token counts; core/llm/stream.py
says why): ``timeout`` bounds the silence between chunks and ``first_token_timeout`` the wait for the first
(core/llm/transports/idle.py), so a slow server that keeps writing is never cut off and a stalled one is
noticed within the gap. An endpoint that rejects ``stream_options`` streams without it; one that rejects
``stream`` (HTTP 400/422 naming it) or ends a stream without its finish reason (llama-cpp-python's server
cuts a stream short when another request arrives) gets plain requests from then on, bounded as a whole by
the first token's limit; a server that ignores ``stream`` and answers one JSON body is read as before.

aiohttp is imported on the first call, never at import time (``treesynth --help`` stays fast).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from ...errors import ConfigError, ProviderError, ProviderTimeout, TransientProviderError
from .. import stream, structured
from ..pricing import CallPrice, call_price
from ..types import Completion, LLMRequest
from ..wire import completion_from
from .common import env_proxy, error_message, openai_headers, raise_open_files_limit, retry_after_from_headers
from .idle import FIRST, IdleTimeout
from .sse import DONE, SSEReader

if TYPE_CHECKING:
    import ssl

    from ...config import RunConfig

OPENAI_BASE = "https://api.openai.com/v1"
TRANSIENT_STATUS = structured.RETRYABLE_STATUS
UNREACHABLE_STATUS = frozenset({502, 503, 504})  # a gateway with no server behind it, a server down or overloaded


class _Lookup:
    """The default of ``OpenAIHTTPTransport(price=...)``: look the model's prices up."""


_LOOKUP = _Lookup()


def _api_key(model: str, api_base: str | None) -> str | None:
    """The key litellm would send: the provider's environment variable, else a placeholder for a
    local server that needs none. Read from the environment only; never stored with the run."""
    if model.startswith("hosted_vllm/"):
        return os.environ.get("HOSTED_VLLM_API_KEY") or "fake-api-key"
    key = os.environ.get("OPENAI_API_KEY")
    if key:
        return key
    return "not-needed" if api_base else None


def _ssl_context() -> ssl.SSLContext:
    import ssl

    if os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"):
        return ssl.create_default_context()
    try:
        import certifi

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:
        return ssl.create_default_context()


def _error_param(raw: bytes) -> str:
    try:
        err = orjson.loads(raw).get("error")
        return str(err.get("param") or "") if isinstance(err, dict) else ""
    except (orjson.JSONDecodeError, AttributeError):
        return ""


class OpenAIHTTPTransport:
    """``Transport`` for OpenAI-compatible chat completions over aiohttp (see the module docstring)."""

    def __init__(self, cfg: RunConfig, *, price: CallPrice | None | _Lookup = _LOOKUP) -> None:
        """``price``: ``(tokens_in, tokens_out, cached_in) -> USD`` or None (unpriced); default: litellm's table, looked up once."""
        self.model = cfg.model  # the cache key's model: the same as LiteLLMTransport's, so caches carry over
        provider, _, self.wire_model = cfg.model.partition("/")
        if provider == "hosted_vllm":
            base = cfg.api_base or os.environ.get("HOSTED_VLLM_API_BASE")
        else:
            base = cfg.api_base or os.environ.get("OPENAI_BASE_URL") or os.environ.get("OPENAI_API_BASE") or OPENAI_BASE
        if not base:
            raise ConfigError(f"--transport http: {cfg.model} needs --api-base")
        self.api_base = base.rstrip("/")
        self.url = self.api_base + "/chat/completions"
        self.timeout = float(cfg.timeout)  # the longest silence between two chunks of a streamed answer
        self.first_token_timeout = float(cfg.first_token_s)  # the wait for the first chunk; a plain request's whole limit
        # streaming, negotiated like structured output: stream_options dropped, then stream itself, when the endpoint rejects them
        self.stream = True
        self.stream_usage = True
        self.notices: list[str] = []  # what this transport changed on its own, for the run's log
        self.limit = max(1, int(cfg.concurrency))
        # structured output: json_schema, stepped down per core/llm/structured.py when this endpoint rejects it
        self.negotiator = structured.Negotiator(structured.JSON_SCHEMA)
        # api.openai.com wants max_completion_tokens (reasoning models reject max_tokens); other servers get max_tokens
        self.max_tokens_key = "max_completion_tokens" if self.api_base.startswith(OPENAI_BASE) else "max_tokens"
        self.send_temperature = True
        self.extra_body = dict(cfg.extra_body)
        key = _api_key(cfg.model, cfg.api_base)
        self._key = key
        headers = openai_headers(key, provider == "openai")
        self._headers = headers
        # None: unpriced model, cost unknown (as with litellm); the config's prices win over litellm's table
        self._price: CallPrice | None = call_price(cfg.model, cfg.prices) if isinstance(price, _Lookup) else price
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: Any = None  # aiohttp.ClientSession (aiohttp is imported on the first call)
        self._old: list[Any] = []  # sessions of event loops this transport was used on before
        self._proxy: Any = None
        self._proxy_auth: Any = None
        self._timeout_exc: tuple[type[BaseException], ...] = (TimeoutError, asyncio.TimeoutError)
        self._client_exc: tuple[type[BaseException], ...] = (OSError,)

    @property
    def price(self) -> CallPrice | None:
        """What a call costs at interactive prices (None: unpriced)."""
        return self._price

    def batch_api(self) -> Any:
        """A client for this endpoint's Files + Batches routes, with the same key (core/llm/batch)."""
        from ..batch.openai_api import OpenAIBatchAPI

        return OpenAIBatchAPI(self.api_base, self._key, body_of=lambda req: self.body(req)[0], timeout_s=max(self.timeout, 120.0))

    # ---- session -------------------------------------------------------------
    def _open_session(self, loop: asyncio.AbstractEventLoop) -> Any:
        import aiohttp

        self._timeout_exc = (TimeoutError, asyncio.TimeoutError, aiohttp.ServerTimeoutError)
        self._client_exc = (aiohttp.ClientError, OSError)
        if self._session is not None:
            self._old.append(self._session)
        raise_open_files_limit(self.limit + 256)
        connector = aiohttp.TCPConnector(
            limit=self.limit, limit_per_host=0, keepalive_timeout=30, ttl_dns_cache=300,
            ssl=_ssl_context() if self.url.startswith("https:") else False,
        )
        self._proxy, self._proxy_auth = env_proxy(self.url)
        self._session = aiohttp.ClientSession(
            # no total limit: a call is bounded by its silences (IdleTimeout, in __call__), not its length
            connector=connector, timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.first_token_timeout), headers=self._headers,
        )
        self._loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the session of the running loop (and drop those of loops gone since)."""
        session, self._session, self._loop = self._session, None, None
        if session is not None and not session.closed:
            try:
                await session.close()
            except Exception:  # noqa: BLE001
                pass
        self._close_old()

    def close(self) -> None:
        """Synchronous close (the run's close): closes the connections without waiting for them."""
        if self._session is not None:
            self._old.append(self._session)
            self._session, self._loop = None, None
        self._close_old()

    def _close_old(self) -> None:
        for s in self._old:
            try:
                conn = s.connector
                if conn is not None and not conn.closed:
                    conn._close()  # closes every transport now; the awaitable part only waits for them
                s._connector = None
            except Exception:  # noqa: BLE001
                pass
        self._old = []

    # ---- the call --------------------------------------------------------------
    @property
    def schema_mode(self) -> str:
        """The structured-output mode in force for this endpoint (see core/llm/structured.py)."""
        return self.negotiator.mode

    def body(self, req: LLMRequest, *, streamed: bool = False) -> tuple[dict[str, Any], str | None]:
        """The request body and the structured-output mode it carries (None: no response_format);
        ``streamed``: ask for server-sent events (the batch API's lines never are)."""
        body: dict[str, Any] = {"model": self.wire_model, "messages": req.messages, self.max_tokens_key: req.max_tokens}
        if streamed:
            body["stream"] = True
            if self.stream_usage:
                body["stream_options"] = stream.STREAM_OPTIONS
        if self.send_temperature:
            body["temperature"] = req.temperature
        if req.seed is not None:
            body["seed"] = req.seed
        mode, rf = self.negotiator.response_format(req.schema, req.schema_name)
        if self.negotiator.mode == structured.JSON_OBJECT_SCHEMA:
            # an endpoint that speaks llama.cpp's dialect samples like the embedded model: no repetition penalty
            # (llama-cpp-python's server applies 1.1 by default; a JSON answer repeats its keys, quotes and
            # booleans, and the penalty turns a judge's third `true` into `false`: see structured.LLAMA_CPP_SAMPLING)
            body.update(structured.LLAMA_CPP_SAMPLING)
        if self.extra_body:
            body.update(self.extra_body)
        if rf is None:
            return body, None
        body["response_format"] = rf
        return body, mode

    async def __call__(self, req: LLMRequest) -> Completion:
        loop = asyncio.get_running_loop()
        session = self._session if self._loop is loop else self._open_session(loop)
        # each pass re-sends at once after a negotiation step: structured output's ladder, then stream_options and stream
        for _ in range(len(structured.LADDER) + 2):
            streamed = self.stream
            body, sent_mode = self.body(req, streamed=streamed)
            sent_usage = streamed and self.stream_usage
            answer = stream.StreamedAnswer()
            watch = IdleTimeout(self.first_token_timeout, self.timeout)
            try:
                with watch:
                    async with session.post(self.url, data=orjson.dumps(body), proxy=self._proxy, proxy_auth=self._proxy_auth) as resp:
                        status = resp.status
                        if status != 200:
                            raw = await resp.read()
                            self._raise_for(status, raw, resp.headers, sent_mode, streamed, sent_usage)
                        if streamed and resp.content_type != "application/json":
                            await self._read_events(resp, answer, watch, req)
                            if answer.complete:
                                return answer.completion(req, self._price)
                            self._cut_short(answer, req)
                        raw = await resp.read()  # a plain request, or a server that ignores stream: one JSON body
            except _Downgrade:
                continue  # re-sent at once one step down: not a transient error, no backoff
            except (ProviderError, TransientProviderError):
                raise
            except self._timeout_exc:
                if watch.expired == FIRST or not answer.chunks:
                    limit = "the first token's limit" if streamed else "a plain request's limit"
                    raise ProviderTimeout(f"no answer from {self.api_base} within {self.first_token_timeout:g}s ({limit})", unreachable=True) from None
                if answer.complete:  # whole, and the server never closed the stream after its end
                    return answer.completion(req, self._price)
                raise ProviderTimeout(
                    f"the answer from {self.api_base} stalled: nothing for {self.timeout:g}s after {answer.chunks} chunks",
                    unreachable=True, partial=answer.partial(req, self._price),
                ) from None
            except self._client_exc as e:
                if answer.complete:  # whole: the connection broke after the finish reason (the usage chunk, [DONE] lost)
                    return answer.completion(req, self._price)
                raise TransientProviderError(
                    f"connection to {self.api_base} failed: {type(e).__name__}: {self._line(e)}", unreachable=True, partial=answer.partial(req, self._price),
                ) from None
            break
        else:  # unreachable: each pass steps down, and the bottom step sends no response_format
            raise ProviderError(f"{self.api_base} rejects every structured-output form")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise TransientProviderError("malformed response: the body is not JSON") from None
        return completion_from(doc, req, self._price)

    def _cut_short(self, answer: stream.StreamedAnswer, req: LLMRequest) -> NoReturn:
        """A stream that ended without its finish reason: plain requests from now on (said once in ``notices``),
        and this call is asked again (a transient error carrying what it received)."""
        if self.stream:
            self.stream = False
            self.notices.append(stream.cut_short_notice(self.api_base))
        raise TransientProviderError(
            f"{self.api_base} ended a streamed answer before its finish reason: asked again without streaming",
            retry_after=0.0, partial=answer.partial(req, self._price),
        )

    async def _read_events(self, resp: Any, answer: stream.StreamedAnswer, watch: IdleTimeout, req: LLMRequest) -> None:
        """Read a streamed answer into ``answer`` up to the body's end (so the connection is reused), each
        event's data a sign of progress; a malformed event or an error reported midway is a transient error
        carrying what arrived."""
        reader = SSEReader()
        content = resp.content
        while True:
            chunk = await content.readany()
            for data in reader.feed(chunk) if chunk else reader.close():
                if answer.done:
                    continue
                if data == DONE:
                    answer.done = True
                    continue
                watch.progress()
                try:
                    answer.add(orjson.loads(data))
                except orjson.JSONDecodeError:
                    raise TransientProviderError("malformed stream: an event's data is not JSON", partial=answer.partial(req, self._price)) from None
                except TransientProviderError as e:
                    e.partial = answer.partial(req, self._price)
                    raise
            if not chunk:
                return

    def _line(self, e: BaseException) -> str:
        s = " ".join(str(e).split())[:200] or type(e).__name__
        return self._scrub(s)

    def _scrub(self, s: str) -> str:
        key = self._key
        return s.replace(key, "<redacted>") if key and len(key) >= 8 and key in s else s

    def _raise_for(self, status: int, raw: bytes, headers: Mapping[str, str], sent_mode: str | None, streamed: bool = False,
                   sent_usage: bool = False) -> None:
        msg = self._scrub(error_message(raw))
        param = _error_param(raw)
        refused = stream.refusal(status, msg, param) if streamed else None
        if refused == stream.STREAM_OPTIONS_REFUSED and sent_usage:
            self.stream_usage = False  # keep streaming; the tokens are counted from the text
            raise _Downgrade()
        if refused is not None:
            self.stream = False  # plain requests from now on, bounded by the first token's limit
            raise _Downgrade()
        verdict = self.negotiator.classify(status, msg, param=param, sent_mode=sent_mode)
        if verdict == structured.DOWNGRADE:
            self.negotiator.downgrade(sent_mode, msg)
            raise _Downgrade()
        if verdict == structured.DETERMINISTIC:
            raise ProviderError(self.negotiator.deterministic_message(status, msg, self.url))
        if verdict == structured.TRANSIENT:
            raise TransientProviderError(
                f"HTTP {status} from {self.api_base}: {msg}", retry_after_from_headers(headers), unreachable=status in UNREACHABLE_STATUS,
            )
        if status in (401, 403):
            raise ProviderError(f"authentication failed for {self.model}: HTTP {status}: {msg}")
        if status == 404:
            raise ProviderError(f"model {self.model!r} not found by the provider: HTTP 404: {msg}")
        if status in (400, 422):
            low = msg.lower()
            if self.max_tokens_key == "max_tokens" and "max_completion_tokens" in low:
                self.max_tokens_key = "max_completion_tokens"
                raise TransientProviderError("the model wants max_completion_tokens; retrying with it", retry_after=0.0)
            if self.max_tokens_key == "max_completion_tokens" and param == "max_completion_tokens" and "unrecognized" in low:
                self.max_tokens_key = "max_tokens"
                raise TransientProviderError("the server wants max_tokens; retrying with it", retry_after=0.0)
            if self.send_temperature and (param == "temperature" or "'temperature'" in low) and ("support" in low or "unsupported" in low):
                self.send_temperature = False  # e.g. reasoning models: only the default temperature
                raise TransientProviderError("the model takes no temperature; retrying without it", retry_after=0.0)
        raise ProviderError(f"the provider rejected the request for {self.model}: HTTP {status}: {msg}")


class _Downgrade(Exception):
    """Internal: the endpoint rejected the response_format; the call re-sends one step down."""
