"""Checks before any call is made, so bad settings fail fast with one clear line."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .embedder_choice import parse_embedder
from .errors import ConfigError, EmbedderError, ProviderError
from .transport_choice import in_process

if TYPE_CHECKING:
    from .config import RunConfig


def check_model(cfg: RunConfig) -> str | None:
    """The model names something treesynth can call: a known embedded model or a provider litellm knows
    (no keys, files or network looked at). ``run`` and ``estimate`` share it, so both refuse the same
    models with the same line. Returns litellm's provider name (None for a router or the embedded model)."""
    if cfg.router:
        if not isinstance(cfg.router.get("model_list"), list) or not cfg.router["model_list"]:
            raise ProviderError("router: needs a non-empty model_list")
        return None
    kind = in_process(cfg)  # what this process, or each Ray worker, calls with (core/transport_choice.py)
    if kind == "local":
        from .llm.transports.local import check_local_name

        check_local_name(cfg.model.split("/", 1)[1])
        return None
    if kind == "http":  # openai/<model>, hosted_vllm/<model>: the native client, no litellm (3.5-4.7 s to import)
        return cfg.model.split("/", 1)[0]
    from .llm.litellm_loader import load_litellm

    litellm = load_litellm()
    try:
        _model, provider, _key, _base = litellm.get_llm_provider(cfg.model, api_base=cfg.api_base)
    except Exception:  # noqa: BLE001 - litellm raises BadRequestError for unknown providers
        raise ProviderError(
            f"unknown model {cfg.model!r}: use a litellm model string such as openai/gpt-4o-mini, "
            "anthropic/claude-3-5-haiku-latest, ollama/llama3, or openai/<name> with --api-base"
        ) from None
    return provider


def priced_models(cfg: RunConfig) -> list[tuple[str, str]]:
    """``(what, model)`` for every model whose calls a run of ``cfg`` pays for: its model (a router's every
    deployment, unless the config prices the router's model), its judge model, its endpoint embedder."""
    from .llm.pricing import given_price

    models: list[tuple[str, str]] = []
    deployments = (cfg.router or {}).get("model_list") if cfg.router else None
    if isinstance(deployments, list) and given_price(cfg.model, cfg.prices) is None:
        for d in deployments:
            m = d.get("litellm_params", {}).get("model") if isinstance(d, dict) and isinstance(d.get("litellm_params"), dict) else None
            if isinstance(m, str) and m:
                models.append(("router", m))
    else:
        models.append(("model", cfg.model))
    if cfg.has_tree_role and cfg.tree_role().model != cfg.model:
        models.append(("tree", cfg.tree_role().model))
    if cfg.judge and cfg.judge_model and cfg.judge_model != cfg.model:
        models.append(("judge", cfg.judge_model))
    choice = parse_embedder(cfg.embedder)
    if choice.kind == "endpoint":
        models.append(("embedder", choice.model))
    return models


def check_prices(cfg: RunConfig) -> None:
    """With a budget, every model the run pays for has a price (the config's ``prices``, else litellm's
    table): a call whose cost is unknown could not be counted, and the budget would not hold. One line
    naming the model and how to give its price, before any call is made."""
    if cfg.budget is None:
        return
    from .llm.pricing import call_price

    for what, model in priced_models(cfg):
        if call_price(model, cfg.prices) is not None:
            continue
        how = (
            "give --price-in and --price-out (USD per million tokens) or prices: in the config"
            if what == "model"
            else "give --tree-price-in and --tree-price-out (USD per million tokens) or prices: in the config"
            if what == "tree"
            else f"give prices: {{{model}: {{input: X, output: Y}}}} (USD per million tokens) in the config"
        )
        which = {"model": "", "router": "the router's model ", "tree": "the tree model ", "judge": "the judge model ",
                 "embedder": "the embedder "}[what]
        raise ConfigError(f"--budget needs a price for {which}{model}: litellm's table has none; {how}")


def check_embedder(cfg: RunConfig, *, reach: bool = True) -> None:
    """The run's embedder (``cfg.embedder``) can make vectors: a local model folder that is there; an endpoint that answers a one-text
    request for its model (``reach``; a bad model name, a missing key, a server without embeddings: one
    line); Ray, installed. The shipped default model is found when first used."""
    choice = parse_embedder(cfg.embedder)
    if choice.kind == "local" and choice.path is None:
        return
    if choice.kind == "ray":
        from .llm.transports.ray import import_ray

        import_ray()  # without Ray: one line saying how to install it
        return
    if choice.kind == "local":
        from pathlib import Path

        p = Path(choice.path) if choice.path else None
        if p is not None and not ((p / "modules.json").is_file() or (p / "config.json").is_file()):
            what = "is not a sentence-transformers model folder (no modules.json or config.json)" if p.is_dir() else "does not exist"
            raise EmbedderError(f"--embedder {str(p)!r} {what}")
        return
    from .llm.embed_wire import probe, resolve_endpoint

    ep = resolve_endpoint(choice.model, cfg.embed_api_base)
    why = ep.missing_key()
    if why:
        raise ProviderError(why)
    if reach:
        probe(ep, timeout=min(cfg.timeout, 60.0))


def check_provider(cfg: RunConfig, *, reach: bool = True) -> None:
    """Unknown model, a budget without prices (``check_prices``), missing API key, unreachable api_base,
    missing embedded model; then the embedder (``check_embedder``)."""
    _check_model_provider(cfg, reach=reach)
    if cfg.has_tree_role:  # the tree's own model and endpoint (--tree-model, --tree-api-base)
        try:
            _check_model_provider(cfg.tree_role(), reach=reach)
        except ProviderError as e:
            raise ProviderError(f"tree model: {str(e).replace('--api-base', '--tree-api-base')}") from None
    check_embedder(cfg, reach=reach)


def _check_model_provider(cfg: RunConfig, *, reach: bool = True) -> None:
    remote_workers = cfg.executor == "ray"
    if remote_workers:
        from .llm.transports.ray import import_ray

        import_ray()  # without Ray: one line saying how to install it, before the run directory exists
        reach = False  # Ray workers call the provider from their own nodes, with their own keys
    provider = check_model(cfg)
    check_prices(cfg)
    if cfg.router:
        if "<redacted>" in repr(cfg.router):
            raise ProviderError(
                "the router's literal API keys were not saved with the run; write them as os.environ/NAME references"
            )
        return
    kind = in_process(cfg)
    if kind == "local":
        from .llm.transports.local import find_gguf

        find_gguf(cfg.model.split("/", 1)[1])
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            raise ProviderError("the embedded model needs llama-cpp-python: pip install llama-cpp-python") from None
        return
    if cfg.api_base:
        if reach:
            check_reachable(cfg.api_base)
        return
    if provider == "openai" and kind == "http":
        if not os.environ.get("OPENAI_API_KEY") and not remote_workers:
            raise ProviderError(f"missing API key for {cfg.model}: set OPENAI_API_KEY in the environment")
        return
    from .llm.litellm_loader import load_litellm

    litellm = load_litellm()
    try:
        env = litellm.validate_environment(model=cfg.model)
    except Exception:  # noqa: BLE001
        env = {}
    missing = [k for k in env.get("missing_keys", []) if not os.environ.get(k)]
    if missing and provider not in ("ollama", "ollama_chat") and not remote_workers:
        raise ProviderError(f"missing API key for {cfg.model}: set {' and '.join(missing)} in the environment")


def check_reachable(api_base: str, timeout: float = 5.0) -> None:
    """Whether something takes connections at ``api_base`` and answers ``GET .../models`` (any HTTP
    status will do). A server that takes the connection but is slow to answer is reachable, only busy
    (a llama.cpp server still answering a killed client). The standard library's client: httpx costs
    0.15 s to import, before the first request."""
    import http.client
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(api_base)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ProviderError(f"cannot reach --api-base {api_base}: not an http(s) URL")
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError:
        raise ProviderError(f"cannot reach --api-base {api_base}: bad port") from None
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn = cls(u.hostname, port, timeout=timeout)
    try:
        try:
            conn.connect()
        except (ConnectionRefusedError, socket.gaierror):
            raise ProviderError(f"cannot reach --api-base {api_base}: connection refused or host unknown") from None
        except TimeoutError:
            raise ProviderError(f"cannot reach --api-base {api_base}: no answer within {timeout:g}s") from None
        except OSError as e:
            raise ProviderError(f"cannot reach --api-base {api_base}: {type(e).__name__}: {e.strerror or e}") from None
        try:
            conn.request("GET", (u.path.rstrip("/") or "") + "/models")
            conn.getresponse().read()
        except (http.client.HTTPException, OSError):
            return  # it took the connection: reachable (busy, or not speaking our HTTP)
    finally:
        conn.close()
