"""The litellm transport: any provider litellm knows (or a litellm Router from the config), and the
embedded model (``local/smollm2``, registered with litellm by core/llm/transports/local.py).

OpenAI-compatible models (litellm's ``openai`` and ``hosted_vllm`` providers) are streamed, as on the http
transport (core/llm/stream.py says why): ``timeout`` bounds the silence between chunks, ``first_token_timeout``
the wait for the first (core/llm/transports/idle.py), and an endpoint that rejects ``stream_options`` or
``stream`` (or ends a stream without its finish reason, as llama-cpp-python's server does when another
request arrives) is negotiated down once. Other providers, a Router and the embedded model are called as before,
with ``first_token_timeout`` as the whole call's limit (the embedded model keeps ``timeout``).

litellm is imported on the first call (``load_litellm``, core/llm/litellm_loader.py), never at import time: it takes seconds.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, NoReturn

from ...errors import ProviderError, ProviderTimeout, TransientProviderError, first_line
from .. import stream, structured
from ..litellm_loader import load_litellm
from ..pricing import given_price, litellm_price
from ..types import Completion, LLMRequest
from .common import retry_after_from_headers
from .idle import FIRST, IdleTimeout

if TYPE_CHECKING:
    from ...config import RunConfig

# litellm's providers that speak OpenAI's chat completions, so stream them alike (stream_options included)
STREAMED_PROVIDERS = frozenset({"openai", "hosted_vllm"})
UNREACHABLE_STATUS = frozenset({502, 503, 504})
CUT_SHORT = "ended before a finish_reason"  # litellm's error for a stream that ended without its finish reason


def _retry_after(e: BaseException) -> float | None:
    """The Retry-After a litellm exception carries (its httpx response's headers, or litellm's copy)."""
    headers = None
    for obj in (getattr(e, "response", None), e):
        h = getattr(obj, "headers", None) if obj is not e else getattr(e, "litellm_response_headers", None)
        if h:
            headers = h
            break
    return retry_after_from_headers(headers)


class LiteLLMTransport:
    """Calls any litellm model (or a litellm Router defined in the config)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.model = cfg.model
        self.api_base = cfg.api_base
        self.timeout = cfg.timeout  # a streamed call's longest silence between chunks
        self.first_token_timeout = cfg.first_token_s  # the wait for its first chunk; a call not streamed: its whole limit
        self.router_cfg = cfg.router
        self._router: Any = None
        self.local = cfg.model.startswith("local/")
        self._given = given_price(cfg.model, cfg.prices)  # the config's price wins over litellm's (core/llm/pricing.py)
        # structured output (core/llm/structured.py): the embedded model speaks llama.cpp's json_object + schema
        self.negotiator = structured.Negotiator(structured.JSON_OBJECT_SCHEMA if self.local else structured.JSON_SCHEMA)
        # streaming: decided on the first call (OpenAI-compatible providers only), then negotiated down like structured output
        self.stream: bool | None = False if (self.local or self.router_cfg) else None
        self.stream_usage = True
        self.notices: list[str] = []  # what this transport changed on its own, for the run's log
        self._price: Any = None  # litellm's price of (tokens_in, tokens_out), for streamed answers; looked up once

    @property
    def schema_mode(self) -> str:
        """The structured-output mode in force for this endpoint (see core/llm/structured.py)."""
        return self.negotiator.mode

    def _get_router(self, litellm: Any) -> Any:
        if self._router is None and self.router_cfg:
            self._router = litellm.Router(**{**self.router_cfg, "num_retries": 0})
        return self._router

    def _endpoint(self) -> str:
        return self.api_base or self.model

    def _streams(self, litellm: Any) -> bool:
        if self.stream is None:
            try:
                provider = litellm.get_llm_provider(self.model, api_base=self.api_base)[1]
            except Exception:  # noqa: BLE001 - a provider litellm cannot name: call it as before
                provider = None
            self.stream = provider in STREAMED_PROVIDERS
        return self.stream

    async def __call__(self, req: LLMRequest) -> Completion:
        litellm = load_litellm()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": req.messages,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
            "num_retries": 0,
        }
        if req.seed is not None:
            kwargs["seed"] = req.seed
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if self.model.startswith(("openai/", "hosted_vllm/")) and not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = "not-needed"  # local OpenAI-compatible servers need no key; not a secret
        if not self.local:
            kwargs["max_retries"] = 0
        router = self._get_router(litellm)
        # each pass re-sends at once after a negotiation step: structured output's ladder, then stream_options and stream
        sent_mode: str | None
        for _ in range(len(structured.LADDER) + 2):
            sent_mode, rf = self.negotiator.response_format(req.schema, req.schema_name)
            if rf is None:
                sent_mode = None
                kwargs.pop("response_format", None)
            else:
                kwargs["response_format"] = rf
            streamed = self._streams(litellm)
            sent_usage = streamed and self.stream_usage
            for k in ("stream", "stream_options"):
                kwargs.pop(k, None)
            if streamed:
                kwargs["stream"] = True
                if sent_usage:
                    kwargs["stream_options"] = dict(stream.STREAM_OPTIONS)
                # the SDK's own limit applies to each read: the first token's, never shorter than our gap
                kwargs["timeout"] = self.first_token_timeout
            else:
                kwargs["timeout"] = self.timeout if self.local else self.first_token_timeout
            answer = stream.StreamedAnswer()
            try:
                if streamed:
                    return await self._streamed(litellm, router, kwargs, req, answer)
                resp = await (router.acompletion(**kwargs) if router else litellm.acompletion(**kwargs))
            except ProviderError:
                raise
            except TransientProviderError as e:
                if e.partial is None and answer.chunks:
                    e.partial = self._partial(litellm, answer, req)
                raise
            except Exception as e:  # noqa: BLE001 - mapped to ours; unknown failures are retried, bounded
                self._step_down_or_raise(litellm, e, sent_mode, streamed, sent_usage, self._partial(litellm, answer, req))
                continue  # re-sent at once one step down: not a transient error, no backoff
            break
        else:  # unreachable: each pass steps down, and the bottom step sends no response_format
            raise ProviderError(f"{self._endpoint()} rejects every structured-output form")
        try:
            choice = resp.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason
        except (AttributeError, IndexError, TypeError):
            raise TransientProviderError("malformed response: no choices") from None
        usage = getattr(resp, "usage", None)
        tin = int(getattr(usage, "prompt_tokens", 0) or 0) or sum(len(m["content"]) for m in req.messages) // 4
        tout = int(getattr(usage, "completion_tokens", 0) or 0) or len(text) // 4
        cost: float | None
        # litellm prices every response already (hidden param); pricing it again cost ~10% of a call's CPU
        stamped = _stamped_cost(resp)
        if stamped is not None:
            cost = stamped
        else:
            try:
                cost = float(litellm.completion_cost(completion_response=resp))
            except Exception:  # noqa: BLE001 - unpriced model: tokens still count, cost is unknown
                cost = 0.0 if self.local else None
        if self._given is not None:
            cost = self._given(tin, tout)
        return Completion(text, finish, tin, tout, cost)

    async def _streamed(self, litellm: Any, router: Any, kwargs: dict[str, Any], req: LLMRequest, answer: stream.StreamedAnswer) -> Completion:
        """One streamed call: its chunks added up in ``answer``, each a sign of progress for the idle timeouts."""
        chunks: Any = None
        stamped: float | None = None
        watch = IdleTimeout(self.first_token_timeout, self.timeout)
        try:
            with watch:
                chunks = await (router.acompletion(**kwargs) if router else litellm.acompletion(**kwargs))
                async for chunk in chunks:
                    watch.progress()
                    choices = getattr(chunk, "choices", None) or ()
                    choice = choices[0] if choices else None
                    delta = getattr(choice, "delta", None)
                    usage = getattr(chunk, "usage", None)
                    answer.take(getattr(delta, "content", None), getattr(choice, "finish_reason", None), _usage_dict(usage))
                    if usage is not None:
                        stamped = _stamped_cost(chunk)
        except TimeoutError:
            if watch.expired is None:
                raise
            if watch.expired == FIRST:
                raise ProviderTimeout(f"no answer from {self._endpoint()} within {self.first_token_timeout:g}s (the first token's limit)", unreachable=True) from None
            raise ProviderTimeout(
                f"the answer from {self._endpoint()} stalled: nothing for {self.timeout:g}s after {answer.chunks} chunks",
                unreachable=True, partial=self._partial(litellm, answer, req),
            ) from None
        finally:
            if chunks is not None and not answer.complete:
                try:
                    await chunks.aclose()  # the connection of a call given up on
                except Exception:  # noqa: BLE001 - closing never fails a call
                    pass
        if not answer.complete:
            self._cut_short(self._partial(litellm, answer, req))
        c = answer.completion(req, None)
        if stamped is None or self._given is not None:
            stamped = self._price_of(c.tokens_in, c.tokens_out)
        return Completion(c.text, c.finish_reason, c.tokens_in, c.tokens_out, stamped)

    def _cut_short(self, partial: Completion | None) -> NoReturn:
        """A stream that ended without its finish reason: plain calls from now on (said once in ``notices``), and
        this call is asked again (a transient error carrying what it received)."""
        if self.stream:
            self.stream = False
            self.notices.append(stream.cut_short_notice(self._endpoint()))
        raise TransientProviderError(
            f"{self._endpoint()} ended a streamed answer before its finish reason: asked again without streaming",
            retry_after=0.0, partial=partial,
        ) from None

    def _price_of(self, tin: int, tout: int) -> float | None:
        if self._given is not None:  # the config's price wins over litellm's (core/llm/pricing.py)
            given = self._given(tin, tout)
            return None if given is None else float(given)
        if self._price is None:
            self._price = litellm_price(self.model)
        p = self._price(tin, tout)
        return None if p is None else float(p)

    def _partial(self, litellm: Any, answer: stream.StreamedAnswer, req: LLMRequest) -> Completion | None:
        """What a streamed call cut off midway received, priced by litellm's table (None: nothing arrived)."""
        c = answer.partial(req, None)
        if c is None:
            return None
        return Completion(c.text, c.finish_reason, c.tokens_in, c.tokens_out, self._price_of(c.tokens_in, c.tokens_out))

    def _step_down_or_raise(self, litellm: Any, e: Exception, sent_mode: str | None, streamed: bool, sent_usage: bool,
                            partial: Completion | None) -> None:
        """Step a negotiation down for ``e`` (return: the call re-sends at once), else raise it as ours:
        ``ProviderError`` (retrying cannot help) or ``TransientProviderError`` (with what a stream received)."""
        if isinstance(e, (litellm.AuthenticationError, litellm.PermissionDeniedError)):
            raise ProviderError(f"authentication failed for {self.model}: {first_line(e, 200)}") from None
        if isinstance(e, litellm.NotFoundError):
            raise ProviderError(f"model {self.model!r} not found by the provider: {first_line(e, 200)}") from None
        if isinstance(e, litellm.Timeout):
            raise ProviderTimeout(first_line(e), _retry_after(e), unreachable=True, partial=partial) from None
        if isinstance(e, litellm.RateLimitError):
            raise TransientProviderError(first_line(e), _retry_after(e), partial=partial) from None
        if isinstance(e, (litellm.BadRequestError, getattr(litellm, "UnprocessableEntityError", litellm.BadRequestError), litellm.APIError,
                          litellm.APIConnectionError, litellm.ServiceUnavailableError, litellm.InternalServerError)):
            status = getattr(e, "status_code", None)
            status = status if isinstance(status, int) and not isinstance(status, bool) else None
            if status is None and isinstance(e, litellm.BadRequestError):
                status = 400
            msg = first_line(e)
            if streamed and CUT_SHORT in msg:  # litellm's word for a stream that ended without its finish reason
                self._cut_short(partial)
            refused = stream.refusal(status, msg) if streamed else None
            if refused == stream.STREAM_OPTIONS_REFUSED and sent_usage:
                self.stream_usage = False  # keep streaming; the tokens are counted from the text
                return
            if refused is not None:
                self.stream = False  # plain calls from now on, bounded by the first token's limit
                return
            verdict = self.negotiator.classify(status, msg, sent_mode=sent_mode)
            if verdict == structured.DOWNGRADE:
                self.negotiator.downgrade(sent_mode, msg)
                return
            if verdict == structured.DETERMINISTIC:
                raise ProviderError(self.negotiator.deterministic_message(status, msg, self._endpoint())) from None
            # litellm wraps the OpenAI SDK's "Connection error." (refused, reset) as APIConnectionError or, after a
            # stream broke, as InternalServerError with status 500: both mean the endpoint, not the request
            connection = isinstance(e, litellm.APIConnectionError) or _says_connection_failed(msg)
            if verdict == structured.REJECTED and not connection:
                raise ProviderError(f"the provider rejected the request for {self.model}: {msg}") from None
            unreachable = connection or status in UNREACHABLE_STATUS or isinstance(e, litellm.ServiceUnavailableError)
            raise TransientProviderError(msg, _retry_after(e), unreachable=unreachable, partial=partial) from None
        if isinstance(e, asyncio.TimeoutError):
            raise ProviderTimeout(first_line(e), unreachable=True, partial=partial) from None
        if isinstance(e, (ConnectionError, OSError)):
            raise TransientProviderError(first_line(e), unreachable=True, partial=partial) from None
        raise TransientProviderError(f"{type(e).__name__}: {first_line(e)}", partial=partial) from None


_CONNECTION_WORDS = ("connection error", "connection refused", "connecterror", "connection reset", "server disconnected")


def _says_connection_failed(msg: str) -> bool:
    """Whether litellm's message is about the connection (no server answered), whatever class it came as."""
    low = msg.lower()
    return any(w in low for w in _CONNECTION_WORDS)


def _usage_dict(usage: Any) -> dict[str, Any] | None:
    """litellm's ``Usage`` as the wire's usage object (core/llm/wire.py reads it)."""
    if usage is None:
        return None
    out: dict[str, Any] = {"prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0, "completion_tokens": getattr(usage, "completion_tokens", 0) or 0}
    cached = getattr(getattr(usage, "prompt_tokens_details", None), "cached_tokens", None)
    if isinstance(cached, int) and cached > 0:
        out["prompt_tokens_details"] = {"cached_tokens": cached}
    return out


def _stamped_cost(resp: Any) -> float | None:
    """The cost litellm stamped on a response (or a stream's usage chunk) as a hidden parameter; None if none."""
    hidden = getattr(resp, "_hidden_params", None)
    stamped = hidden.get("response_cost") if isinstance(hidden, dict) else getattr(hidden, "response_cost", None)
    if isinstance(stamped, (int, float)) and not isinstance(stamped, bool):
        return float(stamped)
    return None
