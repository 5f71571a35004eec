"""An endpoint embedder's requests in a process of their own (``offload``, core/quality/embed_process.py;
a large run's default): the same vectors, usage, retries and errors as the embedder's own requests,
against the same fake server (tests/embed_server.py), and a child that dies is an error, not a hang."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from tests.embed_server import FakeEmbeddings, free_port
from tests.test_embed_endpoint import TEXTS, embedder, expected
from treesynth.core.config import build_config
from treesynth.core.errors import ProviderError, ProviderTimeout, TransientProviderError
from treesynth.core.quality.embed_process import EmbedProcessError
from treesynth.core.quality.embedders import make_row_embedder


@pytest.fixture
def srv():
    with FakeEmbeddings(latency=0.02) as s:
        yield s


def offloaded(s: FakeEmbeddings, model: str = "openai/emb-small", **kw):
    return embedder(s, model, offload=True, **kw)


async def test_the_same_vectors_batches_and_usage_as_in_process(srv):
    here = embedder(srv, batch_rows=3, parallel=2)
    X = await here.embed(TEXTS)
    await here.aclose()
    srv.requests.clear()
    e = offloaded(srv, batch_rows=3, parallel=2)
    Y = await e.embed(TEXTS)
    proc = e._process
    await e.aclose()
    assert proc is not None and proc._proc is None  # started by the first request, closed with the embedder
    np.testing.assert_array_equal(X, Y)
    np.testing.assert_array_equal(Y, expected(TEXTS))
    assert sorted(len(r["input"]) for r in srv.requests) == [1, 3, 3, 3] and srv.max_in_flight <= 2
    assert srv.requests[0]["encoding_format"] == "base64"
    assert (e.usage.embed_requests, e.usage.embed_texts, e.usage.embed_tokens) == (
        here.usage.embed_requests, here.usage.embed_texts, here.usage.embed_tokens)


async def test_the_key_reaches_the_server_and_a_server_refusing_base64_gets_float_lists(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123456")
    with FakeEmbeddings(strict=True) as s:
        e = offloaded(s, batch_rows=2, parallel=1)
        X = await e.embed(TEXTS[:6])
        await e.aclose()
    np.testing.assert_array_equal(X, expected(TEXTS[:6]))
    assert [r.get("encoding_format") for r in s.requests] == ["base64", None, None, None]
    assert s.requests[0]["auth"] == "Bearer sk-from-env-123456"


async def test_per_token_answers_are_mean_pooled_one_text_per_request():
    with FakeEmbeddings(per_token=True) as s:
        e = offloaded(s, batch_rows=4, parallel=2)
        X = await e.embed(TEXTS[:6])
        await e.aclose()
    np.testing.assert_array_equal(X, expected(TEXTS[:6]))
    assert e.batch_rows == 1 and len(e.notices) == 1


async def test_503_a_dropped_connection_and_429_are_retried_then_succeed():
    with FakeEmbeddings(faults=["503", "drop", "429:1"]) as s:
        e = offloaded(s)
        X = await e.embed(TEXTS[:2])
        await e.aclose()
    np.testing.assert_array_equal(X, expected(TEXTS[:2]))
    assert len(s.requests) == 4 and e.usage.retries == 3 and e.usage.errors == 3
    assert s.requests[3]["t"] - s.requests[2]["t"] >= 0.95  # the 429's Retry-After, not the 0.01 s backoff


async def test_connection_refused_is_retried_until_the_server_comes_up():
    s = FakeEmbeddings(port=free_port(), start_after=3.0).start()  # after the child has started (well under 3 s)
    try:
        e = offloaded(s, backoff_base=0.2, max_retries=8)
        X = await e.embed(["late server"])
        await e.aclose()
    finally:
        s.stop()
    assert e.usage.retries >= 1 and len(s.requests) == 1
    np.testing.assert_array_equal(X, expected(["late server"]))


async def test_a_timeout_is_a_provider_timeout_and_transient_errors_past_max_retries_raise():
    with FakeEmbeddings(latency=2.0) as s:
        e = offloaded(s, timeout=0.3, max_retries=0)
        with pytest.raises(ProviderTimeout, match="within 0.3s"):
            await e.embed(["x"])
        await e.aclose()
    with FakeEmbeddings(faults=["503"] * 5) as s:
        e = offloaded(s, max_retries=2)
        with pytest.raises(TransientProviderError, match="HTTP 503"):
            await e.embed(["x"])
        await e.aclose()
    assert len(s.requests) == 3


@pytest.mark.parametrize(("fault", "model", "words"), [
    (None, "openai/no-such-model", "no-such-model"),
    ("401", "openai/emb-small", "authentication failed"),
])
async def test_deterministic_errors_are_one_line_and_not_retried(fault, model, words):
    with FakeEmbeddings(faults=[fault] if fault else []) as s:
        e = offloaded(s, model, max_retries=5)
        with pytest.raises(ProviderError) as err:
            await e.embed(TEXTS[:3])
        await e.aclose()
    assert len(s.requests) == 1 and e.usage.retries == 0
    assert "\n" not in str(err.value) and words in str(err.value)


async def test_a_dead_child_is_an_error_for_the_requests_waiting_and_the_next(srv):
    srv.latency = 1.0
    e = offloaded(srv, max_retries=0)
    import asyncio

    task = asyncio.ensure_future(e.embed(["slow"]))
    for _ in range(200):
        await asyncio.sleep(0.01)
        if e._process is not None and srv.in_flight:
            break
    assert e._process is not None and e._process._proc is not None
    os.kill(e._process._proc.pid, signal.SIGKILL)
    with pytest.raises(EmbedProcessError, match="ended unexpectedly"):
        await task
    with pytest.raises(EmbedProcessError):
        await e.embed(["next"])
    await e.aclose()


def test_a_large_run_offloads_a_small_one_does_not():
    small = make_row_embedder(build_config(flags={"task": "t", "size": 100, "embedder": "openai/emb-small", "embed_api_base": "http://127.0.0.1:9/v1"}))
    large = make_row_embedder(build_config(flags={"task": "t", "size": 100_000, "embedder": "openai/emb-small",
                                                  "embed_api_base": "http://127.0.0.1:9/v1"}))
    assert not small.offload and large.offload  # type: ignore[attr-defined]


def test_a_gated_run_with_its_requests_offloaded_is_exact_and_closes_the_process(tmp_path):
    import asyncio

    from tests.conftest import read_jsonl
    from tests.fakes import ScriptedTransport
    from treesynth.core.neardup import VectorLog
    from treesynth.core.run import Run

    with FakeEmbeddings(dim=16) as s:
        cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "depth": 1, "size": 60, "pivots": 4,
                                  "samples_per_call": 5, "concurrency": 8, "dedup_threshold": 0.95, "embedder": "openai/emb-small",
                                  "embed_api_base": s.url})
        emb = make_row_embedder(cfg, offload=True, price=None)
        fin = asyncio.run(Run.create(cfg, tmp_path / "r", transport=ScriptedTransport(), embed=emb).execute(lambda e: None))
    assert fin.status == "complete" and fin.rows == 60
    rows = read_jsonl(tmp_path / "r" / "dataset.jsonl")
    assert len(rows) == 60 and len({r["id"] for r in rows}) == 60
    assert s.requests and emb.usage.embed_texts >= 60  # type: ignore[attr-defined]
    with VectorLog(tmp_path / "r" / "row_vectors.f16", 16) as log:
        assert len(log.read()) == len(read_jsonl(tmp_path / "r" / "samples.jsonl"))
    assert emb._process is None  # type: ignore[attr-defined]  # closed with the run
