"""Outages are paused, not failed (core/llm/outage.py): the timing rules, the client's waiting calls and
single prober, and whole runs that ride an outage out or stop cleanly past --outage-timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from tests.conftest import read_jsonl
from tests.fakes import ScriptedTransport
from treesynth.core import events as ev
from treesynth.core.config import build_config
from treesynth.core.errors import EndpointUnreachable, TransientProviderError
from treesynth.core.llm import Completion, LLMRequest
from treesynth.core.llm.client import LLMClient
from treesynth.core.llm.outage import Outage, expired, probe_delay
from treesynth.core.progress import Progress, fmt_outage, status_line
from treesynth.core.run import Run


def test_probe_delays_double_and_are_capped():
    assert [probe_delay(k, base_s=1.0) for k in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert probe_delay(3, base_s=0.5, cap_s=1.0) == 1.0
    assert not expired(10.0, 69.9, 60.0) and expired(10.0, 70.0, 60.0)


def test_one_prober_the_others_wait_and_the_first_answer_ends_it():
    now = [100.0]
    o = Outage(60, clock=lambda: now[0], base_s=1.0)
    a, b = object(), object()
    assert o.failed(a, "refused") == 1.0 and o.active  # a probes
    assert o.failed(b, "refused") is None  # b waits
    now[0] += 1
    assert o.failed(a, "refused") == 2.0
    v = o.view()
    assert v is not None and v.since_s == pytest.approx(1.0) and v.next_try_s == pytest.approx(2.0)
    now[0] += 2
    assert o.answered() == pytest.approx(3.0) and not o.active and o.view() is None
    now[0] += 100
    with pytest.raises(EndpointUnreachable, match="--outage-timeout 60"):
        o.failed(a, "refused")  # a new outage starts (no error)...
        now[0] += 61
        o.failed(a, "refused")  # ...and outlasts the timeout


def test_the_last_probe_waits_no_longer_than_the_timeout_left():
    now = [0.0]
    o = Outage(10, clock=lambda: now[0], cap_s=30)
    a = object()
    for _ in range(3):
        o.failed(a, "x")
    now[0] = 9.0
    assert o.failed(a, "x") == pytest.approx(1.0)


@dataclasses.dataclass
class Down:
    """A transport whose endpoint refuses connections until ``up_at`` (time.monotonic())."""

    up_at: float
    model: str = "fake/down"
    sent: int = 0
    sent_down: int = 0

    async def __call__(self, req: LLMRequest) -> Completion:
        self.sent += 1
        await asyncio.sleep(0.005)
        if time.monotonic() < self.up_at:
            self.sent_down += 1
            raise TransientProviderError("connection to http://127.0.0.1:1 failed: ClientConnectorError", unreachable=True)
        return Completion("ok", "stop", 1, 1, 0.0)


def _req(i: int) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": f"q{i}"}], slot=f"0:gen:{i}", max_tokens=16)


def test_calls_wait_out_an_outage_without_spending_retries():
    async def go():
        t = Down(up_at=time.monotonic() + 0.6)
        c = LLMClient(t, concurrency=8, max_retries=0)  # no retry at all: an outage must not need one
        c.outage = Outage(30, base_s=0.05, cap_s=0.1)
        out = await asyncio.gather(*(c.complete(_req(i)) for i in range(16)))
        return t, c, out

    t, c, out = asyncio.run(go())
    assert [x.text for x in out] == ["ok"] * 16
    assert not c.outage.active  # (its re-sent calls count as retries, none of them spent)
    # while it was down only the prober kept asking (1 try per 0.05-0.1 s), not 16 calls with their own backoff
    assert t.sent_down <= 8 + 0.6 / 0.05 + 2
    assert any("unreachable" in n for n in c.notices) and any("answered again" in n for n in c.notices)


def test_an_outage_past_the_timeout_raises_endpoint_unreachable_for_every_call():
    async def go():
        c = LLMClient(Down(up_at=float("inf")), concurrency=4, max_retries=0)
        c.outage = Outage(0.4, base_s=0.05, cap_s=0.1)
        return await asyncio.gather(*(c.complete(_req(i)) for i in range(6)), return_exceptions=True)

    t0 = time.monotonic()
    got = asyncio.run(go())
    assert all(isinstance(e, EndpointUnreachable) for e in got), got
    assert time.monotonic() - t0 < 3


@dataclasses.dataclass
class Outages(ScriptedTransport):
    """The scripted provider, unreachable between ``down_after`` calls and ``up_at`` (time.monotonic())."""

    down_after: int = 10
    down_for: float = 0.8
    up_at: float | None = None
    total: int = 0

    async def __call__(self, req: LLMRequest) -> Completion:
        self.total += 1
        if self.total > self.down_after:
            if self.up_at is None:
                self.up_at = time.monotonic() + self.down_for
            if time.monotonic() < self.up_at:
                await asyncio.sleep(0.002)
                raise TransientProviderError("connection refused", unreachable=True)
        return await super().__call__(req)


def _cfg(**kw):
    flags = {"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 30, "pivots": 6, "max_retries": 1}
    flags.update(kw)
    return build_config(flags=flags)


def _execute(run: Run) -> tuple[ev.RunFinished, list[ev.Event]]:
    run.client.outage = Outage(run.cfg.outage_timeout, base_s=0.05, cap_s=0.2)
    events: list[ev.Event] = []
    return asyncio.run(run.execute(events.append)), events


def test_a_run_rides_an_outage_out_exact_size_no_node_failed(tmp_path):
    t = Outages(down_after=8, down_for=1.0)
    fin, events = _execute(Run.create(_cfg(), tmp_path / "r", transport=t))
    assert fin.status == "complete", fin
    rows = read_jsonl(tmp_path / "r" / "dataset.jsonl")
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30
    assert not [e for e in events if isinstance(e, ev.NodeFailed)]
    seen = [e for e in events if isinstance(e, ev.Usage) and e.unreachable_s is not None]
    assert seen, "the display was never told the endpoint is unreachable"
    warnings = " ".join(e.message for e in events if isinstance(e, ev.RunWarning))
    assert "unreachable" in warnings and "answered again" in warnings


def test_an_outage_past_the_timeout_stops_the_run_cleanly_and_it_resumes(tmp_path):
    t = Outages(down_after=8, down_for=60.0)
    out = tmp_path / "r"
    fin, events = _execute(Run.create(_cfg(outage_timeout=0.5), out, transport=t))
    assert fin.status == "incomplete" and "--outage-timeout" in fin.message, fin
    assert not [e for e in events if isinstance(e, ev.NodeFailed)]  # no node failed for the outage
    fin2, _ = _execute(Run.resume(out, transport=ScriptedTransport()))
    assert fin2.status == "complete"
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 30 and len({r["id"] for r in rows}) == 30


def test_the_status_line_says_since_when_and_the_next_try():
    p = Progress(size=10)
    p.apply(ev.Usage(requests=3, cache_hits=0, tokens_in=0, tokens_out=0, cost_usd=0.0, retries=0, errors=3, invalid=0,
                     elapsed_s=40, unreachable_s=5.0, next_try_s=8.0))
    line = fmt_outage(p)
    assert line.startswith("endpoint unreachable since 00:") and ("next try in 7 s" in line or "next try in 8 s" in line), line
    assert "endpoint unreachable since" in status_line(p)
    p.apply(ev.Usage(requests=4, cache_hits=0, tokens_in=0, tokens_out=0, cost_usd=0.0, retries=0, errors=3, invalid=0, elapsed_s=41))
    assert fmt_outage(p) == "" and "unreachable" not in status_line(p)
