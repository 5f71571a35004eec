"""treesynth's terminal UI (Textual): watch and steer the tree as it grows.

``TreesynthApp(services, start)`` opens on the New run form, or on a run screen for ``start`` (a new,
resumed, browsed or balance run, see ``runs.Source``); it navigates between the screens, holds the
global keys (help, theme, quit, ctrl+c) and, once closed, says what to print (``report_lines``) and
which exit code to return. The command line builds it: ``treesynth.cli.tui`` parses ``treesynth-tui
[RUN_DIR]`` and ``treesynth run``/``balance`` without ``--no-ui``, then runs the app.

The app is a front end over the core's runs (``treesynth.core.handle.RunHandle``) and their event
stream; no synthesis logic lives here.
"""

from __future__ import annotations

import os

from textual import events
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from .dialogs import HelpScreen, binding_rows
from .new_run import NewRunScreen
from .open_run import OpenRunScreen
from .run_screen import RunScreen
from .runs import Services, Source
from .widgets import DetailPane

THEMES = ("textual-dark", "textual-light")


class TreesynthApp(App[int]):
    TITLE = "treesynth"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help"),
        Binding("ctrl+t", "toggle_theme", "Light/dark", show=False),
        Binding("ctrl+q", "quit", "Quit", priority=True, show=False),
        Binding("ctrl+c", "interrupt", "Stop / quit", priority=True, show=False),
    ]

    def __init__(self, services: Services | None = None, start: Source | None = None, theme: str | None = None) -> None:
        super().__init__()
        self.services = services or Services()
        self.start = start
        self.theme = theme or os.environ.get("TREESYNTH_THEME") or THEMES[0]
        self.run_screen: RunScreen | None = None
        self.loop_share = None  # the running engine's LoopShare (fairness.py), if any

    def post_message(self, message) -> bool:
        # keys come in on the terminal driver's thread: give the UI the loop until it has answered
        if isinstance(message, events.Key) and self.loop_share is not None:
            self.loop_share.urgent()
        return super().post_message(message)

    def get_default_screen(self) -> Screen:
        if self.start is None:
            return NewRunScreen(self.services)
        self.run_screen = RunScreen(self.start, self.services)
        return self.run_screen

    # ------------------------------------------------------------------ navigation
    def open_run(self, source: Source, from_form: NewRunScreen | None = None) -> RunScreen:
        """Push a run screen; when opened from the form, a failure to start goes back to the form."""
        on_fail = from_form.show_start_error if from_form is not None else None
        screen = RunScreen(source, self.services, on_fail=on_fail)
        self.run_screen = screen
        self.push_screen(screen)
        return screen

    def active_run_screen(self) -> RunScreen | None:
        for s in reversed(self.screen_stack):
            if isinstance(s, RunScreen):
                return s
        return None

    # ------------------------------------------------------------------ actions
    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        from textual.widgets import Tree

        sections = [
            ("Everywhere", binding_rows(self.BINDINGS) + [("tab, shift+tab", "Move between panes and fields")]),
            ("New run form", binding_rows(NewRunScreen.BINDINGS) + [("enter", "Start (in any field)"),
                                                                  ("up, down", "Choose a preset (when the list is open)")]),
            ("Open run", binding_rows(OpenRunScreen.BINDINGS) + [("enter", "Open: resume if unfinished, browse if finished"),
                                                              ("tab", "Accept the path completion")]),
            ("Run screen", binding_rows(RunScreen.BINDINGS)),
            ("Tree", binding_rows(Tree.BINDINGS) + [("page up, page down", "Page"), ("home, end", "First, last node")]),
            ("Detail pane", binding_rows(DetailPane.BINDINGS)),
            ("Dialogs", [("y / n", "Yes / no"), ("enter", "OK"), ("escape", "Cancel or close")]),
        ]
        self.push_screen(HelpScreen(sections))

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]

    async def action_quit(self) -> None:
        rs = self.active_run_screen()
        if rs is not None and rs.state in ("running", "paused", "stopping"):
            if self.screen is not rs:
                self.pop_screen()
            rs.request_quit()
            return
        self.quit_with(self._exit_code())

    def action_interrupt(self) -> None:
        """ctrl+c: on a going run, stop it gracefully (a second ctrl+c quits at once); elsewhere quit."""
        rs = self.active_run_screen()
        if rs is not None and rs.state in ("running", "paused"):
            rs.stop_then_quit()
            self.notify("Stopping after the calls in flight (ctrl+c again quits at once); the run is saved.", timeout=8)
            return
        if rs is not None and rs.state == "stopping":
            self.quit_with(130)
            return
        self.quit_with(self._exit_code())

    def quit_with(self, code: int) -> None:
        """Exit the app with this process exit code (0 complete, 130 stopped, 3 budget, 1 incomplete, 2 error)."""
        self.exit(result=code, return_code=code)

    def _exit_code(self) -> int:
        rs = self.active_run_screen()
        return rs.exit_code() if rs is not None else 0

    def report_lines(self) -> list[str]:
        """What to print on the terminal after the app has closed (summary or error)."""
        rs = self.run_screen
        if rs is None:
            return []
        if rs.fin is not None:
            from treesynth.core.progress import format_rows

            return format_rows(rs.closing_rows()).splitlines()
        if rs.error:
            return [f"treesynth: error: {rs.error}"]
        if rs.run_dir is not None and rs.state not in ("browsing",):
            verb = rs.run.command if rs.run is not None else "run"
            return [f"treesynth: interrupted; resume with: treesynth {verb} --resume {rs.run_dir}"]
        return []


__all__ = ["TreesynthApp", "THEMES"]
