"""The New run form's "tree from" field, checked as ``treesynth run --tree-from`` checks it: the source read
(a run directory, its tree.json, or a taxonomy file) and its splits checked against the settings the form
would start the run with (``load_given_tree``), each problem the core's own one line.

The form checks as it is typed, so the last answer is kept: the same values and an unchanged source are
not read again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from treesynth.core.config import RunConfig, build_config
from treesynth.core.errors import ConfigError

TREE_KEY = "tree_from"
TREE_FLAG = "--tree-from"  # how the core's one-line errors about the source begin


def _config(flags: dict[str, Any]) -> RunConfig | None:
    """The run's settings as the form holds them (a placeholder task while it has none), or None while
    another field is wrong (its own error says so)."""
    try:
        return build_config(flags=flags)
    except ConfigError as e:
        if str(e).startswith(TREE_FLAG):
            raise
        if flags.get("task"):
            return None
    try:
        return build_config(flags={**flags, "task": "(task)"})
    except ConfigError as e:
        if str(e).startswith(TREE_FLAG):
            raise
        return None


def _stamp(source: str) -> tuple[int, int] | None:
    try:
        st = Path(source).expanduser().stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


class TreeCheck:
    """``error(values)``: the one-line problem with the form's tree source, or None (none given, or fine)."""

    def __init__(self) -> None:
        self._last: tuple[Any, str | None] | None = None

    def error(self, values: dict[str, Any]) -> str | None:
        source = values.get(TREE_KEY)
        if not source:
            return None
        flags = {k: v for k, v in values.items() if k != "out"}
        key = (tuple(sorted((k, str(v)) for k, v in flags.items())), _stamp(os.fspath(source)))
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        message = self._check(str(source), flags)
        self._last = (key, message)
        return message

    @staticmethod
    def _check(source: str, flags: dict[str, Any]) -> str | None:
        from treesynth.core.treesource import load_given_tree, tree_source_defaults

        try:
            tree_source_defaults(source)  # readable, a taxonomy, its header's types
            cfg = _config(flags)
            if cfg is not None and cfg.tree_from:
                load_given_tree(cfg.tree_from, task=cfg.task, fields=cfg.fields, depth=cfg.depth)
        except ConfigError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 - a check must never break the form: one line
            return f"{TREE_FLAG} {source}: cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
        return None
