"""The exceptions treesynth raises, for ``except`` clauses: every one a library call raises on bad input, an
unusable run directory or provider is a ``TreesynthError`` with a one-line message (the CLI prints it as
``treesynth: error: ...``)."""

from treesynth.core.errors import (
    ConfigError,
    EmbedderError,
    JudgeError,
    ProviderError,
    RunDirError,
    SteeringError,
    StorageError,
    TreesynthError,
)

__all__ = [
    "ConfigError", "EmbedderError", "JudgeError", "ProviderError", "RunDirError", "SteeringError", "StorageError",
    "TreesynthError",
]
