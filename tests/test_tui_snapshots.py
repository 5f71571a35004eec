"""Snapshots (SVG, pytest-textual-snapshot) of the main screens at fixed terminal sizes.

Deterministic: scripted provider, a fixed clock, relative run paths, no cursor blink, and the
run screen photographed in a settled state (the tree grown; generation calls held).
Update after an intended change with ``pytest tests/test_tui_snapshots.py --snapshot-update``
and review the SVGs in tests/snapshots/.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
import pytest_textual_snapshot
from textual.widgets import Input

from tests.test_tui_support import GatedTransport, cfg, finished_run, services
from treesynth.tui.app import TreesynthApp
from treesynth.tui.model import FAILED_S, PRUNED_S, SYNTH
from treesynth.tui.runs import BrowseRun, NewRun


class _SnapshotsDir(pytest_textual_snapshot.SVGImageExtension):
    """Keep the SVGs in tests/snapshots/<test module>/ ."""

    @classmethod
    def dirname(cls, *, test_location) -> str:
        return str(Path(test_location.filepath).parent / "snapshots" / test_location.basename)


@pytest.fixture
def _snapshots_in_tests_snapshots(monkeypatch):
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", _SnapshotsDir)


@pytest.fixture
def snap(_snapshots_in_tests_snapshots, snap_compare):
    return snap_compare


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # a fixed estimate: the form's picture should not change whenever a prompt template does
    from treesynth.core.estimate import Estimate
    from treesynth.tui.new_run import NewRunScreen

    monkeypatch.setattr(NewRunScreen, "_estimate", lambda self, cfg: (Estimate(31, 100, 107, 23, 42_400, 47_500, 0.0349, 5.0), None))
    return tmp_path


def _fixed(svc):
    svc.clock = lambda: 1000.0  # elapsed always 00:00
    return svc


async def _settle(pilot, predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the app did not settle")
        await pilot.pause(0.02)
    for inp in pilot.app.screen.query(Input):
        inp.cursor_blink = False
    await pilot.pause(0.1)


def _form_app(in_tmp):
    return TreesynthApp(services=_fixed(services(runs_root=Path("runs"))))


def test_new_run_form(snap, in_tmp):
    async def ready(pilot):
        await _settle(pilot, lambda: pilot.app.screen.estimate_text != "")

    assert snap(_form_app(in_tmp), terminal_size=(80, 24), run_before=ready)


def test_new_run_form_with_errors(snap, in_tmp):
    async def fill(pilot):
        await _settle(pilot, lambda: pilot.app.screen.estimate_text != "")
        form = pilot.app.screen
        form.set_values(task="GSM8K-style math word problems", fields="id,answer", depth="-1", api_base="localhost:8000")
        await _settle(pilot, lambda: len(form.errors) == 3)
        form.action_start()
        await pilot.pause(0.1)

    assert snap(_form_app(in_tmp), terminal_size=(80, 24), run_before=fill)


class _FixedTokens(GatedTransport):
    """Token counts that do not depend on the prompt templates' wording."""

    async def __call__(self, req):
        c = await super().__call__(req)
        return dataclasses.replace(c, tokens_in=100, tokens_out=50)


def _live_app(in_tmp, theme=None):
    t = _FixedTokens(fail_prefix="0.3")  # the tree grows at once, node 0.3 fails, samples wait
    svc = _fixed(services(t))
    app = TreesynthApp(services=svc, start=NewRun(cfg(size=60, max_retries=0), Path("runs/demo")), theme=theme)

    async def settle(pilot):
        rs = pilot.app.screen
        m = rs.model

        def grown():
            return (
                "0.3" in m.nodes and m.nodes["0.3"].state == FAILED_S
                and sum(1 for v in m.nodes.values() if v.state == SYNTH) == 12
                and rs.run is not None and rs.progress.requests == rs.run.client.usage.requests
            )

        await _settle(pilot, grown)
        rs.tree_widget.select_id("0.1")
        await pilot.press("x", "y")
        await _settle(pilot, lambda: m.nodes["0.1"].state == PRUNED_S)
        await _settle(pilot, lambda: rs.progress.requests == rs.run.client.usage.requests)
        rs.tree_widget.select_id("0.0")
        await pilot.pause(0.1)

    return app, settle


def test_run_screen_live(snap, in_tmp):
    app, settle = _live_app(in_tmp)
    assert snap(app, terminal_size=(80, 24), run_before=settle)


def test_run_screen_live_light_and_large(snap, in_tmp):
    app, settle = _live_app(in_tmp, theme="textual-light")

    async def more(pilot):
        await settle(pilot)
        pilot.app.screen.tree_widget.select_id("0.3")
        await pilot.pause(0.1)

    assert snap(app, terminal_size=(140, 40), run_before=more)


def test_run_screen_browsing_a_finished_run(snap, in_tmp):
    t = _FixedTokens()
    t.release()
    asyncio.run(finished_run(Path("runs/done"), transport=t, size=40))
    app = TreesynthApp(services=_fixed(services()), start=BrowseRun(Path("runs/done")))

    async def ready(pilot):
        await _settle(pilot, lambda: pilot.app.screen.state == "browsing")
        pilot.app.screen.tree_widget.select_id("0.2.1")
        await pilot.pause(0.1)

    assert snap(app, terminal_size=(80, 24), run_before=ready)


def test_help_screen(snap, in_tmp):
    async def ready(pilot):
        await _settle(pilot, lambda: pilot.app.screen.estimate_text != "")
        await pilot.press("f1")
        await pilot.pause(0.1)

    assert snap(_form_app(in_tmp), terminal_size=(80, 24), run_before=ready)
