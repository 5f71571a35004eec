"""BatchTransport against the fake batch server (which the official SDK accepts): calls are batched,
answered, priced at batch prices; a process that stops while batches are pending is resumed by a new
one that polls them instead of sending anything again; expiry, rejected requests, the budget."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.batch_server import FakeBatchServer
from treesynth.core.errors import BudgetExhausted, ProviderError
from treesynth.core.llm.batch.journal import BatchJournal
from treesynth.core.llm.batch.openai_api import META_KEY, OpenAIBatchAPI
from treesynth.core.llm.batch.transport import BatchTransport, custom_id
from treesynth.core.llm.types import PRIORITY_LEAF, PRIORITY_TREE, Completion, LLMRequest, UsageTotals


class Interactive:
    """The interactive side: builds bodies like the http transport, answers tree calls itself."""

    model = "openai/gpt-4o-mini"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def body(self, req):
        return {"model": "gpt-4o-mini", "messages": req.messages, "max_tokens": req.max_tokens, "seed": req.seed}, None

    async def __call__(self, req):
        self.calls.append(req.slot)
        return Completion(f"interactive {req.slot}", "stop", 3, 4, 0.001)


def _req(i: int, priority: int = PRIORITY_LEAF) -> LLMRequest:
    return LLMRequest(messages=[{"role": "user", "content": f"question {i}"}], slot=f"0.{i}:gen:0", max_tokens=100, seed=i,
                      priority=priority)


def _price(tin: int, tout: int, cached: int = 0) -> float:
    return tin * 1e-6 + tout * 2e-6


def _transport(server, tmp_path, interactive=None, **kw):
    inter = interactive or Interactive()
    api = OpenAIBatchAPI(server.base_url, "sk-test", body_of=lambda r: inter.body(r)[0])
    kw = {"linger_s": 0.05, "poll_min_s": 0.02, "poll_max_s": 0.1, **kw}
    return BatchTransport(inter, api, tmp_path, run_id="run1", price=_price, **kw)


@pytest.fixture
def server():
    with FakeBatchServer(api_key="sk-test") as s:
        yield s


def test_leaf_calls_go_in_one_batch_and_tree_calls_stay_interactive(server, tmp_path):
    inter = Interactive()

    async def go():
        t = _transport(server, tmp_path, inter)
        try:
            return await asyncio.gather(*[t(_req(i)) for i in range(20)], t(_req(99, PRIORITY_TREE))), t.status
        finally:
            await t.aclose()

    outs, status = asyncio.run(go())
    assert [o.text for o in outs[:20]] == [f"answer to: question {i}" for i in range(20)]
    assert outs[20].text == "interactive 0.99:gen:0" and inter.calls == ["0.99:gen:0"]
    assert all(o.tokens_in == 10 and o.tokens_out == 5 and o.cost == pytest.approx(_price(10, 5)) for o in outs[:20])
    assert len(server.batches) == 1 and sum(server.submitted.values()) == 20 and set(server.submitted.values()) == {1}
    assert (status.submitted, status.finished, status.requests, status.answered, status.running) == (1, 1, 20, 20, 0)
    recs = BatchJournal(tmp_path).load()
    assert [r.stage for r in recs.values()] == ["finished"] and len(next(iter(recs.values())).ids) == 20
    b = next(iter(server.batches.values()))
    assert b["metadata"][META_KEY] == next(iter(recs))


def test_a_new_process_polls_the_pending_batch_and_sends_nothing_twice(server, tmp_path):
    server.hold.clear()  # batches stay in progress: the first process stops while they are pending

    async def first():
        t = _transport(server, tmp_path)
        tasks = [asyncio.ensure_future(t(_req(i))) for i in range(10)]
        for _ in range(500):
            if server.batches and next(iter(server.batches.values()))["status"] == "in_progress":
                break
            await asyncio.sleep(0.01)
        for x in tasks:
            x.cancel()
        await t.aclose()  # like a kill: nothing collected

    asyncio.run(first())
    assert [r.stage for r in BatchJournal(tmp_path).load().values()] == ["created"]
    server.hold.set()

    async def second():
        t = _transport(server, tmp_path)
        try:
            return await asyncio.gather(*[t(_req(i)) for i in range(10)])
        finally:
            await t.aclose()

    outs = asyncio.run(second())
    assert [o.text for o in outs] == [f"answer to: question {i}" for i in range(10)]
    assert len(server.batches) == 1 and set(server.submitted.values()) == {1} and len(server.submitted) == 10


def test_a_batch_created_just_before_a_kill_is_found_by_its_metadata(server, tmp_path):
    """The provider made the batch but the journal never heard of it (killed between the two)."""
    inter = Interactive()
    reqs = [_req(i) for i in range(3)]
    lines = b"".join(json.dumps({"custom_id": custom_id(r.slot, inter.body(r)[0]), "method": "POST", "url": "/v1/chat/completions",
                                 "body": inter.body(r)[0]}).encode() + b"\n" for r in reqs)
    j = BatchJournal(tmp_path)
    (tmp_path / "batches").mkdir()
    (tmp_path / "batches" / "b00001-1-1.jsonl").write_bytes(lines)

    async def provider_side():
        api = OpenAIBatchAPI(server.base_url, "sk-test")
        fid = await api.upload(lines, "b00001-1-1.jsonl")
        j.planned("b00001-1-1", "batches/b00001-1-1.jsonl", [custom_id(r.slot, inter.body(r)[0]) for r in reqs])
        j.uploaded("b00001-1-1", fid)
        await api.create(fid, lines, "b00001-1-1", {})
        await api.aclose()

    asyncio.run(provider_side())

    async def resume():
        t = _transport(server, tmp_path, inter)
        try:
            return await asyncio.gather(*[t(r) for r in reqs])
        finally:
            await t.aclose()

    outs = asyncio.run(resume())
    assert [o.text for o in outs] == [f"answer to: question {i}" for i in range(3)]
    assert len(server.batches) == 1 and set(server.submitted.values()) == {1}
    assert [r.stage for r in j.load().values()] == ["finished"]


def test_expired_requests_are_sent_again_and_rejected_ones_fail(server, tmp_path):
    server.expire_after = 3
    rejected = _req(7)
    inter = Interactive()
    server.fail_ids = {custom_id(rejected.slot, inter.body(rejected)[0])}

    async def go():
        t = _transport(server, tmp_path, inter, max_resubmits=2)
        try:
            done = await asyncio.gather(*[t(_req(i)) for i in range(6)])
            with pytest.raises(ProviderError, match="rejected call 0.7:gen:0: HTTP 400: scripted failure"):
                server.expire_after = None
                await t(rejected)
            return done, t.status
        finally:
            await t.aclose()

    outs, status = asyncio.run(go())
    assert [o.text for o in outs] == [f"answer to: question {i}" for i in range(6)]
    assert len(server.batches) >= 2 and status.resubmitted == 3  # 3 of the 6 expired in the first batch
    assert max(server.submitted.values()) == 2  # sent twice because the provider never ran them the first time


def test_requests_that_keep_expiring_end_interactive(server, tmp_path):
    server.expire_after = 0
    inter = Interactive()

    async def go():
        t = _transport(server, tmp_path, inter, max_resubmits=1)
        try:
            return await asyncio.gather(*[t(_req(i)) for i in range(2)]), t.status
        finally:
            await t.aclose()

    outs, status = asyncio.run(go())
    assert [o.text for o in outs] == ["interactive 0.0:gen:0", "interactive 0.1:gen:0"]
    assert status.interactive_fallback == 2 and len(server.batches) == 2


def test_the_budget_is_reserved_before_a_batch_is_sent(server, tmp_path):
    from treesynth.core.llm.batch.lines import request_line

    usage = UsageTotals()
    r0 = _req(0)
    one = _price(len(request_line(custom_id(r0.slot, Interactive().body(r0)[0]), Interactive().body(r0)[0])) // 4, r0.max_tokens)

    async def go():  # room for 3 requests' estimates (the prompt's size, and the whole max_tokens answer)
        t = _transport(server, tmp_path, budget=3.5 * one, usage=usage)
        try:
            return await asyncio.gather(*[t(_req(i)) for i in range(6)], return_exceptions=True)
        finally:
            await t.aclose()

    outs = asyncio.run(go())
    ok = [o for o in outs if isinstance(o, Completion)]
    assert len(ok) == 3 and all(isinstance(o, BudgetExhausted) for o in outs if not isinstance(o, Completion))
    assert sum(server.submitted.values()) == 3


def test_polling_backs_off(server, tmp_path):
    server.per_request_s = 0.05

    async def go():
        t = _transport(server, tmp_path, poll_min_s=0.01, poll_max_s=0.2)
        t0 = time.monotonic()
        try:
            await asyncio.gather(*[t(_req(i)) for i in range(20)])
            return t.status.polls, time.monotonic() - t0
        finally:
            await t.aclose()

    polls, wall = asyncio.run(go())
    assert wall >= 1.0 and polls < wall / 0.01 / 3  # far fewer polls than one per minimum interval
