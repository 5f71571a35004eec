"""The New run form.

Every field is checked as it is typed by ``treesynth.core.config.validate_partial``: the CLI's
own validator, so the form and the command line accept exactly the same values; the "Tree from" field
is read and checked as ``--tree-from`` is (``tree_check``). The estimate comes from the core's estimator
(litellm's price table is loaded in a thread).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Checkbox, Footer, Input, Label, Select, Static

from treesynth.core.config import RunConfig, build_config, validate_partial
from treesynth.core.errors import ConfigError
from treesynth.core.estimate import UNPRICED
from treesynth.core.progress import fmt_cost

from .format import compact
from .open_run import OpenRunScreen
from .runs import BrowseRun, NewRun, ResumeRun, Services
from .tree_check import TREE_FLAG, TREE_KEY, TreeCheck


@dataclass(frozen=True)
class FieldSpec:
    key: str
    label: str
    kind: str = "text"  # text | integer | number
    hint: str = ""


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("task", "Task", hint="one sentence describing the data"),
    FieldSpec("fields", "Fields", hint="comma-separated, e.g. question,answer"),
    FieldSpec("tree_from", "Tree from", hint="run dir, tree.json or taxonomy YAML (empty: grow one)"),
    FieldSpec("model", "Model", hint="litellm model string"),
    FieldSpec("api_base", "API base", hint="OpenAI-compatible URL (vLLM, Ollama, …)"),
    FieldSpec("depth", "Depth", "integer"),
    FieldSpec("size", "Size", "integer", hint="samples"),
    FieldSpec("pivots", "Pivots/node", "integer"),
    FieldSpec("concurrency", "Concurrency", "integer", hint="calls in flight"),
    FieldSpec("budget", "Budget USD", "number", hint="stop when spent"),
    FieldSpec("out", "Output folder", hint="runs/<slug>-<timestamp>"),
)
FIELD_KEYS = ("preset",) + tuple(f.key for f in FIELDS) + ("batch",)


def _default_text(key: str) -> str:
    f = RunConfig.model_fields.get(key)
    if f is None or f.is_required():
        return ""
    d = f.default
    if d is None or d == ():
        return ""
    if isinstance(d, tuple):
        return ",".join(d)
    return str(d)


class NewRunScreen(Screen):
    """Fill in a task, watch the estimate, Start (or open an existing run)."""

    DEFAULT_CSS = """
    NewRunScreen #heading { height: 1; padding: 0 1; background: $panel; text-style: bold; }
    NewRunScreen #form { height: 1fr; padding: 0 1; }
    NewRunScreen Grid { grid-size: 2; grid-columns: 15 1fr; grid-rows: auto; grid-gutter: 0 1; height: auto; }
    NewRunScreen Grid Label { height: 1; padding-top: 0; color: $text-muted; }
    NewRunScreen Grid Label.-invalid { color: $error; text-style: bold; }
    NewRunScreen .cell { height: auto; }
    NewRunScreen .cell Input { width: 1fr; }
    NewRunScreen .cell Select { width: 1fr; }
    NewRunScreen .error { color: $error; height: auto; display: none; }
    NewRunScreen .error.-shown { display: block; }
    NewRunScreen .cell Input:focus { background: $accent 15%; }
    NewRunScreen Input.-invalid { background: $error 20%; }
    NewRunScreen #estimate { height: auto; margin-top: 1; padding: 0 1; border-left: vkey $accent; }
    NewRunScreen #status { height: auto; margin-top: 1; }
    NewRunScreen #status.-error { color: $error; text-style: bold; }
    NewRunScreen #buttons { height: auto; margin-top: 1; }
    NewRunScreen #buttons Button { margin-right: 2; }
    """

    BINDINGS = [
        Binding("ctrl+s", "start", "Start", priority=True),
        Binding("ctrl+o", "open_run", "Open run…", priority=True),
        Binding("ctrl+q", "app.quit", "Quit"),
    ]

    ESTIMATE_DELAY = 0.3

    def __init__(self, services: Services | None = None, name: str | None = None) -> None:
        super().__init__(name=name)
        self.services = services or Services()
        self.errors: dict[str, str] = {}
        self._estimate_timer = None
        self._presets: dict[str, str] = {}
        self.estimate_text = ""
        self.tree_check = TreeCheck()

    def compose(self) -> ComposeResult:
        from treesynth.core.presets import list_presets

        self._presets = list_presets()
        yield Static("treesynth · new run", id="heading")
        with VerticalScroll(id="form"):
            with Grid():
                yield Label("Preset", id="label-preset")
                with Vertical(classes="cell"):
                    yield Select(
                        [(f"{name}: {desc}", name) for name, desc in self._presets.items()],
                        prompt="none", allow_blank=True, id="f-preset", compact=True,
                    )
                    yield Static("", classes="error", id="e-preset")
                for f in FIELDS:
                    yield Label(f.label, id=f"label-{f.key}")
                    with Vertical(classes="cell"):
                        default = _default_text(f.key)
                        ph = f.hint if not default else (f"{default}" + (f"  ({f.hint})" if f.hint else ""))
                        if f.key == "model":
                            ph = f"{default}  (the embedded offline model)"
                        yield Input(placeholder=ph, type=f.kind, id=f"f-{f.key}", compact=True, select_on_focus=False)
                        yield Static("", classes="error", id=f"e-{f.key}")
                yield Label("Batch API", id="label-batch")
                with Vertical(classes="cell"):
                    yield Checkbox("leaf and judge calls as provider batches, at batch prices (openai/, anthropic/ models)", id="f-batch", compact=True)
                    yield Static("", classes="error", id="e-batch")
            yield Static("", id="estimate")
            yield Static("", id="status")
            with Horizontal(id="buttons"):
                yield Button("Start (ctrl+s)", id="start", variant="primary", compact=True)
                yield Button("Open run… (ctrl+o)", id="open", compact=True)
                yield Button("Quit (ctrl+q)", id="quit", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query("#f-task").focus()
        self._schedule_estimate()

    # ------------------------------------------------------------------ values
    def raw_values(self) -> dict[str, Any]:
        """What the form holds: non-empty fields only, as typed (the validator coerces)."""
        out: dict[str, Any] = {}
        sel = self.query_one("#f-preset", Select)
        if not sel.is_blank() and sel.value is not None:
            out["preset"] = str(sel.value)
        for f in FIELDS:
            v = self.query_one(f"#f-{f.key}", Input).value.strip()
            if v:
                out[f.key] = v
        if self.query_one("#f-batch", Checkbox).value:
            out["batch"] = True
        return out

    def set_values(self, **values: Any) -> None:
        for k, v in values.items():
            if k == "preset":
                sel = self.query_one("#f-preset", Select)
                if v:
                    sel.value = v
                else:
                    sel.clear()
            elif k == "batch":
                self.query_one("#f-batch", Checkbox).value = bool(v)
            else:
                self.query_one(f"#f-{k}", Input).value = str(v)

    def validate(self) -> dict[str, str]:
        values = self.raw_values()
        check = {k: v for k, v in values.items() if k != "out"}
        errors = validate_partial(check)
        if TREE_KEY not in errors:  # the source itself, as --tree-from reads and checks it
            tree_error = self.tree_check.error(values)
            if tree_error:
                errors[TREE_KEY] = tree_error
        self.errors = errors
        for key in FIELD_KEYS:
            self._show_error(key, errors.get(key))
        return errors

    def _show_error(self, key: str, message: str | None) -> None:
        err = self.query_one(f"#e-{key}", Static)
        label = self.query_one(f"#label-{key}", Label)
        widget = self.query_one(f"#f-{key}")
        if message:
            err.update(message)
        err.set_class(bool(message), "-shown")
        label.set_class(bool(message), "-invalid")
        widget.set_class(bool(message), "-invalid")

    def _status(self, message: str, error: bool = False) -> None:
        s = self.query_one("#status", Static)
        s.update(message)
        s.set_class(error, "-error")

    # ------------------------------------------------------------------ events
    def on_input_changed(self, event: Input.Changed) -> None:
        self.validate()
        self._status("")
        self._schedule_estimate()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.validate()
        self._schedule_estimate()

    def on_select_changed(self, event: Select.Changed) -> None:
        from treesynth.core.presets import load_preset

        task_in = self.query_one("#f-task", Input)
        fields_in = self.query_one("#f-fields", Input)
        if event.select.is_blank() or event.value is None:
            task_in.placeholder = FIELDS[0].hint
            fields_in.placeholder = f"{_default_text('fields')}  ({FIELDS[1].hint})"
        else:
            try:
                preset = load_preset(str(event.value))
            except ConfigError as e:
                self._show_error("preset", str(e))
                return
            if preset.get("task"):
                task_in.placeholder = f"{preset['task']}  (the preset's)"
            if preset.get("fields"):
                fields_in.placeholder = f"{','.join(preset['fields'])}  (the preset's)"
        self.validate()
        self._schedule_estimate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()
        elif event.button.id == "open":
            self.action_open_run()
        elif event.button.id == "quit":
            self.app.quit_with(0)

    # ------------------------------------------------------------------ estimate
    def _schedule_estimate(self) -> None:
        if self._estimate_timer is not None:
            self._estimate_timer.stop()
        self._estimate_timer = self.set_timer(self.ESTIMATE_DELAY, self._run_estimate)

    def _run_estimate(self) -> None:
        self._estimate_timer = None
        self.update_estimate()

    @work(exclusive=True, group="estimate", exit_on_error=False)
    async def update_estimate(self) -> None:
        box = self.query_one("#estimate", Static)
        self.estimate_text = ""  # the last estimate's text no longer stands, whatever this one shows
        if self.errors:
            box.update(Text("Estimate: fix the fields marked in red first.", style="dim"))
            return
        values = self.raw_values()
        values.pop("out", None)
        try:
            cfg = build_config(flags=values)
        except ConfigError:
            try:
                cfg = build_config(flags={**values, "task": values.get("task") or "(task)"})
            except ConfigError as e:
                box.update(Text(f"Estimate: {e}", style="dim"))
                return
        box.update(Text(f"Estimate: computing… (prices for {cfg.model})", style="dim"))
        try:
            est, batch = await asyncio.to_thread(self._estimate, cfg)
        except Exception as e:  # noqa: BLE001 - an estimate must never break the form
            box.update(Text(f"Estimate unavailable: {type(e).__name__}: {str(e)[:120]}", style="dim"))
            return
        t = Text()
        t.append("Estimate  ", style="bold")
        t.append(f"~{est.calls:,} calls", style="bold")
        t.append(f" ({est.tree_calls:,} growing the tree, {est.synth_calls:,} generating {cfg.size:,} samples)\n")
        t.append(f"          ~{compact(est.tokens_in)} tokens in, ~{compact(est.tokens_out)} out   ")
        if est.cost_usd is None:
            t.append("cost unknown", style="bold yellow")
            t.append(f" ({UNPRICED})", style="dim")
        else:
            t.append(f"~{fmt_cost(est.cost_usd)}", style="bold")
            if batch is not None:
                t.append(f" (~{fmt_cost(batch)} with the batch API)", style="bold" if cfg.batch else "dim")
        t.append(f"\n          depth {cfg.depth}: ~{est.internal_nodes:,} expansions, ~{est.leaves:,} leaves "
                 f"(fan-out {est.assumed_fanout:g})", style="dim")
        if est.given_splits:
            t.append(f"\n          the given tree's {est.given_splits:,} split(s) make no calls", style="dim")
        self.estimate_text = t.plain
        box.update(t)

    def _batch_cost(self, cfg, est) -> float | None:
        """The cost with --batch (tree calls interactive, the rest at batch prices), when both prices are known."""
        from treesynth.core.llm.pricing import batch_call_price

        price = self.services.price(cfg.model, cfg.prices) if self.services.price is not None else None
        batch_price = batch_call_price(cfg.model, cfg.prices)
        if price is None or batch_price is None:
            return None
        return est.batch_cost(price, batch_price)

    def _estimate(self, cfg):
        from treesynth.core.estimate import estimate
        from treesynth.core.prompts import Prompts

        price = self.services.price(cfg.model, cfg.prices) if self.services.price is not None else None
        given = None
        if cfg.tree_from:  # a reused tree: its splits make no calls (a source the field refuses: estimated as grown)
            from treesynth.core.errors import TreesynthError
            from treesynth.core.taxonomy import given_shape
            from treesynth.core.treesource import load_given_tree

            try:
                given = given_shape(load_given_tree(cfg.tree_from, task=cfg.task, fields=cfg.fields, depth=cfg.depth)[1])
            except (TreesynthError, OSError, ValueError):
                given = None
        est = estimate(cfg, Prompts(cfg), price=price, given=given)
        return est, self._batch_cost(cfg, est)

    # ------------------------------------------------------------------ start / open
    def action_start(self) -> None:
        errors = self.validate()
        values = self.raw_values()
        if errors:
            first = next(k for k in FIELD_KEYS if k in errors)
            self._status(f"Not started: {errors[first]}", error=True)
            self.query_one(f"#f-{first}").focus()
            return
        out = values.pop("out", None)
        try:
            cfg = build_config(flags=values)
        except ConfigError as e:
            msg = str(e)
            key = "task" if msg.startswith("missing task") else TREE_KEY if msg.startswith(TREE_FLAG) else next(
                (k for k in FIELD_KEYS if msg.startswith(k + ":")), None)
            if key:
                self._show_error(key, msg)
                self.query_one(f"#f-{key}").focus()
            self._status(f"Not started: {msg}", error=True)
            return
        from treesynth.core.files import occupied
        from treesynth.core.rundir import default_out

        out_path = Path(out) if out else default_out(cfg.task)
        if occupied(out_path):
            msg = f"{str(out_path)!r} already exists and is not empty; choose another folder (or Open run… to resume it)"
            self._show_error("out", msg)
            self._status(f"Not started: {msg}", error=True)
            return
        self._status("Starting…")
        self.app.open_run(NewRun(cfg, out_path), from_form=self)  # type: ignore[attr-defined]

    def show_start_error(self, message: str) -> None:
        self._status(f"Not started: {message}", error=True)
        if message.startswith(TREE_FLAG):
            self._show_error(TREE_KEY, message)
        elif "api_base" in message or "--api-base" in message:
            self._show_error("api_base", message)
        elif "model" in message:
            self._show_error("model", message)

    def action_open_run(self) -> None:
        def chosen(choice: tuple[str, str] | None) -> None:
            if choice is None:
                return
            mode, path = choice
            src = BrowseRun(Path(path)) if mode == "browse" else ResumeRun(Path(path))
            self.app.open_run(src, from_form=self)  # type: ignore[attr-defined]

        self.app.push_screen(OpenRunScreen(self.services.runs_root), chosen)
