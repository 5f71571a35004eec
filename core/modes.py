"""Modes by name. A run records its mode's name in its config (``mode``); this finds the class again:
a built-in (``run``, ``balance``), one registered in this process (``register_mode``), one installed as
an entry point in the ``treesynth.modes`` group, or a ``module:Class`` path. Adding a mode is one class
(a ``Mode`` subclass, core/engine/mode.py) plus one of these registrations; nothing else changes."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import TypeVar

import orjson

from .engine.mode import GenerationMode, Mode
from .errors import ConfigError, RunDirError
from .rundir import BALANCE, CONFIG

ENTRY_POINT_GROUP = "treesynth.modes"
# loaded by name only when asked for: a plain run never imports the balance mode (data loading, routing)
_BUILTIN: dict[str, str] = {
    "run": "treesynth.core.engine.mode:GenerationMode",
    "balance": "treesynth.core.balance.mode:BalanceMode",
}
_registered: dict[str, type[Mode]] = {"run": GenerationMode}

M = TypeVar("M", bound=type[Mode])


def register_mode(cls: M) -> M:
    """Make ``cls`` findable by its ``kind`` in this process (usable as a class decorator)."""
    if not (isinstance(cls, type) and issubclass(cls, Mode)):
        raise TypeError(f"{cls!r} is not a treesynth Mode subclass")
    _registered[cls.kind] = cls
    return cls


def _load(path: str, name: str) -> type[Mode]:
    module, _, attr = path.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"mode {name!r}: cannot load {path} ({type(e).__name__}: {e})") from None
    if not (isinstance(obj, type) and issubclass(obj, Mode)):
        raise ConfigError(f"mode {name!r}: {path} is not a treesynth Mode subclass")
    return obj


def mode_class(name: str) -> type[Mode]:
    """The mode called ``name``, or a one-line ``ConfigError`` naming the modes there are."""
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        return _load(_BUILTIN[name], name)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return _load(ep.value, name)
    if ":" in name:
        return _load(name, name)
    known = sorted({*_registered, *_BUILTIN, *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})
    raise ConfigError(f"unknown mode {name!r}: use one of {', '.join(known)}, or module:Class of a Mode subclass")


def recorded_mode(root: Path) -> str:
    """The mode a run directory was made with: its config's ``mode``; a balance run made before modes were
    recorded is told by its balance spec; anything else is a plain run."""
    try:
        cfg = orjson.loads((Path(root) / CONFIG).read_bytes()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        cfg = {}
    mode = cfg.get("mode") if isinstance(cfg, dict) else None
    if isinstance(mode, str) and mode:
        return mode
    return "balance" if (Path(root) / BALANCE).is_file() else "run"


def check_command(root: Path, command: str) -> None:
    """A run is resumed by the command its mode names (``treesynth run`` or ``treesynth balance``); a
    one-line ``RunDirError`` naming the right one otherwise."""
    from .files import check_run_dir

    check_run_dir(Path(root))  # a missing directory is missing, not a run of another kind
    cls = mode_class(recorded_mode(root))
    if cls.command != command:
        raise RunDirError(f"{str(root)!r} was made by treesynth {cls.command}; resume it with: treesynth {cls.command} --resume {root}")
