"""The engine package: ``Engine`` (engine.py: the run loop, over expand.py, synth.py and steering.py on
the state in base.py) grows the tree and fills the leaves; ``Mode`` (mode.py) is its one extension point,
a base whose defaults are ``GenerationMode``, the plain ``treesynth run``. ``treesynth.core.run.Run``
binds an engine to a run directory."""

from .engine import Engine, is_storage_error
from .mode import EngineAccess, GenerationMode, Mode, ModeFactory, ModeHost

__all__ = ["Engine", "EngineAccess", "GenerationMode", "Mode", "ModeFactory", "ModeHost", "is_storage_error"]
