"""Which embedder a config names (``--embedder``, config ``embedder``): pure functions of the string, no
embedder imported. The config validates with it, the preflight and core/quality/embedders.py build what
it names, and a resume compares the saved choice with a new one here.

    None, local, default, all-MiniLM-L6-v2   the shipped all-MiniLM-L6-v2 on this machine (core/embeddings.py)
    a folder path                            a local sentence-transformers model folder
    openai/<model>, hosted_vllm/<model>      an OpenAI-compatible /v1/embeddings endpoint (``embed_api_base``;
                                             core/quality/embed_endpoint.py)
    ray                                      the local model on the run's Ray workers

Vectors of two models in one index are meaningless, so ``embedder`` defines a run: a resume may not name
another model (``resume_refusal``). The local model on Ray is the same model as on this machine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"  # core/embeddings.py DEFAULT_MODEL (not imported: it loads numpy)
LOCAL_ALIASES = frozenset({"", "local", "default", DEFAULT_LOCAL_MODEL, f"sentence-transformers/{DEFAULT_LOCAL_MODEL}"})
ENDPOINT_PROVIDERS = ("openai", "hosted_vllm")
FORMS = "local, ray, openai/<model> or hosted_vllm/<model> (an OpenAI-compatible endpoint, --embed-api-base), or a local model folder"

Kind = Literal["local", "endpoint", "ray"]


@dataclass(frozen=True)
class EmbedderChoice:
    """What ``embedder`` names. ``spec``: the canonical string the config keeps (None: the default local model)."""

    kind: Kind
    spec: str | None
    model: str  # what made the vectors: the local model's name, or the endpoint's provider/model
    path: str | None = None  # a local model folder (None: the shipped default)
    provider: str | None = None  # an endpoint's openai / hosted_vllm
    wire_model: str | None = None  # an endpoint's model name as sent

    @property
    def label(self) -> str:
        """For messages: 'local all-MiniLM-L6-v2', 'openai/text-embedding-3-small', 'ray all-MiniLM-L6-v2'."""
        return self.model if self.kind == "endpoint" else f"{self.kind} {self.model}"

    @property
    def vectors(self) -> tuple[str, str]:
        """Which vectors it makes: the same pair, the same vector space (the local model on Ray is the local model;
        an endpoint's model is known by its name as sent, whatever the provider prefix or the api base)."""
        if self.kind == "endpoint":
            return ("endpoint", self.wire_model or "")
        return ("local", self.path or DEFAULT_LOCAL_MODEL)


def parse_embedder(spec: str | None) -> EmbedderChoice:
    """The choice ``spec`` names; ValueError with one line for a form treesynth does not know."""
    if spec is None:
        return EmbedderChoice("local", None, DEFAULT_LOCAL_MODEL)
    if not isinstance(spec, str):
        raise ValueError(f"embedder must be a string: {FORMS}")
    s = spec.strip()
    if s in LOCAL_ALIASES:
        return EmbedderChoice("local", None, DEFAULT_LOCAL_MODEL)
    if s.lower() == "ray":
        return EmbedderChoice("ray", "ray", DEFAULT_LOCAL_MODEL)
    if "://" in s:
        raise ValueError(f"embedder {s!r} is a URL: give the model as openai/<model> and the URL as --embed-api-base")
    provider, slash, name = s.partition("/")
    if slash and provider in ENDPOINT_PROVIDERS:
        name = name.strip()
        if not name or any(c.isspace() for c in name):
            raise ValueError(f"embedder {s!r}: name the model after the slash, e.g. {provider}/text-embedding-3-small")
        return EmbedderChoice("endpoint", f"{provider}/{name}", f"{provider}/{name}", provider=provider, wire_model=name)
    try:
        p = Path(s).expanduser()
        if p.is_dir():
            path = str(p.resolve())
            return EmbedderChoice("local", path, p.resolve().name, path=path)
        if s.startswith(("/", "~", "./", "../")):
            # a folder path that is not here (yet): the preflight says so before the run starts
            path = str(p if p.is_absolute() else p.absolute())
            return EmbedderChoice("local", path, p.name or path, path=path)
    except (OSError, RuntimeError, ValueError):  # a name too long, a NUL byte, ~user of no such user
        raise ValueError(f"embedder {s[:200]!r} is not a usable folder path: use {FORMS}") from None
    raise ValueError(f"unknown embedder {s[:200]!r} (models are never downloaded): use {FORMS}")


def same_vectors(a: EmbedderChoice, b: EmbedderChoice) -> bool:
    return a.vectors == b.vectors


def resume_refusal(saved: Mapping[str, Any], overrides: Mapping[str, Any]) -> str | None:
    """Why a resume with ``overrides`` may not go on with the vectors ``saved`` (the run's config) made
    (None: it may; the embedder is the same, or not given)."""
    new_spec = overrides.get("embedder")
    if new_spec is None:
        return None
    try:
        new = parse_embedder(new_spec)
    except ValueError as e:
        return str(e)
    try:
        old = parse_embedder(saved.get("embedder"))
    except ValueError:
        old = None
    if old is not None and same_vectors(old, new):
        return None
    was = old.label if old is not None else repr(saved.get("embedder"))
    return (
        f"this run's vectors were made by {was}; a resume cannot switch to {new.label} (vectors of two models in one "
        f"index are meaningless): resume without --embedder, or start a new run"
    )
