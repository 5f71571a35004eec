"""Presets: named bundles of a task, fields, style, examples and validators (``assets/presets/*.toml``,
or a .toml file of one's own), the lowest layer of a config (core/config.py: defaults < preset < file < flags)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import tomllib

from .errors import ConfigError


def presets_dir() -> Path:
    """The shipped presets (``assets/presets``)."""
    from treesynth.assets import ASSETS_DIR

    return ASSETS_DIR / "presets"


def list_presets() -> dict[str, str]:
    """The shipped presets: name -> description."""
    out = {}
    for p in sorted(presets_dir().glob("*.toml")):
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
        p = presets_dir() / f"{name.lower().replace('-', '_')}.toml"
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
