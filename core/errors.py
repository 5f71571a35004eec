"""Errors a user can meet. Each carries one clear line; the CLI prints it and exits non-zero."""

from __future__ import annotations

from typing import Any

# The process exit codes, defined once: a finished run's status, a user error, an interrupt.
EXIT_OK = 0
EXIT_FAILED = 1  # a run that ended incomplete (failed nodes, samples that could not be made), or a bug
EXIT_USAGE = 2  # a TreesynthError: bad input, a run directory or provider that cannot be used
EXIT_BUDGET = 3  # the run stopped at its budget
EXIT_INTERRUPTED = 130  # stopped on request (Ctrl-C, SIGTERM, the TUI's quit)
_STATUS_EXIT = {"complete": EXIT_OK, "stopped": EXIT_INTERRUPTED, "budget": EXIT_BUDGET}


def exit_code_for(status: str) -> int:
    """The exit code of a run that finished with ``status`` (complete, stopped, budget, incomplete)."""
    return _STATUS_EXIT.get(status, EXIT_FAILED)


class TreesynthError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""

    exit_code = EXIT_USAGE


class ConfigError(TreesynthError):
    """Invalid options or config file."""


class RunDirError(TreesynthError):
    """A run directory that is missing, not a run, locked, or corrupt."""


class StorageError(RunDirError):
    """Writing to the run directory failed (disk full, permissions); what was written is kept."""


class ProviderError(TreesynthError):
    """A provider problem that retrying cannot fix (auth, bad request, unknown model)."""


class JudgeError(TreesynthError):
    """The judge rejects nearly every row: too weak or miscalibrated for the task (rows would be
    rewritten without end). The run stops, resumable with another judge model."""


class SteeringError(TreesynthError):
    """A steering edit (prune, value edits, re-expand) that the node's state does not allow."""


class EmbedderError(TreesynthError):
    """The sentence-embedding model cannot be found or loaded."""


class TransientProviderError(Exception):
    """A provider failure worth retrying (rate limit, 5xx, timeout, dropped connection).

    ``unreachable``: the endpoint itself is down or gone quiet (connection refused or reset, DNS,
    HTTP 502/503/504, no first token in time, a stream that stalled), not just this call: the client
    pauses every call and probes until it answers (core/llm/outage.py) instead of spending this call's
    retries. ``partial``: a ``Completion`` (core/llm/types.py) of what a call received before it was cut
    off midway (a stream that stalled or dropped): its tokens were spent, so the client counts them in
    usage, cost and budget; None when nothing arrived."""

    def __init__(self, message: str, retry_after: float | None = None, *, unreachable: bool = False, partial: Any = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.unreachable = unreachable
        self.partial = partial


class ProviderTimeout(TransientProviderError):
    """No answer within the call's timeout (the client shrinks its concurrency when calls queue at the endpoint)."""


class EndpointUnreachable(Exception):
    """The endpoint stayed unreachable for longer than ``--outage-timeout``: the run stops, cleanly and
    resumably (no node fails for it)."""


class BudgetExhausted(Exception):
    """Raised at call time once the budget is spent; the engine stops scheduling."""


class StopRequested(Exception):
    """Raised at call time once the run is asked to stop (Ctrl-C, cancel)."""


def first_line(e: BaseException, limit: int = 300) -> str:
    """An exception as one line of at most ``limit`` characters (its type name when it says nothing)."""
    s = " ".join(str(e).split())
    return s[:limit] or type(e).__name__
