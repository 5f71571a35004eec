"""The run screen: the growing tree, the stats bar, details, the log, and steering.

The screen composes the widgets and dispatches keys; the work lives beside it: ``opening`` opens the
run from its source, ``flush`` applies the engine's events in batches, ``steering`` asks and steers,
``report`` builds the analytics report. The engine runs as an exclusive async worker on the app's
loop; blocking work (creating or resuming the run, the provider preflight, reading a saved run)
runs in threads. Engine events reach the screen through an ``EventBridge`` and are applied in
batches at most every ``FLUSH_INTERVAL`` seconds, each batch bounded in time, so the UI stays
responsive however fast the engine goes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static, Tree
from textual.worker import Worker, WorkerState

from treesynth.core import events as ev
from treesynth.core.errors import TreesynthError, exit_code_for
from treesynth.core.handle import RunHandle
from treesynth.core.progress import Progress

from . import extending, report
from .bridge import EngineEvents, EventBridge, UsageUpdated
from .dialogs import ConfirmScreen, SummaryScreen
from .fairness import GcPacer
from .flush import FlushScheduler, sync_with_tree, take_batch
from .format import browse_title, detail_renderable, run_title, summary_renderable
from .keys import LIVE_STATES, key_state
from .model import CLASSIFY, PIVOTS, SUPPLEMENT, SYNTH, Changes, RunModel
from .opening import open_source, share_loop, source_title
from .runs import ResumeRun, Services, Source
from .saved_runs import Browsed, run_status, scan_samples
from .steering import SteeringKeys
from .widgets import DetailPane, LogPane, RunTree, StatsBar

if TYPE_CHECKING:
    from treesynth.core.handle import Steerable
    from treesynth.core.tree import Tree as CoreTree

class RunScreen(Screen):
    """One run: live (new or resumed) or browsed read-only."""

    DEFAULT_CSS = """
    RunScreen #title { height: 1; padding: 0 1; background: $panel; }
    RunScreen #main { height: 1fr; }
    RunScreen RunTree { width: 1fr; min-width: 30; }
    RunScreen DetailPane { width: 45%; min-width: 28; }
    """

    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("p", "unpause", "Resume"),  # the footer says what p does now (check_action shows one of the two)
        Binding("c", "cancel", "Cancel"),
        Binding("x", "prune", "Prune"),
        Binding("a", "add_value", "Add value"),
        Binding("r", "rename_value", "Rename"),
        Binding("d", "remove_value", "Remove value", show=False),
        Binding("e", "reexpand", "Re-expand", show=False),
        Binding("u", "resume_run", "Resume"),
        Binding("plus", "extend", "Extend"),
        Binding("R", "report", "Report"),
        Binding("s", "summary", "Summary", show=False),
        Binding("E", "expand_all", "Expand/collapse all", show=False),
        Binding("g", "goto_active", "Go to a node being worked on", show=False),
        Binding("escape", "back", "Back to the form", show=False),
        Binding("q", "quit_run", "Quit"),
    ]

    HIGHLIGHT_SETTLE = 0.05  # the detail pane follows the cursor once it has rested this long
    DETAIL_INTERVAL = 0.25  # and follows changes to the selected node at most this often

    def __init__(self, source: Source, services: Services | None = None, on_fail: Callable[[str], None] | None = None,
                 name: str | None = None) -> None:
        super().__init__(name=name)
        self.source = source
        self.services = services or Services()
        self.on_fail = on_fail  # set when opened from the form: errors go back to it
        self.model = RunModel()
        self.progress = Progress()
        self.bridge = EventBridge(self)
        self.flusher = FlushScheduler(self._flush, self.set_timer)
        self.steering = SteeringKeys(self)
        self.run: RunHandle | None = None  # once opened (a live run)
        self.core_tree: CoreTree | None = None  # the run's Tree (live: the engine's own)
        self.run_dir: Path | None = None
        self._state = "preparing"
        self.fin: ev.RunFinished | None = None
        self.error: str | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self.requests_at_start = 0
        self.quit_when_done = False
        self._last_retries = 0
        self._last_retry_log = 0.0
        self.gc_pacer = GcPacer()  # full GC passes out of the way while a run is live (fairness.py)
        # benchmarks hook in here: called after each batch with its (event, time queued) pairs
        self.latency_probe: Callable[[list[tuple[ev.Event, float]], Changes], None] | None = None
        self.applied_events = 0
        self._detail_timer = None
        self._detail_at = 0.0
        self._highlight_timer = None

    @property
    def state(self) -> str:
        """preparing | running | stopping | complete | stopped | budget | incomplete | error | browsing."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        if value != self._state:
            self._state = value
            if self.is_mounted:
                self.refresh_bindings()

    @property
    def engine(self) -> Steerable | None:
        """The live run's controls (pause, resume and steering go through them), else None."""
        return self.run.steering if self.run is not None else None

    @property
    def live(self) -> bool:
        return self.engine is not None and self.state in LIVE_STATES

    def _paused(self) -> bool:
        engine = self.engine
        return engine is not None and engine.paused

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield StatsBar(id="stats")
        with Horizontal(id="main"):
            yield RunTree(self.model, auto_expand_depth=self.services.auto_expand_depth, id="tree")
            yield DetailPane(id="detail")
        yield LogPane(id="log")
        yield Footer()

    @property
    def tree_widget(self) -> RunTree:
        return self.query_one(RunTree)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one(LogPane)

    def on_mount(self) -> None:
        self._set_title()
        self.tree_widget.focus()
        self.tree_widget.move_cursor(self.tree_widget.root)
        self._refresh_stats()
        self.set_interval(1.0, self._tick)
        self.prepare()

    def _set_title(self) -> None:
        if self.run is not None:
            task, model, where = self.run.cfg.task, self.run.cfg.model, str(self.run.store.root)
        else:
            task, model, where = source_title(self.source)
        self.query_one("#title", Static).update(run_title(task, model, where))

    # ------------------------------------------------------------------ opening
    @work(exclusive=True, group="prepare", exit_on_error=False)
    async def prepare(self) -> None:
        self.state = "preparing"
        self._refresh_stats()
        try:
            opened = await open_source(self.source, self.services, lambda line: self.log_pane.add([("info", line)]))
        except TreesynthError as e:
            self._fail(str(e))
            return
        except Exception as e:  # noqa: BLE001 - a bug or an OS error: one line, not a crash
            self._fail(f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
            return
        if isinstance(opened, Browsed):
            self._show_browsed(opened)
        else:
            self._adopt(opened)

    def _adopt(self, run: RunHandle) -> None:
        """Show the run just opened, then start its engine."""
        # the engine shares the app's loop: keep a share of it for the UI during bursts of instant answers
        self.app.loop_share = share_loop(run, self.services.loop_share_s)  # type: ignore[attr-defined]
        self.run = run
        self.run_dir = Path(run.store.root)
        self.core_tree = run.recovered.tree
        self.requests_at_start = run.client.usage.requests
        self._set_title()
        resumed = isinstance(self.source, ResumeRun)
        if resumed:
            rows = {lid: rec.rows for lid, rec in run.recovered.leaves.items()}
            self.model.seed_from_tree(run.recovered.tree, rows)
            self.tree_widget.populate()
            self._load_previews(self.run_dir, run.cfg.fields[0])
        else:
            self.model.nodes["0"].target = run.cfg.size
            self.model.nodes["0"].relabel()
        self.progress = Progress(size=run.cfg.size, budget=run.cfg.budget, samples_done=run.recovered.rows,
                                 samples_at_start=run.recovered.rows)
        self._apply_usage_dict(run.client.usage.to_dict())
        self.log_pane.add([("info", f"{'resuming' if resumed else 'started'} run in {self.run_dir}")])
        self.run_engine()

    def _show_browsed(self, b: Browsed) -> None:
        """Show a saved run read-only."""
        self.run_dir = b.run_dir
        self.core_tree = b.tree
        self.model.seed_from_tree(b.tree, b.counts, b.previews)
        self.tree_widget.populate()
        size = int(b.config.get("size") or b.tree.root.target or 0)
        done = min(size, sum(b.counts.values())) if size else sum(b.counts.values())
        self.progress = Progress(size=size, budget=b.config.get("budget"), samples_done=done, samples_at_start=done)
        self._apply_usage_dict(b.state.get("usage") or {})
        status = str(b.state.get("status") or "unknown")
        self.state = "browsing"
        self.query_one("#title", Static).update(
            browse_title(str(b.config.get("task", "")), str(b.config.get("model", "")), str(b.run_dir), status))
        self.log_pane.add([("info", f"opened {b.run_dir} read-only: {len(b.tree):,} nodes, {sum(b.counts.values()):,} samples, status {status}")])
        if status != "complete":
            self.log_pane.add([("info", "this run is unfinished: press u to resume it")])
        self._refresh_stats()
        self._show_detail()

    def _apply_usage_dict(self, u: dict) -> None:
        p = self.progress
        for k in ("requests", "cache_hits", "tokens_in", "tokens_out", "retries", "errors", "invalid"):
            if isinstance(u.get(k), int):
                setattr(p, k, u[k])
        if isinstance(u.get("cost"), (int, float)):
            p.cost_usd = float(u["cost"]) if u.get("cost_known", True) else None
        p.roles = ev.roles_from_usage(u)
        self._last_retries = p.retries

    @work(group="previews", exit_on_error=False)
    async def _load_previews(self, run_dir: Path, field_name: str) -> None:
        _counts, previews = await asyncio.to_thread(scan_samples, run_dir, field_name)
        for lid, pv in previews.items():
            vn = self.model.get(lid)
            if vn is not None and not vn.preview:
                vn.preview = pv
        self._show_detail()

    def _fail(self, message: str) -> None:
        self.error = message
        self.state = "error"
        if self.on_fail is not None and self.fin is None and self.run is None:
            cb, self.on_fail = self.on_fail, None
            self.app.pop_screen()
            cb(message)
            return
        self.log_pane.add([("error", message)])
        self.query_one(DetailPane).show(Text(f"Could not start:\n\n{message}\n\nPress q to quit.", style="bold red"))
        self.notify(message, title="treesynth", severity="error", timeout=10)
        self._refresh_stats()

    # ------------------------------------------------------------------ the engine
    @work(exclusive=True, group="engine", exit_on_error=False)
    async def run_engine(self) -> ev.RunFinished:
        assert self.run is not None  # _adopt sets it before starting the engine
        self.gc_pacer.tick()
        self.state = "running"
        self.started_at = self.services.clock()
        self._refresh_stats()
        return await self.run.execute(self.bridge)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        w = event.worker
        if w.group != "engine":
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
            self.gc_pacer.release()
        if event.state == WorkerState.SUCCESS:
            self._finished(w.result)
        elif event.state == WorkerState.ERROR:
            err = w.error
            msg = str(err) if isinstance(err, TreesynthError) else f"internal error: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
            self.flusher.drain()
            self.error = msg
            self.ended_at = self.services.clock()
            self.state = "error"
            self.log_pane.add([("error", msg)])
            self.notify(msg, title="The run stopped", severity="error", timeout=15)
            self._refresh_stats()
            if self.quit_when_done:
                self.app.quit_with(2 if isinstance(err, TreesynthError) else 1)
        elif event.state == WorkerState.CANCELLED:
            self.flusher.drain()
            self.ended_at = self.services.clock()
            self.state = "stopped"
            self._refresh_stats()

    def _finished(self, fin: ev.RunFinished) -> None:
        self.flusher.drain()
        self.fin = fin
        self.ended_at = self.services.clock()
        self.state = fin.status
        self.progress.apply(fin)
        self._refresh_stats()
        self.log_pane.add([("info", f"run {fin.status}: {fin.rows:,}/{fin.size:,} rows" + (f" ({fin.message})" if fin.message else ""))])
        if self.quit_when_done:
            self.app.quit_with(exit_code_for(fin.status))
            return
        if fin.status == "complete" and self.services.report_when_done and self.run_dir is not None:
            self.build_report(self.run_dir)  # `--report`: as the headless run does
        self.action_summary()

    # ------------------------------------------------------------------ events
    def on_usage_updated(self, message: UsageUpdated) -> None:
        u = message.usage
        self.progress.apply(u)
        if u.retries > self._last_retries:
            now = time.monotonic()
            if now - self._last_retry_log >= 1.0:
                self._last_retry_log = now
                self.log_pane.add([("retry", f"provider errors: {u.errors:,}, retries so far: {u.retries:,} (backing off)")])
            self._last_retries = u.retries
        self._refresh_stats()

    def on_engine_events(self, message: EngineEvents) -> None:
        self.bridge.signalled = False
        self.flusher.request()

    def events_waiting(self) -> None:
        """Engine events are (or will soon be) queued: apply them in the next batch."""
        self.flusher.request()

    def _flush(self, budget_s: float | None) -> bool:
        """Apply one batch of queued engine events to the model, then update the widgets once.
        Returns whether events are still queued (``FlushScheduler`` runs this)."""
        q = self.bridge.queue
        batch, ch = take_batch(q, self.model, self.progress, budget_s)
        if not batch:
            return False
        if self.gc_pacer.active:
            self.gc_pacer.tick()  # O(1): what the batch made joins the frozen generation
        self.applied_events += len(batch)
        if self.core_tree is not None:
            sync_with_tree(self.model, self.core_tree, ch)
        tw = self.tree_widget
        tw.apply_changes(ch)
        self.log_pane.add(ch.log)
        cur = tw.cursor_node
        if cur is not None and cur.data is not None and (cur.data.id in ch.dirty or cur.data.id in ch.restructured):
            self._detail_soon()
        self._refresh_stats()
        if self.latency_probe is not None:
            self.latency_probe(batch, ch)
        return bool(q)

    # ------------------------------------------------------------------ display
    def _elapsed(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else self.services.clock()
        return max(0.0, end - self.started_at)

    def _refresh_stats(self) -> None:
        state = self.state
        if state == "running" and self._paused():
            state = "paused"
        try:
            self.query_one(StatsBar).show(self.progress, self._elapsed(), state, self.requests_at_start)
        except Exception:  # noqa: BLE001 - not mounted yet / being torn down
            pass

    def _tick(self) -> None:
        if self.state in LIVE_STATES or self.state == "preparing":
            self._refresh_stats()

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        # the cursor moves at once; the detail pane follows when it settles (holding a key stays fast)
        if self._highlight_timer is not None:
            self._highlight_timer.stop()

        def settled() -> None:
            self._highlight_timer = None
            self._show_detail()

        self._highlight_timer = self.set_timer(self.HIGHLIGHT_SETTLE, settled)

    def _detail_soon(self) -> None:
        """Refresh the detail pane for a node that changed, at most every DETAIL_INTERVAL seconds."""
        if self._detail_timer is not None:
            return
        wait = self._detail_at + self.DETAIL_INTERVAL - time.monotonic()
        if wait <= 0:
            self._show_detail()
        else:
            def fire() -> None:
                self._detail_timer = None
                self._show_detail()

            self._detail_timer = self.set_timer(wait, fire)

    def selected_id(self) -> str | None:
        """The id of the node under the tree's cursor."""
        cur = self.tree_widget.cursor_node
        return cur.data.id if cur is not None and cur.data is not None else None

    def _show_detail(self) -> None:
        self._detail_at = time.monotonic()
        nid = self.selected_id()
        vn = self.model.get(nid) if nid else None
        node = self.core_tree.nodes.get(nid) if (self.core_tree is not None and nid) else None
        path = self.model.path(nid) if nid else []
        self.query_one(DetailPane).show(detail_renderable(vn, node, path))

    def refuse(self, why: str) -> None:
        self.notify(why, severity="warning", timeout=4)

    # ------------------------------------------------------------------ actions
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        """Hide the keys that make no sense in this state (False); grey out those that do later (None)."""
        return key_state(action, self.state, live=self.live, paused=self._paused(), has_run_dir=self.run_dir is not None,
                         finished=self.fin is not None,
                         browsed_complete=lambda: self.run_dir is not None and run_status(self.run_dir) == "complete")

    def action_pause(self) -> None:
        engine = self.engine
        if not self.live or engine is None:
            return self.refuse("Nothing to pause: the run is not going on.")
        if engine.paused:
            return self.action_unpause()
        engine.pause()
        self.log_pane.add([("steer", "paused: no new calls start; the calls in flight finish")])
        self._refresh_stats()
        self.refresh_bindings()

    def action_unpause(self) -> None:
        """Resume a paused live run (p or u)."""
        engine = self.engine
        if not self.live or engine is None or not engine.paused:
            return self.refuse("Nothing to resume: the run is not paused.")
        engine.resume()
        self.log_pane.add([("steer", "resumed")])
        self._refresh_stats()
        self.refresh_bindings()

    def action_cancel(self) -> None:
        if not self.live:
            return self.refuse("Nothing to cancel: the run is not going on.")

        def answer(yes: bool | None) -> None:
            if yes:
                self.request_stop()

        self.app.push_screen(
            ConfirmScreen(
                "Cancel the run?",
                "No new calls start; the calls in flight finish and everything is saved.\n"
                f"Resume later with u here, Open run…, or: treesynth run --resume {self.run_dir}",
                yes="Cancel the run", no="Keep running",
            ),
            answer,
        )

    def request_stop(self) -> None:
        """Stop a going run gracefully: no new calls; the calls in flight finish and are saved."""
        if self.run is not None and self.state in ("running", "paused"):
            self.run.request_stop()
            self.state = "stopping"
            self.log_pane.add([("steer", "stopping: waiting for the calls in flight")])
            self._refresh_stats()
            self.refresh_bindings()

    def stop_then_quit(self) -> None:
        """Stop a going run gracefully and quit the app once it has stopped."""
        self.quit_when_done = True
        self.request_stop()

    # steering: the keys ask first, then steer the live engine (steering.py)
    def action_prune(self) -> None:
        self.steering.prune()

    def action_add_value(self) -> None:
        self.steering.add_value()

    def action_rename_value(self) -> None:
        self.steering.rename_value()

    def action_remove_value(self) -> None:
        self.steering.remove_value()

    def action_reexpand(self) -> None:
        self.steering.reexpand()

    def action_resume_run(self) -> None:
        if self.live and self._paused():
            return self.action_unpause()
        if self.run_dir is None or self.state in LIVE_STATES or self.state == "preparing":
            return self.refuse("Nothing to resume.")
        self._reopen(ResumeRun(self.run_dir))

    def _reopen(self, source: ResumeRun) -> None:
        """Open the run again from its directory and carry it on (u, or + once the extension is recorded)."""
        self.source = source
        self.fin = None
        self.error = None
        self.run = None
        self.started_at = self.ended_at = None
        self.bridge = EventBridge(self)
        self.prepare()

    def action_extend(self) -> None:
        if self.state in LIVE_STATES or self.state == "preparing":
            return self.refuse(extending.NOT_FINISHED)
        self._extend()

    @work(exclusive=True, group="extend", exit_on_error=False)
    async def _extend(self) -> None:
        """+ on a finished run: ask the new total, record it, then resume the run to fill it (extending.py)."""
        complete = self.state == "complete" or (self.state == "browsing" and self.run_dir is not None and run_status(self.run_dir) == "complete")
        current = self.run.cfg.size if self.run is not None else self.progress.size
        overrides = dict(self.source.overrides) if isinstance(self.source, ResumeRun) else {}
        await extending.extend(self, current, complete, overrides, self._reopen)

    def action_summary(self) -> None:
        if self.fin is None:
            return

        def chosen(what: str | None) -> None:
            if what == "report":
                self.action_report()
            elif what == "quit":
                self.app.quit_with(exit_code_for(self.fin.status) if self.fin else 0)

        title = f"{(self.run.command if self.run is not None else 'run').capitalize()} {self.fin.status}"
        self.app.push_screen(SummaryScreen(title, summary_renderable(self.closing_rows(), self.fin.status == "complete"), report.REPORT_HINT), chosen)

    def closing_rows(self) -> list[tuple[str, str]]:
        """The finished run's summary rows (its mode's own included)."""
        assert self.fin is not None
        if self.run is None:
            from treesynth.core.progress import closing_rows

            return closing_rows(self.fin)
        try:
            return self.run.summary_rows(self.fin)
        except Exception:  # noqa: BLE001 - e.g. an unreadable summary file: the rest still shows
            from treesynth.core.progress import closing_rows

            return closing_rows(self.fin, self.run.command)

    def action_report(self) -> None:
        if self.run_dir is None:
            return self.refuse("No run directory yet.")
        if self.state in LIVE_STATES:
            return self.refuse("Build the report once the run has finished (or after cancelling it).")
        self.build_report(self.run_dir)

    @work(exclusive=True, group="report", exit_on_error=False)
    async def build_report(self, run_dir: Path) -> None:
        await report.build_report(run_dir, self.notify, self.log_pane.add, self.app.call_from_thread)

    def action_expand_all(self) -> None:
        t = self.tree_widget
        root = t.root
        if any(not h.is_expanded for h in t.handles.values() if h.children):
            root.expand_all()
        else:
            for c in root.children:
                c.collapse_all()
        t.move_cursor(t.cursor_node)

    def action_goto_active(self) -> None:
        """Move the cursor to a node being worked on (pivots, classify, supplement, synthesis)."""
        for vn in self.model.walk():
            if vn.state in (PIVOTS, CLASSIFY, SUPPLEMENT, SYNTH):
                self.tree_widget.select_id(vn.id)
                return
        self.refuse("No node is being worked on right now.")

    def action_back(self) -> None:
        if self.state in LIVE_STATES or self.state == "preparing":
            return self.refuse("The run is going on: cancel it (c) or quit (q) first.")
        if self.app.screen_stack and self.app.screen_stack[0] is not self:
            self.app.pop_screen()

    def action_quit_run(self) -> None:
        self.request_quit()

    def request_quit(self) -> None:
        """Quit the app: a going run is stopped gracefully first (asked once); a second request quits now."""
        if self.state == "stopping" and self.quit_when_done:
            self.app.quit_with(130)  # the worker is cancelled on exit; every write is append-only or atomic
            return
        if self.state in ("running", "paused"):

            def answer(yes: bool | None) -> None:
                if yes:
                    self.stop_then_quit()

            self.app.push_screen(
                ConfirmScreen(
                    "Stop the run and quit?",
                    "The calls in flight finish and the run is saved; resume it later with\n"
                    f"treesynth run --resume {self.run_dir}\n\nPress q again while it stops to quit at once.",
                    yes="Stop and quit", no="Keep running",
                ),
                answer,
            )
            return
        if self.state == "stopping":
            self.quit_when_done = True
            return
        if self.state == "preparing":
            self.workers.cancel_group(self, "prepare")
            self.app.quit_with(130)
            return
        self.app.quit_with(self.exit_code())

    def exit_code(self) -> int:
        """The process exit code for this run as it stands (0 complete, 130 stopped, 3 budget, 1 incomplete, 2 error)."""
        if self.fin is not None:
            return exit_code_for(self.fin.status)
        return 2 if self.error is not None else 0
