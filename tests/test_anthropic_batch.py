"""Anthropic's Message Batches through the same batch path (issue 15): the wire format's pure functions,
the fake server checked by the official ``anthropic`` SDK, the client and ``BatchTransport`` against it
(answers, expiry, rejection, a batch created just before a kill found again), and a real
``treesynth run --batch`` process on an anthropic/ model reaching exact size at batch prices."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from itertools import count

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.anthropic_batch_server import FakeAnthropicServer, message, text_of
from tests.conftest import read_jsonl
from tests.fake_provider import Call
from tests.stub_server import answer_for
from treesynth.core.errors import ProviderError
from treesynth.core.llm.batch import anthropic_lines as wire
from treesynth.core.llm.batch.anthropic_api import AnthropicBatchAPI, api_root
from treesynth.core.llm.batch.journal import BatchJournal
from treesynth.core.llm.batch.transport import BatchTransport, custom_id
from treesynth.core.llm.types import PRIORITY_LEAF, PRIORITY_TREE, Completion, LLMRequest

KEY = "sk-ant-test"
SCHEMA = {"type": "object", "properties": {"samples": {"type": "array"}}, "required": ["samples"]}


def _req(i: int, priority: int = PRIORITY_LEAF, schema: dict | None = SCHEMA) -> LLMRequest:
    return LLMRequest(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": f"question {i}"}],
                      slot=f"0.{i}:gen:0", schema=schema, schema_name="samples", temperature=0.9, max_tokens=100, seed=i,
                      priority=priority)


def _price(tin: int, tout: int, cached: int = 0) -> float:
    return tin * 1e-6 + tout * 2e-6


# ---- the wire format (pure) ---------------------------------------------------------------------


def test_a_call_becomes_a_messages_request_with_its_schema_as_a_forced_tool():
    p = wire.params(_req(3), "anthropic/claude-haiku-4-5")
    assert p["model"] == "claude-haiku-4-5" and p["max_tokens"] == 100 and p["system"] == "be brief"
    assert p["messages"] == [{"role": "user", "content": "question 3"}] and p["temperature"] == 0.9
    assert p["tools"] == [{"name": "samples", "description": "Give your answer as this tool's input.", "input_schema": SCHEMA}]
    assert p["tool_choice"] == {"type": "tool", "name": "samples"} and "seed" not in p
    hot = LLMRequest(messages=[{"role": "user", "content": "x"}], slot="s", temperature=1.7, schema_name="a b/c")
    p = wire.params(hot, "claude-x")
    assert p["temperature"] == 1.0 and "system" not in p and "tools" not in p and p["model"] == "claude-x"
    assert wire.tool_name("a b/c") == "a_b_c" and wire.tool_name("") == "answer"


def test_results_of_every_kind_are_read_and_junk_is_reported():
    msg = message({"tools": [1], "tool_choice": {"type": "tool", "name": "samples"}}, {"samples": [1]})
    lines = [
        {"custom_id": "a", "result": {"type": "succeeded", "message": msg}},
        {"custom_id": "b", "result": {"type": "errored", "error": {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}}},
        {"custom_id": "c", "result": {"type": "errored", "error": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}}},
        {"custom_id": "d", "result": {"type": "canceled"}},
        {"custom_id": "e", "result": {"type": "expired"}},
        {"custom_id": "f", "result": {"type": "mystery"}},
        {"custom_id": "zz", "result": {"type": "expired"}},
    ]
    content = b"".join(json.dumps(x).encode() + b"\n" for x in lines) + b"not json\n"
    res, problems = wire.parse_results(content, expected="abcdef")
    assert res["a"].ok and not res["b"].ok and not res["b"].retryable and res["b"].status == 400 and res["b"].message == "bad"
    assert res["c"].retryable and res["c"].status == 529
    assert res["d"].retryable and res["d"].error_code == "batch_cancelled" and res["e"].error_code == "batch_expired"
    assert "f" not in res and len(problems) == 3  # no result for f, zz not asked for, a line that is not JSON


def test_a_message_becomes_a_completion():
    req = _req(1)
    tool = message({"tools": [1], "tool_choice": {"type": "tool", "name": "samples"}}, {"samples": ["é"]}, 40, 7)
    tool["usage"].update(cache_read_input_tokens=60, cache_creation_input_tokens=0)
    c = wire.completion(tool, req, _price)
    assert json.loads(c.text) == {"samples": ["é"]} and c.finish_reason == "stop" and (c.tokens_in, c.tokens_out) == (100, 7)
    assert c.cost == pytest.approx(_price(100, 7))
    cut = {"content": [{"type": "text", "text": "{\"samples\": ["}], "stop_reason": "max_tokens", "usage": {}}
    c = wire.completion(cut, req, None)
    assert c.finish_reason == "length" and c.cost is None and c.tokens_in > 0 and c.tokens_out == len(c.text) // 4


def test_batch_objects_map_to_our_states():
    ended = {"id": "msgbatch_1", "processing_status": "ended", "created_at": "2026-12-01T10:00:00Z",
             "request_counts": {"processing": 0, "succeeded": 3, "errored": 1, "canceled": 0, "expired": 0},
             "results_url": "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results", "cancel_initiated_at": None}
    s = wire.batch_state(ended)
    assert s.final and s.status == "completed" and s.requests == 4 and s.results == (("out", ended["results_url"]),)
    assert s.provider_status == "ended (succeeded 3, errored 1)" and s.created_at == 1796119200.0
    s = wire.batch_state({**ended, "cancel_initiated_at": "2026-12-01T10:01:00Z"})
    assert s.status == "cancelled"
    s = wire.batch_state({"id": "x", "processing_status": "in_progress", "request_counts": {"processing": 2}, "created_at": "junk"})
    assert not s.final and s.status == "running" and s.created_at is None and s.results == ()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400) | st.lists(st.dictionaries(st.sampled_from(["custom_id", "result", "type", "message", "error"]),
                                                          st.none() | st.integers() | st.text(max_size=5) | st.dictionaries(
                                                              st.sampled_from(["type", "message", "error"]),
                                                              st.none() | st.text(max_size=8) | st.lists(st.integers(), max_size=2))),
                                          max_size=4).map(lambda xs: b"\n".join(json.dumps(x).encode() for x in xs)))
@pytest.mark.slow
def test_hostile_results_never_raise(content):
    res, problems = wire.parse_results(content)
    for r in res.values():
        if r.ok and r.body is not None:
            wire.completion(r.body, _req(0), _price)
        wire.batch_state(r.body or {})


def test_the_api_root_follows_litellm_s_api_base_forms():
    assert api_root(None) == "https://api.anthropic.com"
    for base in ("http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/messages"):
        assert api_root(base) == "http://h:1"


# ---- the fake, checked by the official SDK ---------------------------------------------------------


@pytest.fixture
def server():
    with FakeAnthropicServer(api_key=KEY) as s:
        yield s


@pytest.mark.slow
def test_the_official_sdk_can_use_the_fake(server):
    import anthropic
    client = anthropic.Anthropic(api_key=KEY, base_url=server.root, max_retries=0)
    m = client.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "answer to: hi" and m.usage.input_tokens == 10
    server.fail_ids = {"r1"}
    reqs = [{"custom_id": f"r{i}", "params": {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": f"q{i}"}],
                                              "tools": [{"name": "t", "input_schema": {"type": "object"}}],
                                              "tool_choice": {"type": "tool", "name": "t"}}} for i in range(3)]
    b = client.messages.batches.create(requests=reqs)
    assert b.processing_status == "in_progress" and b.request_counts.processing == 3
    t0 = time.monotonic()
    while (b := client.messages.batches.retrieve(b.id)).processing_status != "ended":
        assert time.monotonic() - t0 < 10
        time.sleep(0.02)
    assert b.request_counts.succeeded == 2 and b.request_counts.errored == 1 and b.results_url
    results = {r.custom_id: r.result for r in client.messages.batches.results(b.id)}
    assert results["r0"].type == "succeeded" and results["r0"].message.content[0].input == {"echo": "answer to: q0"}
    assert results["r1"].type == "errored" and results["r1"].error.error.type == "invalid_request_error"
    assert [x.id for x in client.messages.batches.list(limit=10)] == [b.id]
    server.hold.clear()
    b2 = client.messages.batches.create(requests=[{**reqs[0], "custom_id": "c0"}])
    assert client.messages.batches.cancel(b2.id).processing_status == "canceling"
    server.hold.set()
    while (b2 := client.messages.batches.retrieve(b2.id)).processing_status != "ended":
        time.sleep(0.02)
    assert b2.request_counts.canceled == 1
    assert client.messages.batches.delete(b.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.create(requests=[{"custom_id": "bad id!", "params": reqs[0]["params"]}])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key="wrong", base_url=server.root, max_retries=0).messages.batches.list()


# ---- the client and the transport against the fake --------------------------------------------------


class Interactive:
    model = "anthropic/claude-haiku-4-5"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, req):
        self.calls.append(req.slot)
        return Completion(f"interactive {req.slot}", "stop", 3, 4, 0.001)


def _transport(server, tmp_path, interactive=None, **kw):
    api = AnthropicBatchAPI("anthropic/claude-haiku-4-5", server.root, KEY)
    kw = {"linger_s": 0.05, "poll_min_s": 0.02, "poll_max_s": 0.1, **kw}
    return BatchTransport(interactive or Interactive(), api, tmp_path, run_id="run1", price=_price, **kw)


def test_leaf_calls_go_in_one_message_batch_and_tree_calls_stay_interactive(server, tmp_path):
    inter = Interactive()

    async def go():
        t = _transport(server, tmp_path, inter)
        try:
            return await asyncio.gather(*[t(_req(i)) for i in range(12)], t(_req(99, PRIORITY_TREE))), t.status
        finally:
            await t.aclose()

    outs, status = asyncio.run(go())
    assert [json.loads(o.text) for o in outs[:12]] == [{"echo": f"answer to: question {i}"} for i in range(12)]
    assert all(o.cost == pytest.approx(_price(10, 5)) for o in outs[:12])
    assert outs[12].text == "interactive 0.99:gen:0" and inter.calls == ["0.99:gen:0"]
    assert len(server.batches) == 1 and set(server.submitted.values()) == {1} and len(server.submitted) == 12
    assert (status.submitted, status.finished, status.answered, status.running) == (1, 1, 12, 0)
    assert status.last_status.endswith("ended (succeeded 12)")
    assert server.calls["POST /v1/messages/batches"] == 1 and "POST /v1/files" not in server.calls
    recs = BatchJournal(tmp_path).load()
    assert [r.stage for r in recs.values()] == ["finished"]


def test_expired_requests_go_again_and_rejected_ones_fail(server, tmp_path):
    server.expire_after = 2
    rejected = _req(7)
    server.fail_ids = {custom_id(rejected.slot, wire.params(rejected, "anthropic/claude-haiku-4-5"))}

    async def go():
        t = _transport(server, tmp_path)
        try:
            done = await asyncio.gather(*[t(_req(i)) for i in range(5)])
            server.expire_after = None
            with pytest.raises(ProviderError, match="rejected call 0.7:gen:0: HTTP 400: scripted failure"):
                await t(rejected)
            return done, t.status
        finally:
            await t.aclose()

    outs, status = asyncio.run(go())
    assert [json.loads(o.text)["echo"] for o in outs] == [f"answer to: question {i}" for i in range(5)]
    # 3 of 5 expire in the first batch, 1 of those 3 in the second (the fake expires after 2 answers each time)
    assert status.resubmitted == 4 and max(server.submitted.values()) == 3


def test_a_message_batch_created_just_before_a_kill_is_found_and_not_sent_again(server, tmp_path):
    """Anthropic's batches carry no metadata: the journal says planned, the provider holds the batch."""
    reqs = [_req(i) for i in range(3)]
    api = AnthropicBatchAPI("anthropic/claude-haiku-4-5", server.root, KEY)
    bodies = [api.body(r) for r in reqs]
    ids = [custom_id(r.slot, b) for r, b in zip(reqs, bodies, strict=True)]
    content = b"".join(api.line(i, b) for i, b in zip(ids, bodies, strict=True))
    (tmp_path / "batches").mkdir()
    (tmp_path / "batches" / "b00001-1-1.jsonl").write_bytes(content)
    j = BatchJournal(tmp_path)

    async def provider_side():
        other = await api.create(None, api.line("someone-else", bodies[0]), "x", {})  # another client's batch of 1
        j.planned("b00001-1-1", "batches/b00001-1-1.jsonl", ids)
        created = await api.create(None, content, "b00001-1-1", {})
        await api.aclose()
        return other, created

    other, created = asyncio.run(provider_side())
    assert created.requests == 3 and other.requests == 1

    async def resume():
        t = _transport(server, tmp_path)
        try:
            return await asyncio.gather(*[t(r) for r in reqs])
        finally:
            await t.aclose()

    outs = asyncio.run(resume())
    assert [json.loads(o.text)["echo"] for o in outs] == [f"answer to: question {i}" for i in range(3)]
    assert len(server.batches) == 2 and all(server.submitted[i] == 1 for i in ids)
    rec = next(iter(j.load().values()))
    assert rec.stage == "finished" and rec.batch_id == created.id


def test_results_are_only_fetched_from_the_api_s_own_host(server):
    async def go():
        api = AnthropicBatchAPI("anthropic/claude-haiku-4-5", server.root, KEY)
        try:
            with pytest.raises(ProviderError, match="not sending the API key"):
                await api.download("https://elsewhere.example/v1/messages/batches/x/results")
        finally:
            await api.aclose()

    asyncio.run(go())


# ---- a real run -------------------------------------------------------------------------------------

_counter = count()


def stub_answer(params: dict) -> tuple[int, dict]:
    """The stub server's plausible answers to the engine's calls (by the forced tool's name and schema), as a Message."""
    system = params.get("system")
    system = text_of(system) if not isinstance(system, str) else system
    msgs = [{"role": "system", "content": system or ""}] + [{"role": m["role"], "content": text_of(m["content"])} for m in params["messages"]]
    return 200, message(params, answer_for(Call.from_anthropic(params, msgs), next(_counter)))


@pytest.mark.slow
def test_a_batch_run_on_an_anthropic_model_reaches_exact_size_at_batch_prices(tmp_path):
    out = tmp_path / "run"
    with FakeAnthropicServer(stub_answer, api_key=KEY) as server:
        cmd = [sys.executable, "-m", "treesynth.cli", "run", "math word problems", "--fields", "question,answer",
               "--model", "anthropic/claude-haiku-4-5", "--api-base", server.root, "--batch", "--batch-linger", "0.3",
               "--depth", "2", "--pivots", "4", "--samples-per-call", "5", "--size", "30", "--no-ui", "--out", str(out)]
        env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert len(read_jsonl(out / "dataset.jsonl")) == 30
        batched = sum(server.submitted.values())
        assert server.batches and set(server.submitted.values()) == {1}
        assert server.interactive > 0 and batched >= 6  # the tree's calls interactive (litellm), the leaves' in batches
    state = json.loads((out / "state.json").read_text())
    # claude-haiku-4-5: $1/$5 per M tokens interactive, half in batches; every fake answer is 10 in, 5 out
    expected = server.interactive * (10 * 1e-6 + 5 * 5e-6) + batched * (10 * 0.5e-6 + 5 * 2.5e-6)
    assert state["usage"]["cost"] == pytest.approx(expected, rel=1e-6)
    assert KEY not in "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())


@pytest.mark.slow
def test_kill_9_with_message_batches_pending_then_resume_sends_nothing_twice(tmp_path):
    import signal

    out = tmp_path / "run"
    env = {**os.environ, "ANTHROPIC_API_KEY": KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    with FakeAnthropicServer(stub_answer, api_key=KEY) as server:
        server.hold.clear()  # batches stay in progress
        cmd = [sys.executable, "-m", "treesynth.cli", "run", "math word problems", "--fields", "question,answer",
               "--model", "anthropic/claude-haiku-4-5", "--api-base", server.root, "--batch", "--batch-linger", "0.3",
               "--depth", "2", "--pivots", "4", "--samples-per-call", "5", "--size", "30", "--no-ui", "--out", str(out)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        try:
            t0 = time.monotonic()
            while not server.batches:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                assert time.monotonic() - t0 < 300, "no batch was sent"
                time.sleep(0.05)
            time.sleep(1.0)  # let more batches go out
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        before = dict(server.submitted)
        server.hold.set()
        r = subprocess.run([sys.executable, "-m", "treesynth.cli", "run", "--resume", str(out), "--no-ui"],
                           capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert len(read_jsonl(out / "dataset.jsonl")) == 30
        assert before and set(server.submitted.values()) == {1}, "a request was sent to the provider twice"
