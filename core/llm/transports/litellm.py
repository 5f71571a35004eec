"""The litellm transport: any provider litellm knows (or a litellm Router from the config), and the
embedded model (``local/smollm2``, registered with litellm by core/llm/transports/local.py).

litellm is imported on the first call (``load_litellm``, core/llm/litellm_loader.py), never at import time: it takes seconds.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any

from ...errors import ProviderError, ProviderTimeout, TransientProviderError, first_line
from .. import structured
from ..litellm_loader import load_litellm
from ..pricing import given_price
from ..types import Completion, LLMRequest
from .common import retry_after_from_headers

if TYPE_CHECKING:
    from ...config import RunConfig

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
        self.timeout = cfg.timeout
        self.router_cfg = cfg.router
        self._router: Any = None
        self.local = cfg.model.startswith("local/")
        self._given = given_price(cfg.model, cfg.prices)  # the config's price wins over litellm's (core/llm/pricing.py)
        # structured output (core/llm/structured.py): the embedded model speaks llama.cpp's json_object + schema
        self.negotiator = structured.Negotiator(structured.JSON_OBJECT_SCHEMA if self.local else structured.JSON_SCHEMA)

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

    async def __call__(self, req: LLMRequest) -> Completion:
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
        sent_mode: str | None
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
                raise ProviderError(f"authentication failed for {self.model}: {first_line(e, 200)}") from None
            except litellm.NotFoundError as e:
                raise ProviderError(f"model {self.model!r} not found by the provider: {first_line(e, 200)}") from None
            except ProviderError:
                raise
            except litellm.Timeout as e:
                raise ProviderTimeout(first_line(e), _retry_after(e)) from None
            except litellm.RateLimitError as e:
                raise TransientProviderError(first_line(e), _retry_after(e)) from None
            except (litellm.BadRequestError, getattr(litellm, "UnprocessableEntityError", litellm.BadRequestError), litellm.APIError,
                    litellm.APIConnectionError, litellm.ServiceUnavailableError, litellm.InternalServerError) as e:
                status = getattr(e, "status_code", None)
                status = status if isinstance(status, int) and not isinstance(status, bool) else None
                if status is None and isinstance(e, litellm.BadRequestError):
                    status = 400
                msg = first_line(e)
                verdict = self.negotiator.classify(status, msg, sent_mode=sent_mode)
                if verdict == structured.DOWNGRADE:
                    self.negotiator.downgrade(sent_mode, msg)
                    continue  # re-sent at once one step down: not a transient error, no backoff
                if verdict == structured.DETERMINISTIC:
                    raise ProviderError(self.negotiator.deterministic_message(status, msg, self._endpoint())) from None
                if verdict == structured.REJECTED and not isinstance(e, litellm.APIConnectionError):
                    raise ProviderError(f"the provider rejected the request for {self.model}: {msg}") from None
                raise TransientProviderError(msg, _retry_after(e)) from None
            except asyncio.TimeoutError as e:
                raise ProviderTimeout(first_line(e)) from None
            except (ConnectionError, OSError) as e:
                raise TransientProviderError(first_line(e)) from None
            except Exception as e:  # noqa: BLE001 - unknown failures (malformed bodies...) are retried, bounded
                raise TransientProviderError(f"{type(e).__name__}: {first_line(e)}") from None
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
        if self._given is not None:
            cost = self._given(tin, tout)
        return Completion(text, finish, tin, tout, cost)
