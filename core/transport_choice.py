"""Which transport a config's calls go through: pure functions of the config, no transport imported.

The one place the choice is made. ``RunConfig`` asks it to refuse ``transport http`` on a model the
native client cannot serve (so it sits below the config, and the config below the LLM layer); the
preflight asks it which checks apply; core/llm/select.py and core/llm/lifecycle.py build what it names.

    ray      ``--executor ray``: a pool of Ray workers, each making the in-process choice below
    http     the native OpenAI-compatible client (core/llm/transports/openai_http.py): openai/<model>,
             and hosted_vllm/<model> with an api_base
    litellm  any provider litellm knows, or a litellm Router (core/llm/transports/litellm.py)
    local    the embedded model (``local/...``), through litellm's custom provider (core/llm/transports/local.py)
"""

from __future__ import annotations

import os
from typing import Any, Literal, Protocol

from .errors import ConfigError

InProcess = Literal["http", "litellm", "local"]
TransportKind = Literal["ray", "http", "litellm", "local"]


class Choosing(Protocol):
    """What the choice reads of a config (``RunConfig`` has it all; the config asks the choice, so this
    module names no config class)."""

    @property
    def model(self) -> str: ...
    @property
    def api_base(self) -> str | None: ...
    @property
    def router(self) -> dict[str, Any] | None: ...
    @property
    def transport(self) -> str: ...
    @property
    def executor(self) -> str: ...


def http_unsupported(cfg: Choosing) -> str | None:
    """Why ``cfg`` cannot use the native http transport (None: it can)."""
    if cfg.router:
        return "a litellm router config needs the litellm transport"
    model = cfg.model
    if model.startswith("openai/") and len(model) > len("openai/"):
        return None
    if model.startswith("hosted_vllm/") and len(model) > len("hosted_vllm/"):
        if cfg.api_base or os.environ.get("HOSTED_VLLM_API_BASE"):
            return None
        return "hosted_vllm/ models need --api-base for the http transport"
    return f"{model!r} does not speak the OpenAI chat API (the http transport serves openai/<model> and hosted_vllm/<model>)"


def use_http(cfg: Choosing) -> bool:
    """transport "auto": http where supported, litellm otherwise; "http" on an unsupported model is a ConfigError."""
    choice = cfg.transport
    if choice == "litellm":
        return False
    why = http_unsupported(cfg)
    if choice == "http" and why:
        raise ConfigError(f"--transport http: {why}; use --transport litellm or auto")
    return why is None


def in_process(cfg: Choosing) -> InProcess:
    """The transport that makes ``cfg``'s calls in this process (and on each Ray worker)."""
    if use_http(cfg):
        return "http"
    if cfg.model.startswith("local/") and not cfg.router:
        return "local"
    return "litellm"


def transport_kind(cfg: Choosing) -> TransportKind:
    """The transport a run of ``cfg`` gets: a pool of Ray workers, or ``in_process(cfg)``."""
    if cfg.executor == "ray":
        return "ray"
    return in_process(cfg)
