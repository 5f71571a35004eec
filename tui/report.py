"""The R key: build a run's analytics report (``treesynth.analytics.report.report_for_run``) in a thread.

The analytics stack (numpy, plotly, torch) is heavy, so it is imported only when a report is asked
for; if one of its packages is missing, the report is "not available" and the rest of the UI goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from treesynth.core.errors import TreesynthError
from treesynth.core.text import truncate

REPORT_HINT = "R: build the analytics report"  # the summary dialog's line about the report

Notify = Callable[..., None]  # Textual's ``notify(message, *, title, severity, timeout)``
LogLines = Callable[[list[tuple[str, str]]], None]  # the log pane's ``add([(level, line), ...])``


async def build_report(run_dir: Path, notify: Notify, log: LogLines, call_from_thread: Callable[..., Any]) -> None:
    """Build ``run_dir``'s report, its progress lines going to ``log`` (not to a stderr under the UI)."""
    notify("Building the analytics report…", timeout=3)
    try:
        report_for_run = await asyncio.to_thread(_import_report_for_run)
    except ImportError as e:  # an optional package of the analytics stack is missing
        why = f"{type(e).__name__}: {truncate(str(e), 200)}"
        notify(f"The analytics report is not available yet ({why}).", title="Report", severity="warning", timeout=6)
        log([("info", f"analytics report: not available yet ({why})")])
        return
    except Exception as e:  # noqa: BLE001 - the analytics stack failed to load: one line, not a crash
        notify(f"The analytics report is not available: {type(e).__name__}: {truncate(str(e), 200)}", severity="error")
        return

    def progress(message: str) -> None:  # called from the report's thread
        call_from_thread(log, [("info", f"report: {message}")])

    try:
        result = await asyncio.to_thread(report_for_run, run_dir, log=progress)
    except Exception as e:  # noqa: BLE001 - any failure is one line
        msg = str(e) if isinstance(e, TreesynthError) else f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        notify(f"The report failed: {msg}", title="Report", severity="error", timeout=10)
        log([("error", f"report failed: {msg}")])
        return
    where = str(result) if result is not None else str(run_dir)
    notify(f"Report written: {where}", title="Report", timeout=10)
    log([("info", f"analytics report: {where}")])


def _import_report_for_run() -> Callable[..., Path]:
    from treesynth.analytics.report import report_for_run

    return report_for_run
