"""The one handle front ends hold a run by: ``Run`` (treesynth run) and ``BalanceRun`` (treesynth
balance) both satisfy it, and ``kind`` says which command made the run and resumes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from .config import RunConfig
    from .engine import Engine
    from .events import Event, Quality, RunFinished
    from .llm import LLMClient
    from .store import Recovered, RunStore

RunKind = Literal["run", "balance"]


class RunHandle(Protocol):
    @property
    def kind(self) -> RunKind:
        """The command that made the run and resumes it."""

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
    def engine(self) -> Engine | None:
        """The engine while ``execute`` runs (pause, resume and steering go through it), else None."""

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
        """The mode's own closing figures (a balance run's before/after); None for a plain run."""

    def quality(self) -> Quality | None:
        """What the quality gates did so far (cumulative); None when the run has none."""

    def close(self) -> None:
        """Release files, cache and transport (idempotent)."""


if TYPE_CHECKING:  # mypy checks that both runs hold the handle (nothing runs here)
    from .balance import BalanceRun
    from .engine import Run

    def _both_are_handles(run: Run, balance: BalanceRun) -> tuple[RunHandle, RunHandle]:
        return run, balance
