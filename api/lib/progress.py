"""Progress where a person is looking: a bar of rows made, with nodes, cost and requests beside it, on
stderr in a terminal or a script, and as a widget in a notebook when ipywidgets is there (tqdm draws
both). The same typed events the TUI and the CLI get feed it; the run's log (events.jsonl) keeps the
warnings, which the bar only counts."""

from __future__ import annotations

import sys
from typing import Any

from treesynth.core import events as ev
from treesynth.core.progress import Progress, fmt_cost


def _in_notebook() -> bool:
    """A Jupyter kernel with ipywidgets installed (tqdm's widget bar needs them)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressBar:
    """An event callback drawing a tqdm bar; ``close()`` ends it."""

    def __init__(self, description: str = "treesynth") -> None:
        if _in_notebook():
            from tqdm.notebook import tqdm
        else:
            from tqdm import tqdm
        self.p = Progress()
        self._warnings = 0
        self.bar: Any = tqdm(total=0, desc=description, unit="row", file=sys.stderr, dynamic_ncols=True, leave=True)

    def __call__(self, e: ev.Event) -> None:
        self.p.apply(e)
        if isinstance(e, ev.RunWarning):
            self._warnings += 1
        p = self.p
        if self.bar.total != p.size:
            self.bar.total = p.size
        if p.samples_done != self.bar.n:
            self.bar.n = p.samples_done
        warned = f", {self._warnings} warnings" if self._warnings else ""
        self.bar.set_postfix_str(f"nodes {p.nodes_expanded}/{p.nodes_total}, {fmt_cost(p.cost_usd)}, {p.requests} req{warned}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
