"""Prompt templates (Jinja2, sandboxed) and presets. Both are data in ``assets/``; no domain
knowledge lives in code. Users override any template file through ``templates`` in the config.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomllib

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import RunConfig

Path_ = list[dict[str, str]]  # a root-to-node path: [{dimension, value}, ...]

STEPS = ("system", "pivots", "criterion", "assign", "supplement", "generate", "retry", "route", "infer_task", "judge")


def assets_dir() -> Path:
    from treesynth.assets import ASSETS_DIR

    return ASSETS_DIR


def list_presets() -> dict[str, str]:
    out = {}
    for p in sorted((assets_dir() / "presets").glob("*.toml")):
        try:
            out[p.stem] = tomllib.loads(p.read_text(encoding="utf-8")).get("description", "")
        except (OSError, tomllib.TOMLDecodeError):
            continue
    return out


@lru_cache(maxsize=32)
def load_preset(name: str) -> dict[str, Any]:
    """A preset by name (shipped) or path to a .toml file."""
    def _is_file(q: Path) -> bool:
        try:
            return q.is_file()
        except (OSError, ValueError):  # e.g. a name too long for the file system
            return False

    p = Path(name)
    if not (p.suffix == ".toml" and _is_file(p)):
        p = assets_dir() / "presets" / f"{name.lower().replace('-', '_')}.toml"
    if not _is_file(p):
        raise ConfigError(f"unknown preset {name!r} (available: {', '.join(list_presets())})")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"malformed preset {str(p)!r}: {e}") from None
    allowed = {"description", "task", "fields", "style", "field_descriptions", "field_patterns", "examples", "validators", "dedup_threshold",
               "prompt_fields", "response_fields", "system_prompt"}
    unknown = set(data) - allowed
    if unknown:
        raise ConfigError(f"preset {str(p)!r} has unknown keys: {', '.join(sorted(unknown))}")
    return data


def sample_text(sample: Any, limit: int = 500) -> str:
    if isinstance(sample, dict):
        s = " | ".join(f"{k}: {' '.join(str(v).split())}" for k, v in sample.items())
    else:
        s = " ".join(str(sample).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _path_key(path: Any, n: Any) -> tuple | None:
    """(n, dimension, value, ...) for a plain [{dimension: str, value: str}] path; None otherwise."""
    if type(n) is not int or not isinstance(path, list):
        return None
    key: list[Any] = [n]
    for p in path:
        if type(p) is not dict or len(p) != 2:
            return None
        d, v = p.get("dimension"), p.get("value")
        if type(d) is not str or type(v) is not str:
            return None
        key += (d, v)
    return tuple(key)


class Prompts:
    """Renders the messages for each step of the protocol."""

    def __init__(self, cfg: RunConfig) -> None:
        from jinja2 import ChoiceLoader, DictLoader, FileSystemLoader, StrictUndefined, TemplateError
        from jinja2.sandbox import SandboxedEnvironment

        overrides: dict[str, str] = {}
        for step, path in cfg.templates.items():
            fp = Path(path).expanduser()
            try:
                overrides[f"{step}.j2"] = fp.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError(f"cannot read template for step {step!r} from {str(fp)!r}: {getattr(e, 'strerror', None) or e}") from None
        env = SandboxedEnvironment(
            loader=ChoiceLoader([DictLoader(overrides), FileSystemLoader(str(assets_dir() / "prompts"))]),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=False,
        )
        env.filters["sample_text"] = sample_text
        env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)
        try:
            self._t = {s: env.get_template(f"{s}.j2") for s in STEPS}
        except TemplateError as e:
            raise ConfigError(f"invalid prompt template: {e}") from None
        # The shipped generate template is a pure function of (path, n): its renders are memoised
        # (bounded), since a leaf asks for the same prompt on every call. Overridden templates may
        # be non-deterministic (jinja's random filter), so they are always rendered afresh.
        self._gen_memo: dict[tuple, str] | None = None if "generate.j2" in overrides else {}
        self._base = {
            "task": cfg.task,
            "style": cfg.style,
            "fields": list(cfg.fields),
            "field_descriptions": dict(cfg.field_descriptions),
        }
        self._examples = [dict(e) for e in getattr(cfg, "examples", ())]  # the preset's or config's, written for the prompts
        self.system = self._render("system")

    def _render(self, step: str, **kw: Any) -> str:
        from jinja2 import TemplateError

        try:
            return self._t[step].render(**self._base, **kw).strip()
        except TemplateError as e:
            raise ConfigError(f"prompt template {step!r} failed to render: {e}") from None

    def _msgs(self, step: str, **kw: Any) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self._render(step, **kw)}]

    def pivots(self, path: Path_, n: int) -> list[dict[str, str]]:
        return self._msgs("pivots", path=path, n=n, examples=self._examples)

    def criterion(self, path: Path_, pivots: list[dict[str, str]], ancestor_dimensions: list[str], max_values: int) -> list[dict[str, str]]:
        return self._msgs("criterion", path=path, pivots=pivots, ancestor_dimensions=ancestor_dimensions, max_values=max_values)

    def assign(self, path: Path_, pivots: list[dict[str, str]], dimension: str, values: list[str]) -> list[dict[str, str]]:
        return self._msgs("assign", path=path, pivots=pivots, dimension=dimension, values=values)

    def supplement(self, path: Path_, dimension: str, values: list[str], max_new: int) -> list[dict[str, str]]:
        return self._msgs("supplement", path=path, dimension=dimension, values=values, max_new=max_new)

    def generate(self, path: Path_, n: int, examples: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
        memo = self._gen_memo
        key = _path_key(path, n) if memo is not None and not examples else None
        if key is None or memo is None:
            return self._msgs("generate", path=path, n=n, examples=examples or self._examples)
        text = memo.get(key)
        if text is None:
            text = self._render("generate", path=path, n=n, examples=self._examples)
            if len(memo) >= 4096:
                memo.clear()
            memo[key] = text
        return [{"role": "system", "content": self.system}, {"role": "user", "content": text}]

    def judge(self, constraints: list[str], rows: list[dict[str, str]]) -> list[dict[str, str]]:
        """The judge's messages: the task, a leaf's constraints, the rows to check."""
        return self._msgs("judge", constraints=constraints, rows=rows)

    def render_route(self, **kw: Any) -> str:
        return self._render("route", **kw)

    def infer_task(self, examples: list[dict[str, str]]) -> list[dict[str, str]]:
        return self._msgs("infer_task", examples=examples)

    def retry(self, messages: list[dict[str, str]], answer: str, error: str) -> list[dict[str, str]]:
        """The conversation so far plus the invalid answer and what was wrong with it."""
        return [*messages, {"role": "assistant", "content": answer[:4000]}, {"role": "user", "content": self._render("retry", error=error[:1500])}]
