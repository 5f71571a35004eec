"""Prompt templates (Jinja2, sandboxed), one per step of the protocol (``STEPS``). They are data in
``assets/prompts``; no domain knowledge lives in code. Users override any template file through
``templates`` in the config. Presets are core/presets.py's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import STEPS, RunConfig
from .errors import ConfigError

Path_ = list[dict[str, str]]  # a root-to-node path: [{dimension, value}, ...]


def templates_dir() -> Path:
    """The shipped prompt templates (``assets/prompts``)."""
    from treesynth.assets import ASSETS_DIR

    return ASSETS_DIR / "prompts"


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
            loader=ChoiceLoader([DictLoader(overrides), FileSystemLoader(str(templates_dir()))]),
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
