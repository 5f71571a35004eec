"""Trees as artifacts in the TUI: the New run form's "tree from" field (``--tree-from``) and the + key that
extends a finished run (``treesynth extend RUN --size N``). Driven by keyboard through Textual's Pilot, with
the scripted in-process provider."""

from __future__ import annotations

import json

from tests.conftest import read_jsonl
from tests.fakes import ScriptedTransport
from tests.test_tree_from import BIKE, BIKE_LEAVES, TREE_STEPS, leaf_paths
from tests.test_tui import _calls, _footer_keys, _text, _type
from tests.test_tui_support import cfg, finished_run, services, wait_for
from treesynth.core.engine.mode import GenerationMode
from treesynth.core.modes import register_mode
from treesynth.tui.app import TreesynthApp
from treesynth.tui.dialogs import PromptScreen
from treesynth.tui.new_run import NewRunScreen
from treesynth.tui.run_screen import RunScreen
from treesynth.tui.runs import BrowseRun, NewRun
from treesynth.tui.widgets import LogPane, StatsBar

SIZE = (100, 32)


def _shown(form: NewRunScreen, key: str) -> str:
    """The error shown under a field ('' when none is)."""
    err = form.query_one(f"#e-{key}")
    return str(err.render()) if "-shown" in err.classes else ""


# ---------------------------------------------------------------------------- tree from


async def test_a_tree_source_that_does_not_exist_is_one_line_under_the_field_and_nothing_starts(tmp_path):
    t = ScriptedTransport()
    app = TreesynthApp(services=services(t, runs_root=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        form: NewRunScreen = app.screen
        missing = tmp_path / "nope.yaml"
        form.set_values(task="math word problems", tree_from=str(missing), out=str(tmp_path / "never"))
        await pilot.pause()
        assert form.errors["tree_from"] == f"--tree-from {missing}: no such run directory or file"
        assert _shown(form, "tree_from") == form.errors["tree_from"]
        assert "-invalid" in form.query_one("#label-tree_from").classes
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form
        assert "Not started: --tree-from" in str(form.query_one("#status").render())
        # the estimate waits for the field to be fixed; empty grows a new tree as before
        await wait_for(pilot, lambda: "fix the fields" in str(form.query_one("#estimate").render()), what="the estimate to ask for fixes")
        form.set_values(tree_from="")
        await pilot.pause()
        assert form.errors == {} and _shown(form, "tree_from") == ""
        await wait_for(pilot, lambda: "samples" in form.estimate_text, what="an estimate")
    assert _calls(t) == 0
    assert not (tmp_path / "never").exists()


async def test_a_taxonomy_with_a_placeholder_value_is_refused_as_the_cli_refuses_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(BIKE.replace("this week", "Value 2"))
    t = ScriptedTransport()
    app = TreesynthApp(services=services(t, runs_root=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        form: NewRunScreen = app.screen
        form.query_one("#f-tree_from").focus()
        await _type(pilot, str(bad))  # checked as it is typed
        await pilot.pause()
        expected = f"--tree-from {bad}: at topic = repairs: value 'Value 2' is a placeholder, not a concrete name"
        assert form.errors == {"tree_from": expected}  # the task, fields and depth come from the file
        assert _shown(form, "tree_from") == expected
        form.set_values(out=str(tmp_path / "never"))
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.screen is form and expected in str(form.query_one("#status").render())
        # fixed on disk, the same field passes
        bad.write_text(BIKE)
        form.set_values(size="30")
        await pilot.pause()
        assert form.errors == {}
    assert _calls(t) == 0
    assert not (tmp_path / "never").exists()


async def test_a_taxonomy_from_the_form_starts_a_run_with_its_leaves(tmp_path):
    (tmp_path / "bike.yaml").write_text(BIKE)
    t = ScriptedTransport()
    out = tmp_path / "run"
    app = TreesynthApp(services=services(t, runs_root=tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        form: NewRunScreen = app.screen
        form.set_values(tree_from=str(tmp_path / "bike.yaml"), size="30", out=str(out))  # no task: the file's
        await pilot.pause()
        assert form.errors == {}
        await wait_for(pilot, lambda: "split(s) make no calls" in form.estimate_text, what="the estimate")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: app.run_screen is not None, what="the run screen")
        rs: RunScreen = app.run_screen
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to finish")
        assert rs.fin.status == "complete" and rs.fin.rows == 30
        # the view's leaves are the file's, and so are the run's
        view_leaves = {tuple(p.value for p in rs.model.path(vn.id)) for vn in rs.model.walk() if not vn.children and vn.id != "0"}
        assert view_leaves == BIKE_LEAVES == leaf_paths(out)
        assert set(rs.tree_widget.handles) == set(rs.core_tree.nodes)
    assert all(t.calls[s] == 0 for s in TREE_STEPS)  # every split was the file's
    assert len(read_jsonl(out / "dataset.jsonl")) == 30


# ---------------------------------------------------------------------------- extend


async def _extend_to(pilot, size: str) -> None:
    await pilot.press("plus")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, PromptScreen), what="the extend dialog")
    await _type(pilot, size)
    await pilot.press("enter")


async def test_extend_a_browsed_finished_run_grows_it_to_the_new_total(tmp_path):
    out = tmp_path / "done"
    await finished_run(out, size=20)
    before = read_jsonl(out / "dataset.jsonl")
    t = ScriptedTransport()
    app = TreesynthApp(services=services(t), start=BrowseRun(out))
    async with app.run_test(size=(160, 32)) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.state == "browsing", what="browsing")
        await wait_for(pilot, lambda: ("+", "Extend") in _footer_keys(app), what="the Extend key in the footer")
        # the dialog keeps a bad total under its one-line error
        await _extend_to(pilot, "abc")
        dialog = app.screen
        assert isinstance(dialog, PromptScreen)
        assert str(dialog.query_one("#error").render()) == "Type a whole number of rows larger than 20."
        dialog.query_one("#value").value = ""
        await _type(pilot, "20")
        await pilot.press("enter")
        assert str(dialog.query_one("#error").render()) == "20 is not larger than the run's size (20): extend only adds rows."
        dialog.query_one("#value").value = ""
        await _type(pilot, "50")
        await pilot.press("enter")
        await wait_for(pilot, lambda: rs.fin is not None, what="the extended run to finish")
        assert rs.fin.status == "complete" and rs.fin.rows == 50 and rs.progress.size == 50
        log = "\n".join(str(line.text) for line in rs.query_one(LogPane).lines)  # the summary is on top
        assert f"extending {out} from 20 to 50 rows on the same tree" in log
        assert "50/50 samples" in _text(rs.query_one(StatsBar))
        assert sum(rs.model.nodes[leaf.id].done for leaf in rs.core_tree.leaves()) == 50
    after = read_jsonl(out / "dataset.jsonl")
    assert len(after) == 50 and after[:20] == before  # the rows it had, unchanged, first
    assert all(t.calls[s] == 0 for s in TREE_STEPS)  # the same tree


async def test_extend_after_a_run_finishes_in_the_tui_and_again(tmp_path):
    out = tmp_path / "r"
    t = ScriptedTransport()
    app = TreesynthApp(services=services(t), start=NewRun(cfg(size=20), out))
    async with app.run_test(size=(160, 32)) as pilot:
        rs: RunScreen = app.screen
        assert not [k for k in _footer_keys(app) if k[1] == "Extend"]  # not while it runs
        await wait_for(pilot, lambda: rs.fin is not None and type(app.screen).__name__ == "SummaryScreen", what="the summary")
        first = read_jsonl(out / "dataset.jsonl")
        await pilot.press("escape")
        await wait_for(pilot, lambda: ("+", "Extend") in _footer_keys(app), what="the Extend key in the footer")
        await _extend_to(pilot, "35")
        await wait_for(pilot, lambda: rs.fin is not None and rs.fin.rows == 35, what="the run extended to 35")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SummaryScreen", what="the summary again")
        await pilot.press("escape")
        await wait_for(pilot, lambda: ("+", "Extend") in _footer_keys(app), what="the Extend key in the footer")
        await _extend_to(pilot, "40")  # once more, from the extended run
        await wait_for(pilot, lambda: rs.fin is not None and rs.fin.rows == 40, what="the run extended to 40")
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 40 and rows[:20] == first
    assert app.return_code in (None, 0)


class _NoMore(GenerationMode):
    """A mode whose runs cannot be extended (as a balance run's cannot)."""

    kind = "no-more-rows"
    extendable = False


async def test_extend_is_refused_in_one_line_for_a_mode_that_cannot(tmp_path, monkeypatch):
    register_mode(_NoMore)
    out = tmp_path / "done"
    await finished_run(out, size=20, mode=_NoMore.kind)
    app = TreesynthApp(services=services(), start=BrowseRun(out))
    async with app.run_test(size=SIZE) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.state == "browsing", what="browsing")
        notes: list[str] = []
        monkeypatch.setattr(rs, "refuse", notes.append)
        await pilot.press("plus")
        await wait_for(pilot, lambda: notes, what="the refusal")
        assert notes == [f"{str(out)!r} is a no-more-rows run; treesynth extend works on runs made by treesynth run"]
        assert not isinstance(app.screen, PromptScreen)
    assert len(read_jsonl(out / "dataset.jsonl")) == 20
    assert "extended" not in json.loads((out / "config.json").read_text())


def test_the_extend_key_shows_only_on_a_finished_run():
    from treesynth.tui.keys import key_state

    def shown(state, complete=True, has_run_dir=True):
        return key_state("extend", state, live=state in ("running", "paused", "stopping"), paused=state == "paused",
                         has_run_dir=has_run_dir, finished=state == "complete", browsed_complete=lambda: complete)

    assert shown("complete") and shown("browsing")
    assert not shown("browsing", complete=False)  # an unfinished run is resumed (u), not extended
    assert not shown("complete", has_run_dir=False)
    for state in ("preparing", "running", "paused", "stopping", "stopped", "budget", "incomplete", "error"):
        assert not shown(state), state
