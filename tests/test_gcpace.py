"""The garbage collector's pace during a run (core/gcpace.py): raised while a run executes, the caller's
thresholds back after, runs side by side sharing one setting."""

from __future__ import annotations

import asyncio
import gc

import pytest

from tests.fakes import ScriptedTransport
from treesynth.core import events as ev
from treesynth.core.config import build_config
from treesynth.core.gcpace import RUN_THRESHOLDS, paced, run_pace
from treesynth.core.run import Run


@pytest.fixture(autouse=True)
def _thresholds_back():
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_paced_raises_each_threshold_and_keeps_higher_ones_and_a_switched_off_collector():
    assert paced((700, 10, 10)) == RUN_THRESHOLDS
    assert paced((100_000, 5, 500)) == (100_000, RUN_THRESHOLDS[1], 500)
    assert paced((0, 10, 10)) == (0, 10, 10)  # automatic collection off: left off


def test_the_callers_thresholds_come_back_after_the_last_of_two_nested_runs():
    gc.set_threshold(700, 10, 10)
    with run_pace():
        assert gc.get_threshold() == RUN_THRESHOLDS
        with run_pace():
            assert gc.get_threshold() == RUN_THRESHOLDS
        assert gc.get_threshold() == RUN_THRESHOLDS  # the outer run still executes
    assert gc.get_threshold() == (700, 10, 10)


def test_thresholds_someone_else_set_during_the_run_are_not_undone():
    gc.set_threshold(700, 10, 10)
    with run_pace():
        gc.set_threshold(5000, 7, 7)
    assert gc.get_threshold() == (5000, 7, 7)


def test_an_error_inside_still_puts_the_thresholds_back():
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), run_pace():
        raise RuntimeError("boom")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_run_executes_at_the_run_pace_and_leaves_the_process_as_it_found_it(tmp_path):
    gc.set_threshold(700, 10, 10)
    seen: list[tuple[int, int, int]] = []

    def on_event(e: ev.Event) -> None:
        if isinstance(e, ev.LeafProgress):
            seen.append(gc.get_threshold())

    cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 20, "pivots": 6})
    run = Run.create(cfg, tmp_path / "r", transport=ScriptedTransport())
    fin = asyncio.run(run.execute(on_event))
    assert fin.status == "complete" and fin.rows == 20
    assert seen and set(seen) == {RUN_THRESHOLDS}
    assert gc.get_threshold() == (700, 10, 10)
