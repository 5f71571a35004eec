"""A mode defined outside the package, as a user would write one: rows conditioned on a list of leaf paths
the user gives (``mode_options: {paths: ["topic=fractions / level=easy", ...]}``); the tree is those paths,
grown with no model call. It overrides one hook of ``treesynth.Mode`` and names its kind; nothing in
treesynth knows it (tests/test_outside_mode.py runs it through the library, the CLI and the TUI)."""

from __future__ import annotations

from typing import Any

import treesynth
from treesynth.core.partition import Split, Value
from treesynth.core.tree import Node


def parse_paths(raw: Any) -> list[list[tuple[str, str]]]:
    """'topic=fractions / level=easy' -> [('topic', 'fractions'), ('level', 'easy')]."""
    if not isinstance(raw, list) or not raw:
        raise treesynth.errors.ConfigError("mode_options.paths: give a list of leaf paths such as 'topic=fractions / level=easy'")
    out = []
    for p in raw:
        steps = []
        for part in str(p).split("/"):
            dim, sep, value = part.partition("=")
            if not sep or not dim.strip() or not value.strip():
                raise treesynth.errors.ConfigError(f"mode_options.paths: {p!r}: each step is dimension=value")
            steps.append((dim.strip(), value.strip()))
        out.append(steps)
    return out


class GivenPathsMode(treesynth.Mode):
    """Rows in leaves the user names; no tree growth."""

    kind = "given-paths"

    def __init__(self, host: treesynth.ModeHost) -> None:
        super().__init__(host)
        self.paths = parse_paths(self.cfg.mode_options.get("paths"))
        split_by: dict[tuple[tuple[str, str], ...], str] = {}
        for p in self.paths:
            for i, (dim, _) in enumerate(p):
                if split_by.setdefault(tuple(p[:i]), dim) != dim:
                    raise treesynth.errors.ConfigError(f"mode_options.paths: {p[:i] or 'the root'} is split by two dimensions")

    def given_split(self, node: Node) -> Split:
        here = [(p["dimension"], p["value"]) for p in self.engine.tree.path(node.id)]
        below = [p[len(here)] for p in self.paths if len(p) > len(here) and p[: len(here)] == here]
        if not below:
            return Split(dimension="", values=())  # a leaf
        values = list(dict.fromkeys(v for _, v in below))
        return Split(dimension=below[0][0], values=tuple(Value(v) for v in values))
