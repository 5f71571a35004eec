"""What front ends hold a run by: ``RunHandle`` (a run bound to its directory, whatever its mode) and
``Steerable`` (what may be changed while it runs). Protocols only: they name no implementer, so this
module imports nothing of the engine (``treesynth.core.run.Run`` holds both)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .config import RunConfig
    from .events import Event, Quality, RunFinished
    from .llm import LLMClient
    from .store import Recovered, RunStore


class Steerable(Protocol):
    """A live run's controls: pause and resume its calls, and edit its tree (the engine refuses what it
    cannot do with ``SteeringError``; what it changes comes back as events)."""

    @property
    def paused(self) -> bool: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def request_stop(self) -> None: ...

    def prune(self, node_id: str) -> None: ...

    def add_value(self, node_id: str, value: str) -> str: ...

    def rename_value(self, child_id: str, new_value: str) -> None: ...

    def remove_value(self, child_id: str) -> None: ...

    def reexpand(self, node_id: str) -> None: ...


class RunHandle(Protocol):
    @property
    def kind(self) -> str:
        """The run's mode ("run", "balance", or a registered mode's kind)."""

    @property
    def command(self) -> str:
        """The command that resumes it: ``treesynth <command> --resume RUN_DIR``."""

    @property
    def cfg(self) -> RunConfig: ...

    @property
    def store(self) -> RunStore: ...

    @property
    def client(self) -> LLMClient:
        """Calls, usage totals and the transport (a front end may pause or wrap it)."""

    @property
    def recovered(self) -> Recovered:
        """What was on disk when the run was opened (tree, rows per leaf, saved state)."""

    @property
    def steering(self) -> Steerable | None:
        """The live run's controls while ``execute`` runs, else None."""

    @property
    def root(self) -> Path:
        """The run directory."""

    @property
    def finished(self) -> bool:
        """Whether the run had already completed when it was opened."""

    async def execute(self, on_event: Callable[[Event], None] | None = None) -> RunFinished:
        """Grow the tree and fill its leaves; every change reaches ``on_event`` as it happens."""

    def request_stop(self) -> None:
        """Graceful stop: no new calls; calls in flight finish and are saved."""

    def summary(self) -> dict[str, Any] | None:
        """The mode's own closing figures (a balance run's before/after); None when it has none."""

    def summary_rows(self, fin: RunFinished) -> list[tuple[str, str]]:
        """The closing summary as (label, text) rows, the mode's own included: what the CLI and TUI print."""

    def quality(self) -> Quality | None:
        """What the quality gates did so far (cumulative); None when the run has none."""

    def close(self) -> None:
        """Release files, cache and transport (idempotent)."""
