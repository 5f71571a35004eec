"""The headless front end consumes the same event stream as every other front end."""

from __future__ import annotations

import asyncio
import io
import json

from tests.fakes import ScriptedTransport
from treesynth.core.config import build_config
from treesynth.core.console import HeadlessDisplay, JsonEvents, summary
from treesynth.core.engine import Run


def _run(out, consumer):
    cfg = build_config(flags={"task": "t", "fields": "question,answer", "depth": 1, "size": 12, "pivots": 4})
    return asyncio.run(Run.create(cfg, out, transport=ScriptedTransport()).execute(consumer))


def test_plain_progress_when_stderr_is_not_a_terminal(tmp_path):
    buf = io.StringIO()
    display = HeadlessDisplay(stream=buf, plain_interval=0.0)
    fin = _run(tmp_path / "r", display)
    display.close()
    text = buf.getvalue()
    assert "samples 12/12" in text and "requests" not in text.splitlines()[0]
    assert display.p.samples_done == 12 and display.p.leaves >= 1
    s = summary(fin)
    assert "rows:     12/12" in s and "dataset:" in s and "resume:" not in s


def test_json_events_are_one_object_per_line(tmp_path):
    buf = io.StringIO()
    _run(tmp_path / "r", JsonEvents(buf))
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert events[0]["event"] == "run_started" and events[-1]["event"] == "run_finished"
    assert all("ts" in e for e in events)
