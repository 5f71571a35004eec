"""The engine package: ``Run`` (run.py) is what front ends hold; ``Engine`` (engine.py: the run loop,
over expand.py, synth.py and steering.py on the state in base.py) grows the tree and fills the leaves;
``Mode`` (mode.py) is its one extension point, ``GenerationMode`` the plain ``treesynth run``."""

from .answers import parse_answer
from .engine import Engine
from .ids import LeafJob, derive_seed, slot_id
from .mode import EngineAccess, GenerationMode, Mode
from .run import Run, make_transport, storage_error

__all__ = [
    "Engine", "EngineAccess", "GenerationMode", "LeafJob", "Mode", "Run",
    "derive_seed", "make_transport", "parse_answer", "slot_id", "storage_error",
]
