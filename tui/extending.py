"""The + key: extend a finished run, as ``treesynth extend RUN_DIR --size N`` does.

It asks for the new total (a whole number larger than the run's size), records it with the core's own
``record_extension`` (the run's config.json: its new size and the history of sizes), then hands the run
directory back to the run screen to resume: the resume re-splits the quotas for the new total and the
engine fills the leaves, shown growing like any run. The mode decides whether its runs can be extended
(``check_extendable``): a refusal is one line, nothing changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from treesynth.core.errors import TreesynthError

from .dialogs import PromptScreen
from .runs import ResumeRun

if TYPE_CHECKING:
    from textual.app import App

    from .widgets import LogPane

NOT_FINISHED = "Extend works on a finished (complete) run: finish it first (u resumes it)."


class ExtendHost(Protocol):
    """What extending needs from the run screen."""

    run_dir: Path | None

    @property
    def app(self) -> App: ...

    @property
    def log_pane(self) -> LogPane: ...

    def refuse(self, why: str) -> None: ...

    def notify(self, message: str, *, title: str = ..., severity: Any = ..., timeout: float | None = ...) -> None: ...


def size_error(text: str, current: int) -> str | None:
    """The dialog's one-line error for ``text`` as the new total of a run of ``current`` rows, or None."""
    try:
        size = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        return f"Type a whole number of rows larger than {current:,}."
    if size <= current:
        return f"{size:,} is not larger than the run's size ({current:,}): extend only adds rows."
    return None


async def extend(host: ExtendHost, current: int, complete: bool, overrides: dict[str, Any],
                 carry_on: Callable[[ResumeRun], None]) -> None:
    """Ask for the new total of the finished run of ``current`` rows in ``host.run_dir``, record it, then
    ``carry_on`` with the run to resume (``overrides`` as the run was opened with). Runs in a worker."""
    from treesynth.core.extend import check_extendable, record_extension

    run_dir = host.run_dir
    if run_dir is None or not complete:
        return host.refuse(NOT_FINISHED)
    try:
        await asyncio.to_thread(check_extendable, run_dir)
    except TreesynthError as e:
        return host.refuse(str(e))
    answer = await host.app.push_screen_wait(PromptScreen(
        "Extend the run",
        f"It has {current:,} rows. Give the new total: the tree stays as it is, its quotas are split again for "
        f"the new total and its leaves fill up, the rows made so far kept as they are.\n"
        f"(as: treesynth extend {run_dir} --size N)",
        placeholder=f"more than {current:,}, e.g. {2 * current:,}",
        check=lambda text: size_error(text, current),
    ))
    if answer is None:
        return None
    size = int(answer.replace(",", "").replace("_", ""))
    try:
        before = await asyncio.to_thread(record_extension, run_dir, size)
    except TreesynthError as e:
        host.notify(str(e), title="Not extended", severity="error", timeout=10)
        host.log_pane.add([("error", f"not extended: {e}")])
        return None
    host.log_pane.add([("info", f"extending {run_dir} from {before:,} to {size:,} rows on the same tree")])
    carry_on(ResumeRun(run_dir, overrides))
    return None
