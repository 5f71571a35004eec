"""treesynth: one sentence in, a large, diverse training dataset out, by the TreeSynth method (an LLM
partitions the task's data space like a decision tree, then writes rows in every leaf).

    import treesynth

    ds = treesynth.generate("GSM8K-style grade-school math word problems", preset="gsm8k", size=20, depth=2)
    print(ds.tree)            # the partition tree, rows per leaf
    rows = list(ds)           # the rows, as dicts
    df = ds.to_polars()

Blocking calls (``generate``, ``resume``, ``extend``, ``balance``, ``make_baseline``) work in scripts and in notebooks
(whose event loop is already running) and show a progress bar unless ``progress=False``. ``Run`` is the
async form: ``async with treesynth.Run(treesynth.config(...), out) as run: async for e in run.events(): ...``
with the engine's typed events (``treesynth.events``). ``open`` reads a run directory; ``report`` builds
the HTML report. Errors are ``treesynth.errors`` exceptions with one-line messages. New modes subclass
``Mode`` and are registered with ``register_mode``.

Names load on first use, so ``import treesynth`` (and the ``treesynth`` command's start-up) stays fast."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from treesynth.core import __version__

if TYPE_CHECKING:
    from treesynth.core import events
    from treesynth.core.config import RunConfig
    from treesynth.core.engine.mode import EngineAccess, GenerationMode, Mode, ModeHost
    from treesynth.core.modes import register_mode

    from . import errors
    from .lib import Dataset, Run, TreeView, balance, config, extend, generate, make_baseline, report, resume
    from .lib import open_run as open

__all__ = [
    "Dataset", "EngineAccess", "GenerationMode", "Mode", "ModeHost", "Run", "RunConfig", "TreeView", "__version__", "balance",
    "config", "errors", "events", "extend", "generate", "make_baseline", "open", "register_mode", "report", "resume",
]

_WHERE: dict[str, tuple[str, str]] = {
    "Dataset": ("treesynth.lib", "Dataset"),
    "Run": ("treesynth.lib", "Run"),
    "TreeView": ("treesynth.lib", "TreeView"),
    "balance": ("treesynth.lib", "balance"),
    "config": ("treesynth.lib", "config"),
    "generate": ("treesynth.lib", "generate"),
    "make_baseline": ("treesynth.lib", "make_baseline"),
    "open": ("treesynth.lib", "open_run"),
    "report": ("treesynth.lib", "report"),
    "resume": ("treesynth.lib", "resume"),
    "extend": ("treesynth.lib", "extend"),
    "RunConfig": ("treesynth.core.config", "RunConfig"),
    "Mode": ("treesynth.core.engine.mode", "Mode"),
    "GenerationMode": ("treesynth.core.engine.mode", "GenerationMode"),
    "EngineAccess": ("treesynth.core.engine.mode", "EngineAccess"),
    "ModeHost": ("treesynth.core.engine.mode", "ModeHost"),
    "register_mode": ("treesynth.core.modes", "register_mode"),
    "events": ("treesynth.core.events", ""),
    "errors": ("treesynth.errors", ""),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'treesynth' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
