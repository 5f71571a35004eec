"""The fake batch server (tests/batch_server.py) driven by the official ``openai`` SDK: if the SDK
cannot use it, the fake is wrong, and every test of treesynth's batch client against it is void."""

from __future__ import annotations

import json
import time

import pytest

openai = pytest.importorskip("openai")

from tests.batch_server import FakeBatchServer  # noqa: E402


def _lines(n: int, endpoint: str = "/v1/chat/completions") -> bytes:
    return b"".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": endpoint,
                                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}}).encode() + b"\n"
                    for i in range(n))


def _wait(client, bid: str, statuses=("completed", "failed", "expired", "cancelled"), timeout: float = 10.0):
    t0 = time.monotonic()
    while True:
        b = client.batches.retrieve(bid)
        if b.status in statuses:
            return b
        assert time.monotonic() - t0 < timeout, f"batch stuck in {b.status}"
        time.sleep(0.02)


@pytest.fixture
def server():
    with FakeBatchServer(api_key="sk-test") as s:
        yield s


def _client(server):
    return openai.OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)


def test_the_sdk_uploads_creates_polls_and_downloads(server):
    c = _client(server)
    f = c.files.create(file=("in.jsonl", _lines(5)), purpose="batch")
    assert f.id.startswith("file_") and f.purpose == "batch" and f.bytes > 0
    assert c.files.retrieve(f.id).filename == "in.jsonl"
    b = c.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata={"run": "x"})
    assert b.status == "validating" and b.metadata == {"run": "x"}
    b = _wait(c, b.id)
    assert b.status == "completed" and b.request_counts.total == 5 and b.request_counts.completed == 5
    assert b.completed_at and b.in_progress_at and b.finalizing_at
    out = [json.loads(x) for x in c.files.content(b.output_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in out) == [f"r{i}" for i in range(5)]
    assert all(x["response"]["status_code"] == 200 and x["response"]["body"]["choices"][0]["message"]["content"] for x in out)
    assert b.error_file_id is None
    assert [x.id for x in c.batches.list(limit=10)] == [b.id]
    assert dict(server.submitted) == {f"r{i}": 1 for i in range(5)}


def test_failed_requests_go_to_the_error_file(server):
    server.fail_ids = {"r1", "r3"}
    c = _client(server)
    b = c.batches.create(input_file_id=c.files.create(file=("in.jsonl", _lines(4)), purpose="batch").id,
                         endpoint="/v1/chat/completions", completion_window="24h")
    b = _wait(c, b.id)
    assert b.status == "completed" and (b.request_counts.completed, b.request_counts.failed) == (2, 2)
    errs = [json.loads(x) for x in c.files.content(b.error_file_id).text.splitlines()]
    assert sorted(e["custom_id"] for e in errs) == ["r1", "r3"] and all(e["response"]["status_code"] == 400 for e in errs)


def test_expiry_and_cancel(server):
    c = _client(server)
    server.expire_after = 2
    b = _wait(c, c.batches.create(input_file_id=c.files.create(file=("a.jsonl", _lines(5)), purpose="batch").id,
                                  endpoint="/v1/chat/completions", completion_window="24h").id)
    assert b.status == "expired" and b.request_counts.completed == 2 and b.request_counts.failed == 3
    errs = [json.loads(x) for x in c.files.content(b.error_file_id).text.splitlines()]
    assert {e["error"]["code"] for e in errs} == {"batch_expired"} and all(e["response"] is None for e in errs)
    server.expire_after = None
    server.hold.clear()
    b = c.batches.create(input_file_id=c.files.create(file=("b.jsonl", _lines(3)), purpose="batch").id,
                         endpoint="/v1/chat/completions", completion_window="24h")
    _wait(c, b.id, statuses=("in_progress",))
    assert c.batches.cancel(b.id).status == "cancelling"
    b = _wait(c, b.id)
    assert b.status == "cancelled" and b.request_counts.failed == 3


def test_errors_the_sdk_raises(server):
    c = _client(server)
    with pytest.raises(openai.NotFoundError):
        c.batches.retrieve("batch_nope")
    with pytest.raises(openai.BadRequestError):
        c.batches.create(input_file_id="file_nope", endpoint="/v1/chat/completions", completion_window="24h")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="wrong", base_url=server.base_url, max_retries=0).batches.list()
    bad = c.files.create(file=("bad.jsonl", b'{"custom_id": "x"}\n'), purpose="batch")
    b = _wait(c, c.batches.create(input_file_id=bad.id, endpoint="/v1/chat/completions", completion_window="24h").id)
    assert b.status == "failed" and b.errors.data[0].message
