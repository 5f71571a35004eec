"""LLM calls: one client in front of a transport.

The client adds the response cache, pause/stop/budget gates, a priority concurrency
limit, RPM/TPM limits, retries with exponential backoff and jitter that honour
Retry-After, and usage accounting. The transport does the call itself: in the product the
native OpenAI-compatible client (core/openai_http.py) for openai/ and hosted_vllm/ models and
litellm for every other provider (``make_local_transport``), a scripted fake in tests.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from .cache import ResponseCache, cache_key
from .errors import BudgetExhausted, ProviderError, StopRequested, TransientProviderError
from .ratelimit import PrioritySemaphore, RateLimiter

PRIORITY_TREE = 0
PRIORITY_LEAF = 1

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(s: str) -> str:
    """Replace lone UTF-16 surrogates (a provider's JSON can carry them as escapes): they cannot be
    written as UTF-8, so one would crash the cache or the journal."""
    if s.isascii() or not _LONE_SURROGATE.search(s):
        return s
    return s.encode("utf-8", "replace").decode("utf-8")


@dataclass(frozen=True)
class LLMRequest:
    messages: list[dict[str, str]]
    slot: str  # identifies the call within the run: "<node>:<step>:<attempt>" or "<leaf>:gen:<slot>"
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    temperature: float = 0.8
    max_tokens: int = 1024
    seed: int | None = None
    priority: int = PRIORITY_TREE


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    tokens_in: int
    tokens_out: int
    cost: float | None = 0.0  # None: unknown for this model
    cached: bool = False


class Transport(Protocol):
    model: str

    async def __call__(self, req: LLMRequest) -> Completion: ...


@dataclass
class UsageTotals:
    requests: int = 0
    cache_hits: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    cost_known: bool = True
    retries: int = 0
    errors: int = 0
    invalid: int = 0
    in_flight: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float | None:
        return self.cost if self.cost_known else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "cache_hits": self.cache_hits, "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out, "cost": self.cost, "cost_known": self.cost_known,
            "retries": self.retries, "errors": self.errors, "invalid": self.invalid,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "UsageTotals":
        u = cls()
        for k in ("requests", "cache_hits", "tokens_in", "tokens_out", "retries", "errors", "invalid"):
            if isinstance(d.get(k), int):
                setattr(u, k, d[k])
        if isinstance(d.get("cost"), (int, float)):
            u.cost = float(d["cost"])
        u.cost_known = bool(d.get("cost_known", True))
        return u


class LLMClient:
    def __init__(
        self,
        transport: Transport,
        *,
        concurrency: int = 16,
        rpm: int | None = None,
        tpm: int | None = None,
        max_retries: int = 6,
        budget: float | None = None,
        cache: ResponseCache | None = None,
        read_cache: bool = True,
        usage: UsageTotals | None = None,
        on_usage=None,
        backoff_base: float = 0.5,
        backoff_cap: float = 60.0,
    ) -> None:
        self.transport = transport
        self.sem = PrioritySemaphore(concurrency)
        self.rpm = RateLimiter(rpm) if rpm else None
        self.tpm = RateLimiter(tpm) if tpm else None
        self.max_retries = max_retries
        self.budget = budget
        self.cache = cache
        self.read_cache = read_cache
        self.usage = usage or UsageTotals()
        self.on_usage = on_usage or (lambda: None)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._running = asyncio.Event()
        self._running.set()
        self._stopping = False
        self.budget_hit = False
        self._call_started: dict[int, float] = {}  # in-flight calls: id -> time.monotonic() when it started
        self._call_seq = 0

    @property
    def calls_in_flight(self) -> int:
        """Calls sent to the provider and not answered yet (``usage.in_flight`` also counts those holding a slot at the gate)."""
        return len(self._call_started)

    def oldest_in_flight_s(self, now: float | None = None) -> float | None:
        """Seconds since the oldest call still in flight started (None when none is)."""
        if not self._call_started:
            return None
        oldest = next(iter(self._call_started.values()))  # insertion order is start order
        return max(0.0, (time.monotonic() if now is None else now) - oldest)

    # ---- steering --------------------------------------------------------
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def stop(self) -> None:
        """No new calls start; waiting callers get StopRequested."""
        self._stopping = True
        self._running.set()

    def budget_left(self) -> bool:
        if self.budget is None or not self.usage.cost_known:
            return True
        return self.usage.cost < self.budget

    async def _gate(self) -> None:
        if not self._running.is_set():
            await self._running.wait()
        if self._stopping:
            raise StopRequested()
        if not self.budget_left():
            self.budget_hit = True
            raise BudgetExhausted()

    # ---- the call --------------------------------------------------------
    def _params(self, req: LLMRequest) -> dict[str, Any]:
        return {"temperature": req.temperature, "max_tokens": req.max_tokens, "seed": req.seed, "schema": req.schema}

    async def complete(self, req: LLMRequest) -> Completion:
        key = None
        if self.cache is not None:
            key = cache_key(self.transport.model, req.messages, self._params(req), req.slot)
            if self.read_cache:
                hit = self.cache.get(key)
                if hit is not None:
                    self.usage.cache_hits += 1
                    self.on_usage()
                    return Completion(hit.text, hit.finish_reason, hit.tokens_in, hit.tokens_out, 0.0, cached=True)
        attempt = 0
        while True:
            await self._gate()
            est_tokens = sum(len(m["content"]) for m in req.messages) // 4 + req.max_tokens // 2
            if self.rpm:
                await self.rpm.acquire(1)
            if self.tpm:
                await self.tpm.acquire(est_tokens)
            await self.sem.acquire(req.priority)
            self.usage.in_flight += 1
            self._call_seq += 1
            call = self._call_seq
            try:
                await self._gate()  # state may have changed while we waited for a slot
                self.usage.requests += 1
                self._call_started[call] = time.monotonic()
                result = await self.transport(req)
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
                if not result.text.isascii():
                    cleaned = clean_text(result.text)
                    if cleaned is not result.text:
                        result = replace(result, text=cleaned)
                self._account(result, est_tokens)
                if self.cache is not None and key is not None:
                    self.cache.put(key, result.text, result.finish_reason, result.tokens_in, result.tokens_out)
                    if req.priority == PRIORITY_TREE:
                        # a tree step's answer is persisted nowhere else until its node is done: commit it
                        # now, so a crash never asks it again (generation answers land in samples.jsonl)
                        self.cache.commit()
                self.on_usage()
                return result
            finally:
                self.usage.in_flight -= 1
                self._call_started.pop(call, None)
                self.sem.release()
            await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        expo = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        delay = random.uniform(expo / 2, expo)  # "equal jitter"
        if retry_after is not None:
            delay = max(delay, min(retry_after, 600.0))
        return delay

    def _account(self, c: Completion, est_tokens: int) -> None:
        u = self.usage
        u.tokens_in += c.tokens_in
        u.tokens_out += c.tokens_out
        if c.cost is None:
            u.cost_known = False
        else:
            u.cost += c.cost
        if self.tpm:
            self.tpm.adjust(c.tokens_in + c.tokens_out - est_tokens)


# ---------------------------------------------------------------------------
# litellm transport
# ---------------------------------------------------------------------------

_litellm = None


def _raise_open_files_limit(want: int) -> None:
    """Each connection is a file descriptor; a soft limit of 1024 (a common default) breaks high concurrency."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):
        pass


def load_litellm():
    """Import litellm lazily (it takes seconds) and offline (local cost map)."""
    global _litellm
    if _litellm is None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        # litellm's shared aiohttp pool defaults to 500 connections per host: allow --concurrency's maximum
        os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT", "4096")
        os.environ.setdefault("AIOHTTP_CONNECTOR_LIMIT_PER_HOST", "4096")
        _raise_open_files_limit(4096 + 256)
        import litellm

        litellm.suppress_debug_info = True
        litellm.drop_params = True
        litellm.telemetry = False
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        from . import local_model

        local_model.register(litellm)
        _litellm = litellm
    return _litellm


def _retry_after(e: BaseException) -> float | None:
    headers = None
    for obj in (getattr(e, "response", None), e):
        h = getattr(obj, "headers", None) if obj is not e else getattr(e, "litellm_response_headers", None)
        if h:
            headers = h
            break
    return retry_after_from_headers(headers)


def retry_after_from_headers(headers) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date); None if absent or malformed."""
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return float(ms) / 1000.0
        ra = headers.get("retry-after")
        if ra is None:
            return None
        try:
            return max(0.0, float(ra))
        except ValueError:
            dt = email.utils.parsedate_to_datetime(ra)
            return max(0.0, dt.timestamp() - time.time())
    except Exception:  # noqa: BLE001 - a malformed header is just ignored
        return None


def _first_line(e: BaseException, limit: int = 300) -> str:
    s = " ".join(str(e).split())
    return s[:limit] or type(e).__name__


def make_local_transport(cfg):
    """The in-process transport for ``cfg``: the native OpenAI-compatible client where it applies
    (``cfg.transport`` auto or http), litellm otherwise. The Ray workers use the same choice."""
    from .openai_http import use_http

    if use_http(cfg):
        from .openai_http import OpenAIHTTPTransport

        return OpenAIHTTPTransport(cfg)
    return LiteLLMTransport(cfg)


async def close_transport(transport) -> None:
    """Close what a transport holds open on the running loop (the http transport's session)."""
    aclose = getattr(transport, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing never fails a run
            pass


class LiteLLMTransport:
    """Calls any litellm model (or a litellm Router defined in the config)."""

    def __init__(self, cfg) -> None:
        self.model = cfg.model
        self.api_base = cfg.api_base
        self.timeout = cfg.timeout
        self.router_cfg = cfg.router
        self._router = None
        self.local = cfg.model.startswith("local/")
        # structured output (core/structured.py): the embedded model speaks llama.cpp's json_object + schema
        from . import structured

        self.negotiator = structured.Negotiator(structured.JSON_OBJECT_SCHEMA if self.local else structured.JSON_SCHEMA)

    @property
    def schema_mode(self) -> str:
        """The structured-output mode in force for this endpoint (see core/structured.py)."""
        return self.negotiator.mode

    def _get_router(self, litellm):
        if self._router is None and self.router_cfg:
            self._router = litellm.Router(**{**self.router_cfg, "num_retries": 0})
        return self._router

    def _endpoint(self) -> str:
        return self.api_base or self.model

    async def __call__(self, req: LLMRequest) -> Completion:
        from . import structured

        litellm = load_litellm()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": req.messages,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
            "timeout": self.timeout,
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
        for _ in range(len(structured.LADDER)):
            sent_mode, rf = self.negotiator.response_format(req.schema, req.schema_name)
            if rf is None:
                sent_mode = None
                kwargs.pop("response_format", None)
            else:
                kwargs["response_format"] = rf
            try:
                resp = await (router.acompletion(**kwargs) if router else litellm.acompletion(**kwargs))
            except (litellm.AuthenticationError, litellm.PermissionDeniedError) as e:
                raise ProviderError(f"authentication failed for {self.model}: {_first_line(e, 200)}") from None
            except litellm.NotFoundError as e:
                raise ProviderError(f"model {self.model!r} not found by the provider: {_first_line(e, 200)}") from None
            except ProviderError:
                raise
            except (litellm.RateLimitError, litellm.Timeout) as e:
                raise TransientProviderError(_first_line(e), _retry_after(e)) from None
            except (litellm.BadRequestError, getattr(litellm, "UnprocessableEntityError", litellm.BadRequestError), litellm.APIError,
                    litellm.APIConnectionError, litellm.ServiceUnavailableError, litellm.InternalServerError) as e:
                status = getattr(e, "status_code", None)
                status = status if isinstance(status, int) and not isinstance(status, bool) else None
                if status is None and isinstance(e, litellm.BadRequestError):
                    status = 400
                msg = _first_line(e)
                verdict = self.negotiator.classify(status, msg, sent_mode=sent_mode)
                if verdict == structured.DOWNGRADE:
                    self.negotiator.downgrade(sent_mode, msg)
                    continue  # re-sent at once one step down: not a transient error, no backoff
                if verdict == structured.DETERMINISTIC:
                    raise ProviderError(self.negotiator.deterministic_message(status, msg, self._endpoint())) from None
                if verdict == structured.REJECTED and not isinstance(e, litellm.APIConnectionError):
                    raise ProviderError(f"the provider rejected the request for {self.model}: {msg}") from None
                raise TransientProviderError(msg, _retry_after(e)) from None
            except (asyncio.TimeoutError, ConnectionError, OSError) as e:
                raise TransientProviderError(_first_line(e)) from None
            except Exception as e:  # noqa: BLE001 - unknown failures (malformed bodies...) are retried, bounded
                raise TransientProviderError(f"{type(e).__name__}: {_first_line(e)}") from None
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
        hidden = getattr(resp, "_hidden_params", None)
        stamped = hidden.get("response_cost") if isinstance(hidden, dict) else getattr(hidden, "response_cost", None)
        if isinstance(stamped, (int, float)) and not isinstance(stamped, bool):
            cost = float(stamped)
        else:
            try:
                cost = float(litellm.completion_cost(completion_response=resp))
            except Exception:  # noqa: BLE001 - unpriced model: tokens still count, cost is unknown
                cost = 0.0 if self.local else None
        return Completion(text, finish, tin, tout, cost)
