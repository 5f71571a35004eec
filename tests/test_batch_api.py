"""Batch files, the batch journal and the OpenAI batch client (issue 15's foundation), the client
against the fake batch server that the official SDK accepts (tests/test_batch_server.py)."""

from __future__ import annotations

import asyncio
import json
import time

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.batch_server import FakeBatchServer
from treesynth.core.errors import ProviderError
from treesynth.core.llm.batch.journal import BatchJournal, replay, submitted_ids
from treesynth.core.llm.batch.lines import BatchResult, group_lines, parse_results, request_line
from treesynth.core.llm.batch.openai_api import OpenAIBatchAPI


def test_request_line_is_one_json_line():
    line = request_line("leaf:gen:1", {"model": "m", "messages": [{"role": "user", "content": "hi\nthere"}]})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"custom_id": "leaf:gen:1", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "m", "messages": [{"role": "user", "content": "hi\nthere"}]}}


def test_group_lines_keeps_order_and_both_limits():
    lines = [(f"r{i}", b"x" * (10 + i)) for i in range(10)]
    groups = group_lines(lines, max_requests=3, max_bytes=40)
    assert [c for g in groups for c, _ in g] == [f"r{i}" for i in range(10)]
    assert all(len(g) <= 3 and sum(len(x) for _, x in g) <= 40 for g in groups)
    with pytest.raises(ValueError, match="over the batch file limit"):
        group_lines([("big", b"x" * 50)], max_bytes=40)


@given(st.lists(st.integers(1, 30), max_size=40), st.integers(1, 5), st.integers(30, 100))
def test_group_lines_invariants(sizes, max_requests, max_bytes):
    lines = [(f"r{i}", b"x" * s) for i, s in enumerate(sizes)]
    groups = group_lines(lines, max_requests, max_bytes)
    assert [c for g in groups for c, _ in g] == [c for c, _ in lines]
    assert all(g and len(g) <= max_requests and sum(len(x) for _, x in g) <= max_bytes for g in groups)


def test_parse_results_ok_error_and_never_ran():
    content = b"\n".join([
        json.dumps({"id": "1", "custom_id": "a", "response": {"status_code": 200, "body": {"choices": []}}, "error": None}).encode(),
        json.dumps({"id": "2", "custom_id": "b", "response": {"status_code": 400, "body": {"error": {"message": "bad", "code": "x"}}}}).encode(),
        json.dumps({"id": "3", "custom_id": "c", "response": None, "error": {"code": "batch_expired", "message": "late"}}).encode(),
        json.dumps({"id": "4", "custom_id": "d", "response": {"status_code": 500, "body": {"error": {"message": "boom"}}}}).encode(),
        b"not json", json.dumps({"custom_id": "zz", "response": {"status_code": 200, "body": {}}}).encode(),
    ])
    res, problems = parse_results(content, expected=["a", "b", "c", "d"])
    assert res["a"].ok and not res["a"].retryable
    assert not res["b"].ok and not res["b"].retryable and res["b"].message == "bad" and res["b"].error_code == "x"
    assert res["c"].status is None and res["c"].retryable and res["c"].error_code == "batch_expired"
    assert res["d"].retryable
    assert len(problems) == 2 and "not JSON" in problems[0] and "not asked for" in problems[1]


@given(st.binary(max_size=400) | st.text(max_size=400))
def test_parse_results_never_raises_on_hostile_files(content):
    res, problems = parse_results(content)
    assert all(isinstance(r, BatchResult) for r in res.values()) and isinstance(problems, list)


def test_journal_replays_each_batch_to_its_latest_stage(tmp_path):
    j = BatchJournal(tmp_path)
    j.planned("b1", "batches/b1.jsonl", ["x", "y"])
    j.uploaded("b1", "file_1")
    j.created("b1", "batch_1")
    j.planned("b2", "batches/b2.jsonl", ["z"])
    j.uploaded("b2", "file_2")
    j.planned("b3", "batches/b3.jsonl", ["w"])
    j.created("b1", "batch_1")  # repeated steps are harmless
    j.finished("b1", "completed", "file_out", None)
    recs = j.load()
    assert {k: r.stage for k, r in recs.items()} == {"b1": "finished", "b2": "uploaded", "b3": "planned"}
    assert recs["b1"].output_file_id == "file_out" and recs["b1"].ids == ("x", "y")
    assert submitted_ids(recs.values()) == {"x", "y"}
    j.collected("b1")
    assert j.load()["b1"].stage == "collected" and submitted_ids(j.load().values()) == set()
    # a torn last line (kill -9 mid-append) is cut off, the rest stands
    with open(j.path, "ab") as f:
        f.write(b'{"op": "created", "batch": "b2", "bat')
    warnings: list[str] = []
    assert j.load(warnings)["b2"].stage == "uploaded"


def test_replay_skips_what_it_does_not_know():
    recs = replay([{"op": "created", "batch": "ghost", "batch_id": "x"}, {"op": "planned", "batch": "a", "file": "f", "ids": ["1"]},
                   {"op": "teleported", "batch": "a"}, {"batch": 3}, {"op": "finished", "batch": "a", "status": "weird"}])
    assert list(recs) == ["a"] and recs["a"].stage == "planned"


@pytest.fixture
def server():
    with FakeBatchServer(api_key="sk-test") as s:
        yield s


async def _until_final(api, bid, timeout=10.0):
    t0 = time.monotonic()
    while True:
        b = await api.retrieve(bid)
        if b.final:
            return b
        assert time.monotonic() - t0 < timeout
        await asyncio.sleep(0.02)


def test_the_client_runs_a_batch_end_to_end(server):
    async def go():
        api = OpenAIBatchAPI(server.base_url, "sk-test")
        try:
            content = b"".join(request_line(f"r{i}", {"model": "m", "messages": [{"role": "user", "content": str(i)}]}) for i in range(4))
            fid = await api.upload(content, "b1.jsonl")
            b = await api.create(fid, content, "b1", {})
            b = await _until_final(api, b.id)
            assert b.status == "completed" and b.provider_status == "completed" and b.requests == 4
            assert [s for s, _ in b.results] == ["out"]
            res, problems = parse_results(await api.download(dict(b.results)["out"]), expected=[f"r{i}" for i in range(4)])
            assert not problems and all(r.ok for r in res.values()) and len(res) == 4
            # found again by its metadata (a kill between the provider's answer and the journal's append)
            found = await api.find("b1", time.time() - 5, 4, set())
            assert found is not None and found.id == b.id
            assert await api.find("nope", time.time() - 5, 4, set()) is None
            assert await api.find("b1", time.time() - 5, 4, {b.id}) is None
        finally:
            await api.aclose()

    asyncio.run(go())
    assert dict(server.submitted) == {f"r{i}": 1 for i in range(4)}


def test_the_client_says_what_the_provider_rejected(server):
    async def go():
        api = OpenAIBatchAPI(server.base_url, "sk-test")
        bad_key = OpenAIBatchAPI(server.base_url, "wrong")
        try:
            with pytest.raises(ProviderError, match="HTTP 400: Invalid 'input_file_id'"):
                await api.create("file_nope", b"", "b1", {})
            with pytest.raises(ProviderError, match="HTTP 401: Incorrect API key"):
                await bad_key.retrieve("batch_x")
            with pytest.raises(ProviderError, match="HTTP 404"):
                await api.retrieve("batch_nope")
        finally:
            await api.aclose()
            await bad_key.aclose()

    asyncio.run(go())


def test_an_unreachable_endpoint_is_transient():
    import socket

    from treesynth.core.errors import TransientProviderError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there

    async def go():
        api = OpenAIBatchAPI(f"http://127.0.0.1:{port}/v1", "k", timeout_s=5)
        try:
            with pytest.raises(TransientProviderError):
                await api.retrieve("batch_x")
        finally:
            await api.aclose()

    asyncio.run(go())
