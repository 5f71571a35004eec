"""The Open run dialog: type or pick a run directory; an unfinished run is resumed, a finished one browsed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, OptionList, Static
from textual.widgets.option_list import Option

from treesynth.core.reader import is_run_dir

from .dialogs import DIALOG_CSS
from .saved_runs import list_runs, run_status


class PathSuggester(Suggester):
    """Completes directory names as a path is typed."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        p = Path(value).expanduser()
        parent, stem = (p, "") if value.endswith("/") else (p.parent, p.name)
        try:
            names = sorted(c.name for c in parent.iterdir() if c.is_dir() and c.name.startswith(stem) and not c.name.startswith("."))
        except OSError:
            return None
        if not names:
            return None
        base = value if value.endswith("/") else value[: len(value) - len(stem)]
        return base + names[0] + "/"


class OpenRunScreen(ModalScreen["tuple[str, str] | None"]):
    """Pick a run directory: resume it if unfinished, browse it if finished (or on request)."""

    DEFAULT_CSS = "OpenRunScreen { align: center middle; }\n" + DIALOG_CSS + """
    OpenRunScreen .dialog { width: 100; height: 80%; }
    OpenRunScreen OptionList { height: 1fr; margin-top: 1; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+b", "browse", "Browse read-only", priority=True),
    ]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = Path(root)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("Open a run", classes="title")
            yield Static("Type a run directory (tab completes) or pick one below. Enter opens it: an unfinished run "
                         "is resumed, a finished one is browsed. ctrl+b browses read-only.", classes="hint")
            yield Input(placeholder=f"{self.root}/…", id="path", suggester=PathSuggester())
            yield Static("", classes="error", id="error")
            yield OptionList(id="runs")
            with Horizontal(classes="buttons"):
                yield Button("Cancel (esc)", id="cancel", compact=True)
                yield Button("Browse (ctrl+b)", id="browse", compact=True)
                yield Button("Open (enter)", id="open", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#path", Input).focus()
        self.load_runs()

    @work(exclusive=True, exit_on_error=False)
    async def load_runs(self) -> None:
        runs = await asyncio.to_thread(list_runs, self.root)
        ol = self.query_one(OptionList)
        ol.clear_options()
        if not runs:
            ol.add_option(Option(Text(f"no runs in {self.root}/", style="dim"), id="", disabled=True))
            return
        for r in runs:
            t = Text(no_wrap=True, overflow="ellipsis")
            t.append(f"{r.path.name:<44.44} ", style="bold")
            st = "green" if r.status == "complete" else "yellow"
            t.append(f"{r.status:<10} ", style=st)
            t.append(f"{r.rows:>8,}/{r.size:<8,} ", style="dim")
            t.append(r.task, style="dim")
            ol.add_option(Option(t, id=str(r.path)))

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self.query_one("#path", Input).value = event.option.id

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.query_one("#path", Input).value = event.option.id
            self._open(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._open(None)

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#error", Static).update("")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self._open("browse" if event.button.id == "browse" else None)

    def _open(self, mode: str | None) -> None:
        raw = self.query_one("#path", Input).value.strip()
        if not raw:
            self.query_one("#error", Static).update("Type or pick a run directory.")
            return
        path = Path(raw).expanduser()
        if not path.is_dir():
            self.query_one("#error", Static).update(f"{raw!r} is not a directory.")
            return
        if not is_run_dir(path):
            self.query_one("#error", Static).update(f"{raw!r} is not a treesynth run (no config.json).")
            return
        if mode is None:
            mode = "browse" if run_status(path) == "complete" else "resume"
        self.dismiss((mode, str(path)))

    def action_browse(self) -> None:
        self._open("browse")

    def action_cancel(self) -> None:
        self.dismiss(None)
