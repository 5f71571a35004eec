"""Errors a user can meet. Each carries one clear line; the CLI prints it and exits non-zero."""

from __future__ import annotations


class TreesynthError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""

    exit_code = 2


class ConfigError(TreesynthError):
    """Invalid options or config file."""


class RunDirError(TreesynthError):
    """A run directory that is missing, not a run, locked, or corrupt."""


class StorageError(RunDirError):
    """Writing to the run directory failed (disk full, permissions); what was written is kept."""


class ProviderError(TreesynthError):
    """A provider problem that retrying cannot fix (auth, bad request, unknown model)."""


class SteeringError(TreesynthError):
    """A steering edit (prune, value edits, re-expand) that the node's state does not allow."""


class TransientProviderError(Exception):
    """A provider failure worth retrying (rate limit, 5xx, timeout, dropped connection)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BudgetExhausted(Exception):
    """Raised at call time once the budget is spent; the engine stops scheduling."""


class StopRequested(Exception):
    """Raised at call time once the run is asked to stop (Ctrl-C, cancel)."""
