"""Run configuration: one validator shared by the CLI, config files and (later) the TUI.

Precedence: built-in defaults < preset < a reused tree's task, fields and depth (``tree_from``) < config file
< command-line flags.
Unknown keys are rejected; every error is reported as one line.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .embedder_choice import parse_embedder, resume_refusal
from .errors import ConfigError
from .presets import load_preset
from .transport_choice import http_unsupported
from .validators import Validator

DEFAULT_MODEL = "local/smollm2"
# The embedded 135M model writes a few samples per call well and a dozen badly (measured: 2 distinct
# pivots of 12 asked in one call); these replace the defaults for local/ models unless set.
# At most 4 values per node: its labels past the third are mostly junk, and every child costs calls.
LOCAL_MODEL_DEFAULTS = {"pivots": 6, "pivots_per_call": 3, "samples_per_call": 3, "max_values": 4, "open_ended_threshold": 4, "judge_batch": 3}
# The first token's limit is this many gaps unless set (core/llm/stream.py: why calls are streamed). Before
# streaming a whole call had to fit in --timeout, so its first token did too: three times that keeps every
# server that used to answer in time and leaves room for a long prompt's processing or a queue on a loaded
# one, while an unreachable or stopped endpoint is still noticed within minutes (6 at the default).
FIRST_TOKEN_TIMEOUT_FACTOR = 3.0
FIRST_TOKEN_TIMEOUT_MAX = 3 * 3600.0
# Semantic dedup's cosine threshold when it is turned on without one (measured on GSM8K: core/neardup.py).
RESERVED_FIELDS = {"id", "leaf_id", "path", "slot"}
# The protocol's steps: one prompt template each (core/prompts.py renders them; ``templates`` may override any).
STEPS = ("system", "pivots", "criterion", "assign", "supplement", "generate", "retry", "route", "infer_task", "judge")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")

# Keys whose values are secrets: never written to the run directory.
_SECRET_KEY_RE = re.compile(r"(api[_-]?key|secret|token|password|authorization|bearer)", re.I)
# Keys that may change when a run is resumed; all others define the run.
RESUMABLE_OVERRIDES = frozenset(
    {"model", "api_base", "concurrency", "rpm", "tpm", "timeout", "first_token_timeout", "max_retries", "budget", "cache", "cache_path", "router",
     "outage_timeout", "executor", "ray_address", "ray_workers", "transport", "judge", "judge_model", "judge_batch", "batch", "batch_linger",
     "extra_body", "embed_api_base", "prices", "price_in", "price_out", "tree_model", "tree_api_base", "tree_price_in",
     "tree_price_out"}
)
PRICE_UNITS = "non-negative finite numbers of USD per million tokens"
PRICE_FORM = PRICE_UNITS + ", e.g. {input: 0.15, output: 0.6}"


def _price_pair(data: dict[str, Any], prefix: str, model_key: str) -> dict[str, Any]:
    """``{prefix}price_in`` and ``{prefix}price_out`` in ``data`` become the ``prices`` entry of the model
    ``data[model_key]`` names (the tree model defaults to the model)."""
    kin, kout = f"{prefix}price_in", f"{prefix}price_out"
    if kin not in data and kout not in data:
        return data
    data = dict(data)
    pin, pout = data.pop(kin, None), data.pop(kout, None)
    if pin is None and pout is None:
        return data
    flag_in, flag_out = "--" + kin.replace("_", "-"), "--" + kout.replace("_", "-")
    if pin is None or pout is None:
        raise ValueError(f"{flag_in} and {flag_out} go together: give both (USD per million tokens)")
    if not (_price_number(pin) and _price_number(pout)):
        raise ValueError(f"{flag_in} and {flag_out} must be {PRICE_UNITS}")
    model = data.get(model_key) or (data.get("model") if model_key != "model" else None)
    model = model.strip() if isinstance(model, str) and model.strip() else DEFAULT_MODEL
    prices = data.get("prices")
    if prices is None or isinstance(prices, Mapping):
        data["prices"] = {**(prices or {}), model: {"input": pin, "output": pout}}
    return data


class ModelPrice(BaseModel):
    """What a model's tokens cost, in USD per million tokens (``prices:`` in a config, ``--price-in`` and
    ``--price-out``). Given prices win over litellm's table wherever a cost is reckoned (core/llm/pricing.py):
    the estimate, every call's cost, the budget."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float
    output: float


def _price_number(v: Any) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        f = float(v)
    except OverflowError:  # an integer past a float's range
        return False
    return math.isfinite(f) and f >= 0


def _check_prices(v: Any) -> Any:
    """``prices`` as given: model name -> {input, output}, each a non-negative finite number. One line
    naming the model otherwise (pydantic's own messages would say ``prices.openai/x.input: ...``, one per field)."""
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ValueError(f"must map model names to prices ({PRICE_FORM})")
    out: dict[str, dict[str, float]] = {}
    for model, price in v.items():
        name = model.strip() if isinstance(model, str) else ""
        if not name:
            raise ValueError(f"must map model names to prices ({PRICE_FORM}); {model!r} is not a model name")
        if isinstance(price, ModelPrice):
            price = price.model_dump()
        if not isinstance(price, Mapping) or set(price) != {"input", "output"} or not all(_price_number(price[k]) for k in price):
            raise ValueError(f"{name}: give input and output as {PRICE_FORM}")
        out[name] = {"input": float(price["input"]), "output": float(price["output"])}
    return out


class RunConfig(BaseModel):
    """Every option of a run. Field docs double as the `--help` text of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    task: str = Field(description="One sentence describing the data to synthesise.")
    fields: tuple[str, ...] = Field(default=("text",), description="Fields of each sample, e.g. question,answer.")
    preset: str | None = Field(default=None, description="Preset name (gsm8k, math, code_alpaca, simpletom) or path.")
    style: str | None = Field(default=None, description="Extra style guidance for every prompt (presets set it).")
    field_descriptions: dict[str, str] = Field(default_factory=dict)
    field_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="field -> regular expression its text must match (presets set them); sent as the JSON schema's "
        "pattern, so providers that enforce schemas (llama.cpp, vLLM) can only write matching fields.",
    )
    examples: tuple[dict[str, str], ...] = Field(
        default=(), max_length=10,
        description="A few samples written for the prompts (presets ship some): they show a model the form, never copied.",
    )
    validators: tuple[Validator, ...] = Field(
        default=(), max_length=50,
        description="Checks run in code on every new row before it is kept: [{field, kind, value}] with kind regex, python, "
        "json, min_chars, max_chars or arithmetic (presets ship some; a config's are added to the preset's).",
    )
    dedup_threshold: float | None = Field(
        default=None, ge=0, le=1,
        description="Semantic dedup: a new row within this cosine of an accepted row is written again (0.92 measured on GSM8K; "
        "presets turn it on; none or 0: exact duplicates only).",
    )
    prompt_fields: tuple[str, ...] = Field(
        default=(), description="Training exports (chat, alpaca): the fields a row's prompt is made of (presets set them; default: all but the last).",
    )
    response_fields: tuple[str, ...] = Field(
        default=(), description="Training exports: the fields the response is made of (default: the last field).",
    )
    system_prompt: str | None = Field(default=None, description="Training exports (chat): a system message put before every row.")
    judge: bool = Field(default=False, description="A judge model checks every row against its leaf's path; failing rows are written again.")
    judge_model: str | None = Field(default=None, description="The judge's model (default: the generation model).")
    judge_batch: int = Field(default=5, ge=1, le=50, description="Rows the judge reads per call.")
    model: str = Field(default=DEFAULT_MODEL, description="litellm model string; local/smollm2 is the embedded model.")
    api_base: str | None = None
    tree_model: str | None = Field(
        default=None,
        description="The model that grows the tree (pivots, criterion, assignment, coverage; a few hard calls); model writes "
        "the rows (many easy calls). Default: model. Its key comes from the environment, as model's does.",
    )
    tree_api_base: str | None = Field(
        default=None,
        description="tree_model's endpoint. Default: api_base when tree_model is served by the same provider as model "
        "(the same prefix, e.g. openai/), else the provider's own.",
    )
    transport: Literal["auto", "litellm", "http"] = Field(
        default="auto",
        description="How LLM calls are made: http (a native OpenAI-compatible client, for openai/ and hosted_vllm/ models), "
        "litellm (any provider), auto (http where it applies, else litellm).",
    )
    depth: int = Field(default=3, ge=0, le=8, description="Levels of the tree; 0: no tree, every call from the root prompt (the baseline).")
    size: int = Field(default=100, ge=1, le=100_000_000)
    pivots: int = Field(default=12, ge=2, le=50)
    pivots_per_call: int | None = Field(
        default=None, ge=1, le=50, description="Pivots asked per call (default: all in one call; the embedded model: 3).",
    )
    samples_per_call: int = Field(default=5, ge=1, le=50)
    max_values: int = Field(default=10, ge=2, le=50, description="Most attribute values one node may have.")
    open_ended_threshold: int = Field(
        default=8, ge=2, le=50, description="An open-ended dimension with more values becomes one sampled child."
    )
    validation_retries: int = Field(default=2, ge=0, le=10)
    concurrency: int = Field(default=16, ge=1, le=4096)
    batch: bool = Field(
        default=False,
        description="Leaf, judge and baseline calls through the provider's batch API (OpenAI's Files + Batches, or an openai/ "
        "endpoint with the same routes; Anthropic's Message Batches for anthropic/ models) at batch prices; tree calls stay "
        "interactive. A judge model on a provider without one stays interactive.",
    )
    batch_linger: float = Field(default=5.0, gt=0, le=3600, description="Seconds without a new call before a batch is sent.")
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    timeout: float = Field(
        default=120.0, gt=0, le=3600,
        description="Seconds an LLM call may go without a token (calls are streamed): a slow server that keeps writing is never "
        "cut off, one that stops is given up on and asked again.",
    )
    first_token_timeout: float | None = Field(
        default=None, gt=0, le=FIRST_TOKEN_TIMEOUT_MAX,
        description="Seconds a call may wait for its first token (connecting, the server's queue, reading the prompt); also "
        "the whole limit of a call that is not streamed. Default: 3 x timeout (360 s).",
    )
    max_retries: int = Field(default=6, ge=0, le=50)
    outage_timeout: float = Field(
        default=600.0, gt=0, le=7 * 86400,
        description="Seconds the endpoint may stay unreachable (connection refused, a gateway's 502/503/504) while calls wait "
        "and it is probed, before the run stops, resumable.",
    )
    budget: float | None = Field(
        default=None, ge=0,
        description="Stop cleanly once this many USD are spent (calls in flight count at their most). Every model the run "
        "calls must have a price: litellm's table, or prices.",
    )
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="model name -> {input, output}: USD per million tokens, for models litellm's table does not price (or "
        "prices other than its own); they cover the model, the judge_model and an endpoint embedder. --price-in and "
        "--price-out give the model's.",
    )
    seed: int = 0
    temperature: float = Field(default=0.9, ge=0, le=2)
    max_tokens: int = Field(default=1500, ge=16, le=100_000)
    max_field_chars: int = Field(default=1200, ge=16, le=100_000)
    cache: bool = True
    cache_path: str | None = None
    router: dict[str, Any] | None = Field(default=None, description="litellm Router settings (model_list, ...).")
    small_model: bool = Field(
        default=False,
        description="Ask in small steps, as for the embedded model (6 pivots, 3 per call, 3 samples per call, at most 4 values "
        "per node, 3 rows per judge call) unless set: for a small model behind a server (llama.cpp, Ollama).",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="Fields added to every request body an OpenAI-compatible endpoint gets on the http transport (a "
        "server's own sampling options, e.g. {\"repeat_penalty\": 1.1} for llama.cpp); they win over treesynth's own.",
    )
    embedder: str | None = Field(
        default=None,
        description="What turns rows into vectors for semantic dedup: local (default: all-MiniLM-L6-v2 on this machine), a local "
        "sentence-transformers model folder, openai/<model> or hosted_vllm/<model> (an OpenAI-compatible /v1/embeddings endpoint: "
        "batched, cached, counted in cost and budget), or ray. It defines the run: a resume keeps it.",
    )
    embed_api_base: str | None = Field(
        default=None,
        description="Base URL of the embeddings endpoint (a vLLM or llama.cpp server started with embeddings on); default: "
        "$OPENAI_API_BASE, else https://api.openai.com/v1.",
    )
    templates: dict[str, str] = Field(default_factory=dict, description="Override prompt templates: step -> file.")
    mode: str = Field(
        default="run", min_length=1, max_length=200,
        description="What the run does: run (grow a tree, generate every row), balance, a registered mode's name, or module:Class.",
    )
    mode_options: dict[str, Any] = Field(default_factory=dict, description="The mode's own settings (e.g. the leaf paths of a given taxonomy).")
    tree_from: str | None = Field(
        default=None, max_length=4096,
        description="Reuse a tree: a run directory, its tree.json, or a taxonomy file (YAML or JSON, as `treesynth tree RUN "
        "--format yaml` writes it). Its splits are taken as they are, with no calls; values shallower than depth are split "
        "further by the model. Its task, fields and depth apply unless set. The run keeps a copy (given_tree.json).",
    )
    out: str | None = None
    executor: Literal["local", "ray"] = Field(default="local", description="Where LLM calls run: local asyncio, or Ray workers.")
    ray_address: str | None = Field(default=None, description="Ray cluster to join ('auto': the one on this machine); none: start a local one.")
    ray_workers: int | None = Field(default=None, ge=1, le=4096, description="Ray worker actors (default: one per node).")

    @model_validator(mode="before")
    @classmethod
    def _price_flags(cls, data: Any) -> Any:
        """``price_in`` and ``price_out`` (``--price-in``, ``--price-out``): the model's entry in ``prices``;
        ``tree_price_in`` and ``tree_price_out`` (``--tree-price-in``, ``--tree-price-out``): the tree model's."""
        if not isinstance(data, dict):
            return data
        for prefix, key in (("", "model"), ("tree_", "tree_model")):
            data = _price_pair(data, prefix, key)
        return data

    @field_validator("prices", mode="before")
    @classmethod
    def _prices(cls, v: Any) -> Any:
        return _check_prices(v)

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("the task is empty: describe the data in one sentence")
        if len(v) > 2000:
            raise ValueError("the task is too long (over 2000 characters): describe it in one sentence")
        return v

    @field_validator("fields", mode="before")
    @classmethod
    def _fields_split(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [f.strip() for f in v.split(",") if f.strip()]
        return v

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one field is needed")
        for f in v:
            if not _FIELD_RE.match(f):
                raise ValueError(f"field name {f!r} must be an identifier (letters, digits, _)")
            if f in RESERVED_FIELDS:
                raise ValueError(f"field name {f!r} is reserved (id, leaf_id, path, slot)")
        if len(set(v)) != len(v):
            raise ValueError("field names must be distinct")
        return tuple(v)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("the model is empty")
        return v

    @field_validator("api_base", "tree_api_base", "embed_api_base")
    @classmethod
    def _http_url(cls, v: str | None, info: ValidationInfo) -> str | None:
        """An endpoint's base URL: http(s), no trailing slash; empty is none."""
        if v is None or not v.strip():
            return None
        v = v.strip().rstrip("/")
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"{info.field_name} {v!r} must be an http(s) URL")
        return v

    @field_validator("tree_model")
    @classmethod
    def _tree_model(cls, v: str | None) -> str | None:
        return v.strip() or None if isinstance(v, str) else v

    @field_validator("embedder")
    @classmethod
    def _embedder(cls, v: str | None) -> str | None:
        return parse_embedder(v).spec  # the canonical form: None for the default local model

    @field_validator("tree_from", mode="before")
    @classmethod
    def _tree_from(cls, v: Any) -> Any:
        if isinstance(v, os.PathLike):
            v = os.fspath(v)
        if isinstance(v, str) and not v.strip():
            return None
        return v

    @field_validator("templates")
    @classmethod
    def _templates(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if k not in STEPS:
                raise ValueError(f"unknown template step {k!r} (steps: {', '.join(STEPS)})")
        return v

    @model_validator(mode="after")
    def _cross(self) -> RunConfig:
        if self.tree_from and self.mode != "run":
            raise ValueError(f"tree_from reuses a tree in a treesynth run; mode {self.mode!r} grows its own")
        if self.open_ended_threshold > self.max_values:
            raise ValueError("open_ended_threshold must not exceed max_values")
        if self.first_token_timeout is not None and self.first_token_timeout < self.timeout:
            raise ValueError(
                f"first_token_timeout ({self.first_token_timeout:g}s) must not be shorter than timeout ({self.timeout:g}s), "
                "the longest silence between tokens"
            )
        if self.tree_model is not None or self.tree_api_base is not None:
            tree = self.tree_role()
            if tree.model.startswith("local/") and tree.tree_api_base:
                raise ValueError("tree_api_base is an endpoint's address; the embedded tree model (local/...) has none")
            if self.transport == "http":
                why = http_unsupported(tree)
                if why:
                    raise ValueError(f"transport http (tree model): {why}; use transport litellm or auto")
        if self.embed_api_base and parse_embedder(self.embedder).kind != "endpoint":
            raise ValueError("embed_api_base is the address of an embeddings endpoint: name its model with embedder openai/<model>")
        if self.transport == "http":
            why = http_unsupported(self)
            if why:
                raise ValueError(f"transport http: {why}; use transport litellm or auto")
        unknown = set(self.field_descriptions) - set(self.fields)
        if unknown:
            raise ValueError(f"field_descriptions names unknown fields: {', '.join(sorted(unknown))}")
        unknown = set(self.field_patterns) - set(self.fields)
        if unknown:
            raise ValueError(f"field_patterns names unknown fields: {', '.join(sorted(unknown))}")
        unknown = {v.field for v in self.validators} - set(self.fields)
        if unknown:
            raise ValueError(f"validators name unknown fields: {', '.join(sorted(unknown))}")
        for f, rx in self.field_patterns.items():
            try:
                re.compile(rx)
            except re.error as e:
                raise ValueError(f"field_patterns.{f}: invalid regular expression ({e})") from None
        for i, ex in enumerate(self.examples):
            if set(ex) != set(self.fields) or not all(isinstance(x, str) and x.strip() for x in ex.values()):
                raise ValueError(f"examples[{i}] must give a non-empty text for exactly the fields {', '.join(self.fields)}")
        return self

    @property
    def has_tree_role(self) -> bool:
        """The tree's steps go to another model or endpoint than the rows (``tree_model``, ``tree_api_base``)."""
        if self.tree_model is None and self.tree_api_base is None:
            return False
        t = self.tree_role()
        return (t.model, t.api_base) != (self.model, self.api_base)

    def tree_role(self) -> RunConfig:
        """This config as the tree's calls see it: ``tree_model`` at ``tree_api_base`` (by default ``api_base``
        when both models have the same provider prefix), without the rows' router. ``self`` when neither is set."""
        if self.tree_model is None and self.tree_api_base is None:
            return self
        model = self.tree_model or self.model
        if self.tree_api_base is not None:
            base: str | None = self.tree_api_base
        elif model.split("/", 1)[0] == self.model.split("/", 1)[0]:
            base = self.api_base
        else:
            base = None
        return self.model_copy(update={"model": model, "api_base": base, "router": None if self.tree_model else self.router})

    @property
    def first_token_s(self) -> float:
        """The first token's limit in seconds: ``first_token_timeout``, else 3 x ``timeout``."""
        if self.first_token_timeout is not None:
            return self.first_token_timeout
        return min(FIRST_TOKEN_TIMEOUT_MAX, FIRST_TOKEN_TIMEOUT_FACTOR * self.timeout)

    # ---- serialisation -------------------------------------------------
    def redacted(self) -> dict[str, Any]:
        """The config as written to the run directory: secrets replaced."""
        return redact(self.model_dump(mode="json"))


def redact(obj: Any) -> Any:
    """Replace the values of secret-looking keys (api_key, token, ...) recursively.

    References to environment variables (``os.environ/NAME``) are kept: they are not secrets.
    """
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if isinstance(k, str) and _SECRET_KEY_RE.search(k) and isinstance(v, str) and not v.startswith("os.environ/"):
                out[k] = "<redacted>"
            else:
                out[k] = redact(v)
        return out
    if isinstance(obj, list):
        return [redact(x) for x in obj]
    return obj


def resume_overrides(saved: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """What a resume may change of the run ``saved`` (its config.json): ``overrides`` less the keys that
    keep their saved value; ConfigError with one line for a key that defines the run (an embedder of
    another model is named as such)."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    why = resume_refusal(saved, overrides)
    if why:
        raise ConfigError(why)
    overrides.pop("embedder", None)  # the same vectors: nothing to change
    bad = sorted(k for k, v in overrides.items() if k not in RESUMABLE_OVERRIDES and saved.get(k) != v)
    if bad:
        raise ConfigError(f"cannot change {', '.join(bad)} when resuming (allowed: {', '.join(sorted(RESUMABLE_OVERRIDES))})")
    return overrides


def format_validation_error(err: ValidationError) -> str:
    """One line for the first problem of a pydantic error."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e.get("loc", ()) if p != "__root__")
    if e.get("type") == "extra_forbidden":
        return f"unknown config key {loc!r}"
    if e.get("type") == "missing":
        return f"missing required option {loc!r}"
    msg = e.get("msg", "invalid value")
    msg = msg.removeprefix("Value error, ")
    out = f"{loc}: {msg}" if loc else msg
    return " ".join(out.split())  # one line, even when a key holds a newline


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML config file into a dict (keys not yet validated)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {str(p)!r}: {e}") from None
    try:
        if p.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {str(p)!r} must end in .toml, .yaml, .yml or .json")
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - any parser error is a malformed file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"malformed config file {str(p)!r}: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"malformed config file {str(p)!r}: expected a table of keys at the top level")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_config(
    *, flags: dict[str, Any] | None = None, config_file: str | Path | None = None, base: dict[str, Any] | None = None
) -> RunConfig:
    """Merge defaults < preset < base < file < flags and validate. Raises ConfigError with one line."""

    merged: dict[str, Any] = dict(base or {})
    if config_file is not None:
        merged.update(load_config_file(config_file))
    for k, v in (flags or {}).items():
        if v is not None:
            merged[k] = v
    source = merged.get("tree_from")
    if isinstance(source, (str, os.PathLike)) and str(source).strip() and not all(k in merged for k in ("task", "fields", "depth")):
        from .treesource import tree_source_defaults

        for k, v in tree_source_defaults(os.fspath(source)).items():  # a reused tree's own settings, under the run's
            merged.setdefault(k, v)
    preset_name = merged.get("preset")
    if preset_name:
        if not isinstance(preset_name, str):
            raise ConfigError("preset: must be a name or a path")
        preset = load_preset(preset_name)
        for k, v in preset.items():
            if k == "examples" and k not in merged and isinstance(v, list):
                # the preset's examples fit the fields in use only if they have them all: keep just those fields
                f = merged.get("fields", preset.get("fields"))
                names = [x.strip() for x in f.split(",")] if isinstance(f, str) else list(f) if isinstance(f, (list, tuple)) else []
                fitting = [{n: e[n] for n in names} for e in v if names and isinstance(e, dict) and all(isinstance(n, str) and n in e for n in names)]
                if fitting:
                    merged[k] = fitting
                continue
            if k == "validators" and isinstance(v, list):
                # the preset's checks on the fields in use, then the config's own
                f = merged.get("fields", preset.get("fields"))
                checked = {x.strip() for x in f.split(",")} if isinstance(f, str) else set(f) if isinstance(f, (list, tuple)) else set()
                own = merged.get("validators") or []
                merged[k] = [x for x in v if isinstance(x, dict) and x.get("field") in checked] + (list(own) if isinstance(own, (list, tuple)) else [own])
                continue
            if k in ("prompt_fields", "response_fields", "system_prompt") and k not in merged:
                merged[k] = v  # hints for the training exports: roles() falls back where they do not fit the fields
                continue
            if k == "dedup_threshold" and k not in merged:
                merged[k] = v
                continue
            if k in ("task", "fields", "style", "field_descriptions", "field_patterns") and k not in merged:
                if k in ("field_descriptions", "field_patterns") and isinstance(v, dict):
                    # describe only the fields in use: flags or a file may override the preset's fields
                    f = merged.get("fields")
                    in_use = {x.strip() for x in f.split(",")} if isinstance(f, str) else f
                    if isinstance(in_use, (list, tuple, set)):
                        v = {fk: fv for fk, fv in v.items() if any(fk == n for n in in_use)}
                merged[k] = v
    if "task" not in merged:
        raise ConfigError("missing task: give the task sentence (or a preset that has one)")
    if str(merged.get("model") or DEFAULT_MODEL).startswith("local/") or merged.get("small_model") is True:
        for k, v in LOCAL_MODEL_DEFAULTS.items():
            merged.setdefault(k, v)
    try:
        return RunConfig(**merged)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None
    except TypeError as e:
        raise ConfigError(str(e)) from None


def validate_partial(values: dict[str, Any]) -> dict[str, str]:
    """Validate options one by one as a form is filled in: returns {key: error} (empty when all valid).

    The TUI's new-run form calls this so it applies exactly the CLI's rules.
    """
    errors: dict[str, str] = {}
    base = {"task": values.get("task") or "placeholder"}
    for key, value in values.items():
        if value is None or value == "":
            continue
        try:
            RunConfig(**{**base, key: value})
        except ValidationError as e:
            errors[key] = format_validation_error(e)
    return errors
