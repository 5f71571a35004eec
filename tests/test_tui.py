"""The TUI driven by keyboard through Textual's Pilot, with the scripted in-process provider."""

from __future__ import annotations

import io
import json
import sys
import types
from pathlib import Path

import pytest
from rich.console import Console
from rich.text import Text

from tests.conftest import read_jsonl
from tests.fakes import ScriptedTransport
from tests.test_tui_support import GatedTransport, cfg, finished_run, services, wait_for
from treesynth.core.treefile import load_tree_readonly
from treesynth.tui.app import TreesynthApp
from treesynth.tui.model import PRUNED_S, SYNTH
from treesynth.tui.new_run import NewRunScreen
from treesynth.tui.run_screen import RunScreen
from treesynth.tui.runs import BrowseRun, NewBalance, NewRun, ResumeRun
from treesynth.tui.widgets import DetailPane, LogPane, StatsBar

SIZE = (100, 32)


def _text(widget) -> str:
    """The plain text a Static (or a widget made of Statics) shows."""
    from textual.widgets import Static

    parts = []
    for w in [widget, *widget.query(Static)]:
        if isinstance(w, Static):
            content = w.content
            if isinstance(content, (str, Text)):
                parts.append(str(w.render()))
            else:  # a rich renderable (a Group of Texts, a Table): its plain text
                console = Console(width=200, file=io.StringIO(), record=True, color_system=None)
                console.print(content)
                parts.append(console.export_text())
    return "\n".join(parts)


def _log_text(app) -> str:
    return "\n".join(str(line.text) for line in app.screen.query_one(LogPane).lines)


def _calls(t) -> int:
    return sum(t.calls.values())


async def key(pilot, *keys: str, delay: float = 0.05) -> None:
    """Press keys without waiting for the app to be idle (it is not, while a run goes on)."""
    for k in keys:
        pilot.app.simulate_key(k)
        await pilot.pause(delay)


async def _type(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space", ",": "comma", "/": "slash", ".": "full_stop", "-": "minus"}.get(c, c) for c in text])


# ---------------------------------------------------------------------------- the form


async def test_start_from_the_form_grows_the_tree_and_the_stats(tmp_path):
    t = GatedTransport()  # tree calls are answered at once; samples wait for release()
    out = tmp_path / "run"
    app = TreesynthApp(services=services(t, runs_root=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        form = app.screen
        assert isinstance(form, NewRunScreen)
        await _type(pilot, "math word problems")  # the task field has the focus
        form.set_values(fields="question,answer", depth="2", size="60", pivots="6", out=str(out))
        await pilot.pause()
        assert form.errors == {}
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.run_screen is not None, what="the run screen")
        rs: RunScreen = app.run_screen
        # the tree grows (1 + 4 + 16 nodes) and every leaf starts synthesising
        await wait_for(pilot, lambda: sum(1 for v in rs.model.nodes.values() if v.state == SYNTH) == 16, what="16 leaves")
        # 5 tree calls per expanded node (pivots in 2 calls of 3, criterion, assign, supplement), one per leaf
        await wait_for(pilot, lambda: rs.progress.requests == 5 * 5 + 16, what="the usage")
        assert len(rs.tree_widget.handles) == 21 and rs.progress.samples_done == 0
        stats = _text(rs.query_one(StatsBar))
        assert "0/60 samples" in stats and "req 41" in stats and "running" in stats
        t.release()
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to finish")
        assert rs.fin.status == "complete" and rs.fin.rows == 60
        assert rs.progress.requests == _calls(t) and rs.progress.tokens_in > 0
        stats = _text(rs.query_one(StatsBar))
        assert "60/60 samples" in stats and "complete" in stats and "tokens" in stats
        # the view holds exactly the run's tree
        tree = load_tree_readonly(out)
        assert set(rs.tree_widget.handles) == set(tree.nodes)
        for leaf in tree.leaves():
            assert rs.model.nodes[leaf.id].done == leaf.target
        assert len(read_jsonl(out / "dataset.jsonl")) == 60
        # the summary pops up; escape closes it; q quits with the run's exit code
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SummaryScreen", what="the summary")
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code == 0


async def test_invalid_form_input_shows_the_error_and_does_not_start(tmp_path):
    t = ScriptedTransport()
    app = TreesynthApp(services=services(t, runs_root=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        form: NewRunScreen = app.screen
        await _type(pilot, "math word problems")
        form.set_values(depth="-1", fields="id,answer", out=str(tmp_path / "never"))
        await pilot.pause()
        assert "depth" in form.errors and "greater than or equal to 0" in form.errors["depth"]
        assert "reserved" in form.errors["fields"]
        assert "-shown" in form.query_one("#e-depth").classes
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        assert "Not started" in str(form.query_one("#status").render())
        # an empty task is refused too, with the CLI's own message
        form.set_values(depth="2", fields="question,answer")
        form.query_one("#f-task").value = ""
        await pilot.pause()
        assert form.errors == {}
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        assert "missing task" in str(form.query_one("#status").render())
    assert _calls(t) == 0
    assert not (tmp_path / "never").exists()


async def test_the_form_validates_as_you_type_with_the_cli_rules(tmp_path):
    from treesynth.core.config import validate_partial

    app = TreesynthApp(services=services(runs_root=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        form: NewRunScreen = app.screen
        form.query_one("#f-size").focus()
        await _type(pilot, "0")
        assert form.errors["size"] == validate_partial({"size": "0"})["size"]
        await pilot.press("backspace")
        await _type(pilot, "25")
        assert "size" not in form.errors
        form.query_one("#f-api_base").focus()
        await _type(pilot, "ftp-nope")
        assert "http(s) URL" in form.errors["api_base"]
        # the estimate follows the form
        await wait_for(pilot, lambda: form.estimate_text == "" and "fix the fields" in str(form.query_one("#estimate").render()),
                       what="the estimate to ask for fixes")
        form.query_one("#f-api_base").value = ""
        await wait_for(pilot, lambda: "25 samples" in form.estimate_text, what="an estimate for 25 samples")


async def test_the_batch_checkbox_goes_into_the_config_and_the_estimate(tmp_path):
    from textual.widgets import Checkbox

    from treesynth.core.llm.pricing import call_price

    svc = services(runs_root=tmp_path)
    svc.price = call_price
    app = TreesynthApp(services=svc)
    async with app.run_test(size=SIZE) as pilot:
        form: NewRunScreen = app.screen
        form.set_values(task="math word problems", model="openai/gpt-4o-mini", size="1000")
        await wait_for(pilot, lambda: "1,000 samples" in form.estimate_text and "with the batch API" in form.estimate_text,
                       what="an estimate with the batch API's cost beside it")
        assert "batch" not in form.raw_values()
        form.query_one("#f-batch", Checkbox).value = True
        await pilot.pause(0.05)
        assert form.raw_values()["batch"] is True and not form.errors


async def test_provider_check_failure_returns_to_the_form(tmp_path):
    from treesynth.core.errors import ProviderError

    def refuse(cfg):
        raise ProviderError("missing API key for openai/gpt-4o-mini: set OPENAI_API_KEY in the environment")

    svc = services(runs_root=tmp_path)
    svc.preflight = refuse
    app = TreesynthApp(services=svc)
    async with app.run_test(size=SIZE) as pilot:
        form: NewRunScreen = app.screen
        form.set_values(task="math", out=str(tmp_path / "r"))
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.screen is form and "OPENAI_API_KEY" in str(form.query_one("#status").render()),
                       what="the error back on the form")
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------- steering


async def test_pause_stops_new_calls_and_resume_finishes(tmp_path):
    t = ScriptedTransport(latency=0.02)
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=200, concurrency=2), tmp_path / "r"))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: _calls(t) >= 8, what="some calls")
        await key(pilot, "p")
        assert rs.run.steering.paused
        started = rs.run.client.usage.requests  # counted as each call starts
        await pilot.pause(0.5)
        assert rs.run.client.usage.requests == started, "calls started while paused"
        assert " paused " in _text(rs.query_one(StatsBar))
        assert "paused" in _log_text(app)
        await key(pilot, "p")
        assert not rs.run.steering.paused
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to finish")
        assert rs.fin.status == "complete" and rs.fin.rows == 200


async def test_cancel_leaves_a_resumable_run_and_u_resumes_it(tmp_path):
    out = tmp_path / "r"
    t = ScriptedTransport(latency=0.02)
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=200, concurrency=2), out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.progress.samples_done >= 20, what="some samples")
        await key(pilot, "c", "y")
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to stop")
        assert rs.fin.status == "stopped" and 0 < rs.fin.rows < 200
        assert json.loads((out / "state.json").read_text())["status"] == "stopped"
        assert f"treesynth run --resume {out}" in "\n".join(app.report_lines())
        stopped_rows = rs.fin.rows
        await pilot.press("escape")  # close the summary
        # the stopped run is resumable: u resumes it in place
        await pilot.press("u")
        await wait_for(pilot, lambda: rs.fin is not None and rs.fin.status == "complete", what="the resumed run to finish")
        assert rs.fin.rows == 200 and stopped_rows < 200
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 200 and len({r["id"] for r in rows}) == 200


async def test_resuming_shows_the_saved_tree_at_once(tmp_path):
    out = tmp_path / "r"
    t = ScriptedTransport(latency=0.02)
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=200, concurrency=2), out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.progress.samples_done >= 10, what="some samples")
        await key(pilot, "q", "y")  # stop and quit
        await wait_for(pilot, lambda: rs.fin is not None, what="the stop")
    assert app.return_code == 130
    saved = load_tree_readonly(out)
    app2 = TreesynthApp(services=services(ScriptedTransport(latency=0.05)), start=ResumeRun(out))
    async with app2.run_test(size=SIZE) as pilot:
        rs2: RunScreen = app2.screen
        await wait_for(pilot, lambda: rs2.run is not None, what="the run to open")
        assert set(saved.nodes) <= set(rs2.tree_widget.handles)
        assert rs2.progress.samples_done >= 10
        await wait_for(pilot, lambda: rs2.fin is not None, what="the resumed run to finish")
        assert rs2.fin.status == "complete"


def _held_after_root() -> GatedTransport:
    """Every call below the root waits for release(): the run is live, and nothing has samples."""
    return GatedTransport(hold=lambda node, step: "below" if node != "0" else None)


async def _paused_after_root_expanded(pilot, rs: RunScreen):
    await wait_for(pilot, lambda: len(rs.model.nodes["0"].children) == 4, what="the root to expand")
    await pilot.press("p")
    assert rs.run.steering.paused


@pytest.mark.slow
async def test_prune_and_edit_change_what_gets_synthesised(tmp_path):
    out = tmp_path / "r"
    t = _held_after_root()
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=60), out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        tw = rs.tree_widget
        await _paused_after_root_expanded(pilot, rs)
        assert rs.progress.samples_done == 0
        # prune 0.1
        tw.select_id("0.1")
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: rs.model.nodes["0.1"].state == PRUNED_S, what="0.1 pruned")
        # rename 0.0
        tw.select_id("0.0")
        await pilot.press("r")
        await pilot.press("ctrl+u")
        await _type(pilot, "fractions of a pizza")
        await pilot.press("enter")
        await wait_for(pilot, lambda: rs.model.nodes["0.0"].value == "fractions of a pizza", what="0.0 renamed")
        # remove 0.2
        tw.select_id("0.2")
        await pilot.press("d")
        await pilot.press("y")
        await wait_for(pilot, lambda: rs.model.nodes["0.2"].state == PRUNED_S, what="0.2 removed")
        # add a value to the root
        tw.select_id("0")
        await pilot.press("a")
        await _type(pilot, "ratios and rates")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "0.4" in rs.model.nodes and rs.model.nodes["0.4"].value == "ratios and rates",
                       what="the new value")
        assert "0.4" in tw.handles
        log = _log_text(app)
        assert "pruned" in log and "renamed" in log and "added" in log
        await pilot.press("p")  # resume
        t.release()
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to finish")
        assert rs.fin.status == "complete"
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 60
    top = {r["path"][0]["value"] for r in rows}
    assert "fractions of a pizza" in top and "ratios and rates" in top
    assert not [r for r in rows if r["leaf_id"].startswith(("0.1", "0.2"))]
    tree = load_tree_readonly(out)
    assert tree.get("0.1").status == "pruned" and tree.get("0.2").status == "pruned"


async def test_reexpand_and_refused_edits_say_why(tmp_path):
    out = tmp_path / "r"
    t = GatedTransport()  # the tree grows at once; samples wait
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=60), out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        tw = rs.tree_widget
        await wait_for(pilot, lambda: rs.model.nodes.get("0.3") is not None and rs.model.nodes["0.3"].children,
                       what="0.3 to expand")
        await pilot.press("p")
        pivots_before = t.calls["pivots"]
        tw.select_id("0.3")
        await pilot.press("e")
        await pilot.press("y")
        await wait_for(pilot, lambda: "reset" in _log_text(app), what="0.3 reset")
        assert not rs.model.nodes["0.3"].children and "0.3.0" not in tw.handles
        await pilot.press("p")
        t.release()
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to finish")
        assert t.calls["pivots"] > pivots_before
        # after the run: steering keys are hidden, and the engine's refusal would be shown
        tw.select_id("0.0")
        await pilot.press("escape")
        await pilot.press("x")
        assert "already has samples" not in _log_text(app)
    tree = load_tree_readonly(out)
    assert tree.get("0.3").revision == 1 and tree.get("0.3").status == "expanded"


async def test_an_edit_the_engine_refuses_is_shown_with_its_reason(tmp_path):
    t = GatedTransport(hold=lambda node, step: "gen" if step == "gen" and t.calls["gen"] >= 2 else None)  # 2 answered, then held
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=400, concurrency=4), tmp_path / "r"))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: any(v.done for v in rs.model.nodes.values() if v.leaf), what="a leaf with samples")
        leaf = next(v for v in rs.model.nodes.values() if v.leaf and v.done)
        rs.tree_widget.select_id(leaf.id)
        await pilot.press("x", "y")
        await wait_for(pilot, lambda: "already has samples" in _log_text(app), what="the refusal")
        assert rs.model.nodes[leaf.id].state != PRUNED_S
        # the root has no value to rename: refused before asking
        rs.tree_widget.select_id("0")
        await pilot.press("r")
        assert app.screen is rs
        await key(pilot, "q", "y")  # stop and quit: the held calls in flight would be waited for ...
        assert rs.state == "stopping"
        await key(pilot, "q")  # ... a second q quits at once
    assert app.return_code == 130 and rs.fin is None


# ---------------------------------------------------------------------------- opening runs


@pytest.mark.slow
async def test_opening_a_finished_run_shows_its_tree(tmp_path):
    runs = tmp_path / "runs"
    out = runs / "done"
    await finished_run(out)
    app = TreesynthApp(services=services(runs_root=runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "OpenRunScreen", what="the open dialog")
        await _type(pilot, str(out))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.state == "browsing", what="browsing")
        rs: RunScreen = app.screen
        tree = load_tree_readonly(out)
        assert set(rs.tree_widget.handles) == set(tree.nodes)
        counts = {}
        for r in read_jsonl(out / "samples.jsonl"):
            counts[r["leaf_id"]] = counts.get(r["leaf_id"], 0) + 1
        for lid, n in counts.items():
            assert rs.model.nodes[lid].done == n
        assert rs.model.nodes["0"].done == 60 and rs.progress.samples_done == 60
        # read-only: steering keys do nothing, the detail pane shows the node's split
        rs.tree_widget.select_id("0")
        await wait_for(pilot, lambda: "node 0 " in rs.query_one(DetailPane).plain(), what="the root's details")
        detail = rs.query_one(DetailPane).plain()
        assert "Dimension" in detail and "setting 0" in detail and "[pivots: " in detail
        await pilot.press("x")
        assert tree.get("0.1").status != "pruned"
        await pilot.press("escape")  # back to the form
        assert isinstance(app.screen, NewRunScreen)


async def test_open_run_dialog_lists_runs_and_resumes_an_unfinished_one(tmp_path):
    import asyncio

    from treesynth.core import events as ev
    from treesynth.core.run import Run

    runs = tmp_path / "runs"
    out = runs / "half"
    run = Run.create(cfg(size=100, concurrency=2), out, transport=ScriptedTransport(latency=0.002))

    def cb(e):
        if isinstance(e, ev.LeafProgress) and e.samples_done >= 20:
            run.request_stop()

    await run.execute(cb)
    t = ScriptedTransport()
    app = TreesynthApp(services=services(t, runs_root=runs))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "OpenRunScreen", what="the open dialog")
        dialog = app.screen
        await wait_for(pilot, lambda: dialog.query_one("OptionList").option_count == 1, what="the run list")
        await pilot.press("tab")  # from the path field to the list
        assert dialog.query_one("OptionList").has_focus
        await pilot.press("down")
        assert dialog.query_one("#path").value == str(out)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.run_screen is not None, what="the run screen")
        rs: RunScreen = app.run_screen
        await wait_for(pilot, lambda: rs.fin is not None, what="the resumed run to finish")
        assert rs.fin.status == "complete" and rs.fin.rows == 100
    assert len(read_jsonl(out / "dataset.jsonl")) == 100
    del asyncio


async def test_an_engine_error_is_one_line_and_the_run_stays_resumable(tmp_path):
    from treesynth.core.errors import ProviderError

    class Refusing(ScriptedTransport):
        async def __call__(self, req):
            raise ProviderError("authentication failed for openai/x: invalid API key")

    app = TreesynthApp(services=services(Refusing()), start=NewRun(cfg(), tmp_path / "r"))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.state == "error", what="the error")
        assert "invalid API key" in rs.error and "invalid API key" in _log_text(app)
        await pilot.press("q")
    assert app.return_code == 2
    assert app.report_lines() == ["treesynth: error: authentication failed for openai/x: invalid API key"]


# ---------------------------------------------------------------------------- report key


@pytest.fixture
def fake_report(monkeypatch):
    def install(module):
        import treesynth.analytics

        monkeypatch.setitem(sys.modules, "treesynth.analytics.report", module)
        monkeypatch.setattr(treesynth.analytics, "report", module, raising=False)

    return install


async def test_report_key_builds_the_report_when_available(tmp_path, fake_report):
    out = tmp_path / "done"
    await finished_run(out, size=20)
    calls = []
    mod = types.ModuleType("treesynth.analytics.report")

    def build_report(source, out=None, log=None, **kw):
        calls.append(Path(source))
        log("embedding 20 samples")  # from the report's thread
        dest = Path(source) / "report.html"
        dest.write_text("<html></html>")
        return dest

    mod.report_for_run = build_report
    fake_report(mod)
    app = TreesynthApp(services=services(), start=BrowseRun(out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.state == "browsing", what="browsing")
        await pilot.press("R")
        await wait_for(pilot, lambda: "report.html" in _log_text(app), what="the report")
        assert "report: embedding 20 samples" in _log_text(app)
    assert calls == [out]


async def test_report_flag_builds_the_report_when_the_run_completes(tmp_path, fake_report):
    calls = []
    mod = types.ModuleType("treesynth.analytics.report")

    def build_report(source, out=None, log=None, **kw):
        calls.append(Path(source))
        dest = Path(source) / "report.html"
        dest.write_text("<html></html>")
        return dest

    mod.report_for_run = build_report
    fake_report(mod)
    out = tmp_path / "r"
    app = TreesynthApp(services=services(report_when_done=True), start=NewRun(cfg(size=20), out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        log = lambda: "\n".join(str(line.text) for line in rs.query_one(LogPane).lines)  # noqa: E731 - the summary is on top
        await wait_for(pilot, lambda: rs.fin is not None and "report.html" in log(), what="the run and its report")
    assert calls == [out] and rs.fin.status == "complete"


async def test_report_key_says_not_available_yet(tmp_path, fake_report):
    out = tmp_path / "done"
    await finished_run(out, size=20)
    fake_report(types.ModuleType("treesynth.analytics.report"))  # no report_for_run
    app = TreesynthApp(services=services(), start=BrowseRun(out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.state == "browsing", what="browsing")
        await pilot.press("R")
        await wait_for(pilot, lambda: "not available yet" in _log_text(app), what="the notice")


# ---------------------------------------------------------------------------- a large tree


async def test_new_nodes_do_not_move_the_cursor_row(tmp_path):
    """Nodes appearing above the cursor keep the cursor's node on the same screen row."""
    # below the root: after release("tree"); samples: never (the run stays live)
    t = GatedTransport(fanout=6, supplement=2, hold=lambda node, step: "gen" if step == "gen" else ("tree" if node != "0" else None))
    app = TreesynthApp(services=services(t, auto_expand_depth=9),
                       start=NewRun(cfg(depth=3, size=2000, pivots=12, concurrency=64, max_values=10), tmp_path / "r"))
    async with app.run_test(size=(80, 24)) as pilot:
        rs: RunScreen = app.screen
        tw = rs.tree_widget
        await wait_for(pilot, lambda: len(rs.model.nodes["0"].children) == 8, what="the root's children")
        tw.select_id("0.7")
        await pilot.pause()
        tw.scroll_to(y=max(0, tw.cursor_node.line - 5), animate=False, immediate=True)
        await pilot.pause()
        row = tw.cursor_node.line - int(tw.scroll_offset.y)
        line_before = tw.cursor_node.line
        t.release("tree")
        await wait_for(pilot, lambda: len(rs.tree_widget.handles) > 300, what="the tree to grow")
        await pilot.pause(0.1)
        assert tw.cursor_node.data.id == "0.7"
        assert tw.cursor_node.line > line_before  # nodes were added above it ...
        assert tw.cursor_node.line - int(tw.scroll_offset.y) == row  # ... and it did not move on screen
        await pilot.press("down")
        assert tw.cursor_node.data.id == "0.7.0"
        await key(pilot, "q", "y")


# ---------------------------------------------------------------------------- entry points


def test_entry_points_fail_with_one_line_without_a_terminal(tmp_path, capsys, monkeypatch):
    from treesynth.cli.main import build_parser
    from treesynth.cli.tui import main, run_from_cli
    from treesynth.core.errors import ConfigError, TreesynthError

    assert main([str(tmp_path / "nope")]) == 2
    assert "is not a treesynth run" in capsys.readouterr().err
    assert main([]) == 2  # pytest's stdin is not a terminal
    assert "needs a terminal" in capsys.readouterr().err
    args = build_parser().parse_args(["run", "math", "--depth", "2", "--out", str(tmp_path / "r")])
    with pytest.raises(TreesynthError, match="--no-ui"):
        run_from_cli(args)
    assert not (tmp_path / "r").exists()
    with pytest.raises(ConfigError, match="depth"):  # the CLI's own validation, before any UI
        run_from_cli(build_parser().parse_args(["run", "math", "--depth", "-1"]))
    with pytest.raises(ConfigError, match="drop TASK"):
        run_from_cli(build_parser().parse_args(["run", "math", "--resume", str(tmp_path)]))


# ---------------------------------------------------------------------------- balance runs


def _balance_source(tmp_path, n=60, **spec_kw):
    from treesynth.core.balance import load_data

    rows = [{"question": f"Problem {i}: {'apples' if i % 3 else 'trains'} and {'money' if i % 5 else 'time'} number {i}", "answer": f"#### {i}"}
            for i in range(n)]
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_data(p, "question", ("question", "answer"))
    spec = {"data": str(p), "field": "question", "fields": ["question", "answer"], "route": "llm", "route_batch": 10,
            "target_per_leaf": 6, "size": None, "embedder": None, **spec_kw}
    flags = {"task": "math word problems", "depth": 2, "pivots": 6, "samples_per_call": 3}
    return NewBalance(data, spec, flags, tmp_path / "b"), rows


async def test_a_balance_run_grows_its_tree_and_ends_with_its_before_after_summary(tmp_path):
    from tests.fakes import hash_embedder

    src, rows = _balance_source(tmp_path)
    t = ScriptedTransport(fields=("question", "answer"))
    app = TreesynthApp(services=services(t, embedder=hash_embedder), start=src)
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.fin is not None, what="the balance run to finish")
        assert rs.run.kind == "balance" and rs.fin.status == "complete", rs.fin
        tree = load_tree_readonly(src.out)
        assert set(rs.tree_widget.handles) == set(tree.nodes) and len(tree.leaves()) > 1
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SummaryScreen" and "entropy" in _text(app.screen), what="the summary")
        shown = _text(app.screen)
        summary = json.loads((src.out / "balance_summary.json").read_text())
        assert f"{summary['input_rows']:,} rows in {summary['leaves']:,} leaves" in shown
        assert f"{summary['before']['gini']} -> {summary['after']['gini']}" in shown
        await pilot.press("escape")
        await pilot.press("q")
    assert app.return_code == 0
    assert any("entropy" in line for line in app.report_lines())
    balanced = read_jsonl(src.out / "balanced.jsonl")
    assert len(balanced) == 6 * len(load_tree_readonly(src.out).leaves())
    assert {b["provenance"] for b in balanced} <= {"original", "synthesised"}


@pytest.mark.slow
async def test_a_stopped_balance_run_resumes_in_the_tui(tmp_path):
    from tests.fakes import hash_embedder

    src, _rows = _balance_source(tmp_path)
    t = GatedTransport(fields=("question", "answer"))  # the tree grows and rows are routed; new rows wait
    app = TreesynthApp(services=services(t, embedder=hash_embedder), start=src)
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: any(v.state == SYNTH for v in rs.model.nodes.values()), what="leaves to start filling")
        await key(pilot, "q", "y")  # stop and quit
        await wait_for(pilot, lambda: rs.fin is not None, what="the stop")
    assert app.return_code == 130
    assert f"treesynth balance --resume {src.out}" in "\n".join(app.report_lines())
    assert not (src.out / "balanced.jsonl").exists()
    app2 = TreesynthApp(services=services(ScriptedTransport(fields=("question", "answer")), embedder=hash_embedder), start=ResumeRun(src.out))
    async with app2.run_test(size=SIZE) as pilot:
        rs2: RunScreen = app2.screen
        await wait_for(pilot, lambda: rs2.fin is not None, what="the resumed balance run to finish")
        assert rs2.run.kind == "balance" and rs2.fin.status == "complete"
    assert (src.out / "balanced.jsonl").exists() and (src.out / "before_after.csv").exists()


def test_balance_without_no_ui_needs_a_terminal_before_reading_anything(tmp_path, capsys):
    from treesynth.cli.main import main as cli_main

    assert cli_main(["balance", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "needs a terminal" in err and "--no-ui" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def _footer_keys(app) -> list[tuple[str, str]]:
    """(key, label) of each key the footer shows now."""
    from textual.widgets._footer import FooterKey

    return [(fk.key_display or fk.key, fk.description) for fk in app.screen.query(FooterKey) if fk.display]


async def test_u_resumes_a_paused_run_and_the_footer_says_what_p_and_u_do(tmp_path):
    t = ScriptedTransport(latency=0.02)
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=200, concurrency=2), tmp_path / "r"))
    async with app.run_test(size=(160, 32)) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: _calls(t) >= 8, what="some calls")
        await pilot.pause(0.1)
        keys = _footer_keys(app)
        assert ("p", "Pause") in keys and not [k for k in keys if k[1] == "Resume"], keys
        await key(pilot, "p")
        assert rs.run.steering.paused
        await pilot.pause(0.1)
        keys = _footer_keys(app)
        assert ("p", "Resume") in keys and ("u", "Resume") in keys and ("p", "Pause") not in keys, keys
        started = rs.run.client.usage.requests
        await key(pilot, "u")  # u resumes the paused run
        assert not rs.run.steering.paused
        await wait_for(pilot, lambda: rs.run.client.usage.requests > started, what="calls after u")
        await pilot.pause(0.1)
        keys = _footer_keys(app)
        assert ("p", "Pause") in keys and not [k for k in keys if k[1] == "Resume"], keys
        await key(pilot, "p", "p")  # p still toggles
        assert not rs.run.steering.paused
        assert _log_text(app).count("resumed") == 2
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to finish")
        assert rs.fin.status == "complete" and rs.fin.rows == 200


@pytest.mark.slow
async def test_the_stats_bar_shows_a_call_in_flight_and_how_long_it_has_waited(tmp_path):
    import re

    t = _held_after_root()  # the calls below the root wait: the run is live with calls in flight
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=60, concurrency=1), tmp_path / "r"))
    async with app.run_test(size=(140, 32)) as pilot:
        rs: RunScreen = app.screen
        stats = rs.query_one(StatsBar)
        await wait_for(pilot, lambda: len(rs.model.nodes["0"].children) == 4, what="the root to expand")
        assert "in flight" not in _text(stats), "not before it has waited a while"
        await wait_for(pilot, lambda: "in flight 1" in _text(stats), what="a call shown in flight")
        await pilot.pause(0.3)
        first = int(re.search(r"in flight 1, (\d+) s", _text(stats)).group(1))
        assert first >= 5, "a call shows as in flight once it has waited 5 s"
        await pilot.pause(2.3)  # no event arrives meanwhile: the bar ticks by itself
        later = int(re.search(r"in flight 1, (\d+) s", _text(stats)).group(1))
        assert later >= first + 2, (first, later)
        t.release()
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to finish")
        await pilot.pause(0.1)
        assert "in flight" not in _text(stats)


async def test_a_data_driven_split_is_labelled_in_the_tree_and_the_detail_pane(tmp_path):
    from tests.fakes import hash_embedder
    from treesynth.core.run import Run
    from treesynth.tui.widgets import RunTree

    out = tmp_path / "dd"
    bad = json.dumps({"dimension": "dimension_1", "values": ["value", "text"]})
    t = ScriptedTransport(overrides={"criterion": [bad] * 3})
    fin = await Run.create(cfg(depth=1, size=12), out, transport=t, embed=hash_embedder).execute()
    assert fin.status == "complete"
    app = TreesynthApp(services=services(), start=BrowseRun(out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.state == "browsing", what="browsing")
        labels = [vn.text for vn in rs.query_one(RunTree).model.nodes.values()]
        assert any(label.startswith("[data-driven] about:") for label in labels), labels
        await pilot.pause()
        assert "data-driven: embedding clusters" in _text(rs.query_one(DetailPane))
