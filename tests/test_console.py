"""The headless front end consumes the same event stream as every other front end."""

from __future__ import annotations

import asyncio
import io
import json

from tests.fakes import ScriptedTransport
from treesynth.cli.console import HeadlessDisplay, JsonEvents, summary
from treesynth.core.config import build_config
from treesynth.core.run import Run


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


class _SlowFirstCall(ScriptedTransport):
    """The first call takes ``first_s`` (a local model loading, a cold server); the rest answer at once."""

    def __init__(self, first_s: float, **kw) -> None:
        super().__init__(**kw)
        self.first_s = first_s
        self.n = 0

    async def __call__(self, req):
        self.n += 1
        if self.n == 1:
            await asyncio.sleep(self.first_s)
        return await super().__call__(req)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_progress_shows_a_call_in_flight_while_the_first_call_is_slow(tmp_path):
    buf = io.StringIO()
    display = HeadlessDisplay(stream=buf, plain_interval=0.5)
    cfg = build_config(flags={"task": "t", "fields": "question,answer", "depth": 1, "size": 6, "pivots": 4, "pivots_per_call": 4})
    fin = asyncio.run(Run.create(cfg, tmp_path / "r", transport=_SlowFirstCall(3.2)).execute(display))
    display.close()
    assert fin.status == "complete"
    lines = buf.getvalue().splitlines()
    waiting = [line for line in lines if "1 call in flight" in line]
    # a heartbeat while the only call waits: the lines keep coming, the waiting time and elapsed tick
    assert len(waiting) >= 3, lines
    assert "1 req" in waiting[-1], waiting[-1]
    ages = [int(line.split("1 call in flight, ")[1].split(" s")[0]) for line in waiting]
    assert ages == sorted(ages) and ages[-1] >= 2, ages
    elapsed = [line.split("elapsed ")[1].split(" ")[0] for line in waiting]
    assert elapsed[-1] != "00:00", elapsed
    assert "in flight" not in lines[-1], "the last line, after the run, has nothing in flight"


def test_live_progress_shows_a_call_in_flight_and_ticks(tmp_path):
    buf = _Tty()
    display = HeadlessDisplay(stream=buf)
    cfg = build_config(flags={"task": "t", "fields": "question,answer", "depth": 1, "size": 6, "pivots": 4})
    seen: list[str] = []

    def consumer(e):
        display(e)

    async def main():
        run = Run.create(cfg, tmp_path / "r", transport=_SlowFirstCall(2.5))
        task = asyncio.ensure_future(run.execute(consumer))
        for _ in range(4):
            await asyncio.sleep(0.6)
            seen.append(buf.getvalue())
        return await task

    fin = asyncio.run(main())
    display.close()
    assert fin.status == "complete"
    assert "1 call in flight" in seen[-1], seen[-1][-800:]
    # rendered again between events: the waiting time has moved on
    assert "1 call in flight, 2 s" in seen[-1] or "1 call in flight, 1 s" in seen[-1], seen[-1][-800:]
