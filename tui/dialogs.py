"""Modal dialogs: confirm, prompt for a value, the finish summary, and help."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from .model import GLYPHS

DIALOG_CSS = """
.dialog { width: 72; max-width: 100%; height: auto; max-height: 90%; padding: 1 2;
          border: thick $accent; background: $surface; }
.dialog .title { text-style: bold; margin-bottom: 1; }
.dialog .buttons { height: auto; margin-top: 1; align-horizontal: right; }
.dialog .buttons Button { margin-left: 2; }
.dialog .error { color: $error; height: auto; }
.dialog .hint { color: $text-muted; height: auto; }
"""


class ConfirmScreen(ModalScreen[bool]):
    """Yes / no. Keys: y or enter for yes, n or escape for no."""

    DEFAULT_CSS = "ConfirmScreen { align: center middle; }\n" + DIALOG_CSS
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, title: str, body: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__()
        self._title, self._body, self._yes, self._no = title, body, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="title")
            yield Static(self._body)
            with Horizontal(classes="buttons"):
                yield Button(f"{self._no} (n)", id="no", compact=True)
                yield Button(f"{self._yes} (y)", id="yes", variant="warning", compact=True)

    def on_mount(self) -> None:
        self.query("#yes").focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")


class PromptScreen(ModalScreen["str | None"]):
    """Ask for one line of text. Enter submits, escape cancels. ``check`` (the value -> a one-line error, or
    None) keeps the dialog open under its error until the value passes."""

    DEFAULT_CSS = "PromptScreen { align: center middle; }\n" + DIALOG_CSS
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, body: str, value: str = "", placeholder: str = "",
                 check: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self._title, self._body, self._value, self._placeholder = title, body, value, placeholder
        self._check = check

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="title")
            yield Static(self._body, classes="hint")
            yield Input(value=self._value, placeholder=self._placeholder, id="value")
            yield Static("", classes="error", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel (esc)", id="cancel", compact=True)
                yield Button("OK (enter)", id="ok", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query("#value").focus()

    def _submit(self) -> None:
        value = " ".join(self.query_one("#value", Input).value.split())
        if not value:
            self.query_one("#error", Static).update("Type a value, or press escape to cancel.")
            return
        error = self._check(value) if self._check is not None else None
        if error:
            self.query_one("#error", Static).update(error)
            return
        self.dismiss(value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SummaryScreen(ModalScreen["str | None"]):
    """The finish summary. Returns the action chosen: "report", "quit", or None (close)."""

    DEFAULT_CSS = "SummaryScreen { align: center middle; }\n" + DIALOG_CSS
    BINDINGS = [
        Binding("escape,enter", "close", "Close"),
        Binding("R", "choose('report')", "Report"),
        Binding("q", "choose('quit')", "Quit"),
    ]

    def __init__(self, title: str, body: RenderableType, report_hint: str) -> None:
        super().__init__()
        self._title, self._body, self._hint = title, body, report_hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._title, classes="title")
            yield Static(self._body)
            yield Static(self._hint, classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Report (R)", id="report", compact=True)
                yield Button("Quit (q)", id="quit", compact=True)
                yield Button("Close (esc)", id="close", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query("#close").focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_choose(self, what: str) -> None:
        self.dismiss(what)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None if event.button.id == "close" else event.button.id)


def key_display(keys: str) -> str:
    names = {"question_mark": "?", "plus": "+", "escape": "esc", "enter": "enter", "space": "space", "tab": "tab"}
    out = []
    for k in keys.split(","):
        k = k.strip()
        k = names.get(k, k)
        out.append(k.replace("ctrl+", "ctrl+").replace("shift+", "shift+"))
    return ", ".join(out)


def binding_rows(bindings: Iterable) -> list[tuple[str, str]]:
    """One row per key: the first binding of a key names it (p: Pause; the footer says Resume while paused)."""
    rows = []
    seen: set[str] = set()
    for b in bindings:
        if isinstance(b, tuple):
            key, _action, desc = (tuple(b) + ("",))[:3]
        else:
            key, desc = b.key, b.description or b.action
        if key in seen:
            continue
        seen.add(key)
        rows.append((key_display(key), desc))
    return rows


class HelpScreen(ModalScreen[None]):
    """Every key binding, by screen, and the legend of the tree's glyphs."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90; max-width: 100%; height: 90%; border: thick $accent;
                                  background: $surface; padding: 0 2; }
    """
    BINDINGS = [Binding("escape,q,f1,question_mark", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        with VerticalScroll(can_focus=True):
            yield Static(Text("treesynth: keys (escape closes this help)", style="bold"))
            for title, rows in self.sections:
                t = Table.grid(padding=(0, 2))
                t.add_column(style="bold", no_wrap=True, min_width=16)
                t.add_column()
                for key, desc in rows:
                    t.add_row(key, desc)
                yield Static(Text(f"\n{title}", style="bold underline"))
                yield Static(t)
            legend = Table.grid(padding=(0, 2))
            legend.add_column(no_wrap=True, min_width=16)
            legend.add_column()
            for glyph, style, desc in GLYPHS.values():
                legend.add_row(Text(glyph, style=style), desc)
            yield Static(Text("\nTree glyphs", style="bold underline"))
            yield Static(legend)
            yield Static(Text("\nEach node shows `dimension = value` and its samples done/target.", style="dim"))

    def on_mount(self) -> None:
        self.query(VerticalScroll).focus()

    def action_close(self) -> None:
        self.dismiss(None)
