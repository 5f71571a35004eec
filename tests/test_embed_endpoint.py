"""The endpoint embedder (core/quality/embed_endpoint.py) against a fake /v1/embeddings server
(tests/embed_server.py): batching and order, unit vectors, the cache, usage and cost, the budget,
retries and the errors that are not retried; the config's ``embedder`` forms, the resume refusal, the
preflight, and the CLI's one line for a bad model."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import call_cli
from tests.embed_server import FakeEmbeddings, free_port, vector_of
from treesynth.core.cache import ResponseCache
from treesynth.core.config import build_config, resume_overrides
from treesynth.core.embedder_choice import DEFAULT_LOCAL_MODEL, parse_embedder
from treesynth.core.embeddings import DEFAULT_MODEL, quantise
from treesynth.core.errors import BudgetExhausted, ConfigError, ProviderError, StopRequested, TransientProviderError
from treesynth.core.llm import LLMClient, UsageTotals
from treesynth.core.llm.embed_wire import probe, resolve_endpoint
from treesynth.core.quality.embed_endpoint import EndpointRowEmbedder
from treesynth.core.quality.embed_ray import RayRowEmbedder
from treesynth.core.quality.embedder import LocalRowEmbedder
from treesynth.core.quality.embedders import make_row_embedder

TEXTS = [f"row number {i} about topic {i % 3}" for i in range(10)]


def expected(texts: list[str], dim: int = 8) -> np.ndarray:
    X = np.stack([vector_of(t, dim) for t in texts]).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return quantise(X)


OFFLOAD = False  # set by ``where``: requests through the worker process (core/quality/embed_worker.py)


def embedder(srv: FakeEmbeddings, model: str = "openai/emb-small", **kw) -> EndpointRowEmbedder:
    kw.setdefault("backoff_base", 0.01)
    kw.setdefault("price", None)
    e = EndpointRowEmbedder(model, srv.url, **kw)
    if OFFLOAD:
        e.offload()
    return e


@pytest.fixture(params=["in-process", "worker"])
def where(request, monkeypatch):
    """The embedder's requests made in this process, or in its worker process (a large run's: ``offload``)."""
    monkeypatch.setattr(f"{__name__}.OFFLOAD", request.param == "worker")
    return request.param


@pytest.fixture
def srv():
    with FakeEmbeddings(latency=0.02) as s:
        yield s


# ---- batching, order, vectors --------------------------------------------------------


async def test_batches_of_batch_rows_at_most_parallel_in_flight_in_order(srv, where):
    e = embedder(srv, batch_rows=3, parallel=2)
    X = await e.embed(TEXTS)
    await e.aclose()
    assert sorted(len(r["input"]) for r in srv.requests) == [1, 3, 3, 3]
    assert srv.max_in_flight <= 2
    assert X.shape == (10, 8) and X.dtype == np.float32
    np.testing.assert_array_equal(X, expected(TEXTS))  # the server answers in reverse: ordered by index
    assert e.usage.embed_requests == 4 and e.usage.embed_texts == 10


def test_request_chunks_hold_at_most_max_rows_and_max_tokens_and_a_long_text_goes_alone():
    from treesynth.core.llm.embed_wire import request_chunks, text_tokens

    assert request_chunks([10] * 5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert request_chunks([], 3) == []
    assert request_chunks([10, 20, 30], 256, max_tokens=60) == [(0, 3)]
    assert request_chunks([10, 20, 31], 256, max_tokens=60) == [(0, 2), (2, 3)]
    assert request_chunks([100, 5, 5], 256, max_tokens=60) == [(0, 1), (1, 3)]  # too long alone: by itself
    assert request_chunks([5, 100, 5], 256, max_tokens=60) == [(0, 1), (1, 2), (2, 3)]
    assert request_chunks([text_tokens("x" * 600)] * 256, 256) == [(0, 256)]  # GSM8K-sized rows: one request, as before
    assert request_chunks([text_tokens("x" * 2400)] * 256, 256) == [(0, 208), (208, 256)]  # two fields at 1,200: two
    # half the UTF-8 bytes, rounded up: more than OpenAI counts for English (~4 bytes a token) or Chinese (~2.3)
    assert text_tokens("abcd") == 3 and text_tokens("中文") == 4 and text_tokens("") == 1
    assert text_tokens("a\ud800b") == 3  # a lone surrogate (possible in model output) is counted, not an error


@pytest.mark.parametrize(("unit", "rows", "limit"), [
    ("word ", 120, 520_000),  # 120 rows of ~5,000 characters: ~600,000 in one request
    ("中文数学题", 200, 230_000),  # 200 rows of 2,000 Chinese characters: cl100k's 300,000 tokens are ~230,000 of them
])
async def test_long_rows_go_in_requests_under_the_providers_tokens_per_request(unit, rows, limit):
    # one request of them all would be refused for good (HTTP 400): the fake counts characters, as OpenAI counts tokens
    texts = [f"row {i} " + unit * (5_000 // len(unit) if unit.isascii() else 400) for i in range(rows)]
    with FakeEmbeddings(max_request_chars=limit) as s:
        e = embedder(s)
        X = await e.embed(texts)
        await e.aclose()
        sizes = [sum(len(t) for t in r["input"]) for r in s.requests]
    assert len(sizes) >= 2 and max(sizes) <= limit, sizes
    np.testing.assert_array_equal(X, expected(texts))
    assert e.usage.embed_texts == rows and e.usage.errors == 0


async def test_a_text_longer_than_a_providers_input_is_sent_cut_and_its_vector_cached_under_the_whole_text(tmp_path):
    from treesynth.core.quality.embed_endpoint import MAX_INPUT_CHARS

    long = "a long row " + "with many words " * 3_000  # 48,011 characters
    with FakeEmbeddings(max_input_chars=8_192) as s:
        cache = ResponseCache(tmp_path / "c.sqlite")
        e = embedder(s, cache=cache)
        X = await e.embed([long, "short row"])
        await e.aclose()
        again = embedder(s, cache=cache)
        Y = await again.embed([long])
        await again.aclose()
        sent = [t for r in s.requests for t in r["input"]]
    assert sent == [long[:MAX_INPUT_CHARS], "short row"]  # the second embedder asked nothing: from the cache
    np.testing.assert_array_equal(X, expected([long[:MAX_INPUT_CHARS], "short row"]))
    np.testing.assert_array_equal(Y[0], X[0])


async def test_vectors_are_unit_norm_and_float16_rounded(srv, where):
    e = embedder(srv)
    X = await e.embed(TEXTS[:4])
    await e.aclose()
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(quantise(X), X)  # rounding again changes nothing: already float16-rounded
    assert e.dim == 8


async def test_a_text_repeated_in_one_call_is_sent_once_and_empty_input_makes_no_call(srv):
    e = embedder(srv)
    X = await e.embed(["a", "b", "a", "a"])
    assert srv.requests[0]["input"] == ["a", "b"]
    np.testing.assert_array_equal(X[0], X[2])
    Z = await e.embed([])
    await e.aclose()
    assert Z.shape == (0, 8) and len(srv.requests) == 1


async def test_the_wire_model_is_sent_and_the_key_comes_from_the_environment(srv, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-123456")
    e = embedder(srv)
    await e.embed(["x"])
    await e.aclose()
    assert srv.requests[0]["model"] == "emb-small"
    assert srv.requests[0]["auth"] == "Bearer sk-from-env-123456"
    assert "sk-from" not in repr(e.endpoint)


async def test_a_proxy_from_the_environment_is_used_and_no_proxy_is_honoured(srv, monkeypatch):
    # the fake server stands in for the proxy: a request for a host that does not exist reaches it only through
    # HTTP_PROXY (read once per session; aiohttp's trust_env read it, and ~/.netrc in a thread, on every request)
    monkeypatch.setenv("HTTP_PROXY", srv.url.rsplit("/v1", 1)[0])
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    e = EndpointRowEmbedder("openai/emb-small", "http://embeddings.invalid/v1", price=None, max_retries=0)
    X = await e.embed(["x", "y"])
    await e.aclose()
    assert X.shape == (2, 8)
    assert [r["path"] for r in srv.requests] == ["http://embeddings.invalid/v1/embeddings"]
    monkeypatch.setenv("NO_PROXY", "embeddings.invalid")
    e = EndpointRowEmbedder("openai/emb-small", "http://embeddings.invalid/v1", price=None, max_retries=0)
    with pytest.raises(TransientProviderError, match="connection to http://embeddings.invalid/v1 failed"):
        await e.embed(["z"])
    await e.aclose()
    assert len(srv.requests) == 1


async def test_vectors_are_asked_as_base64_and_a_server_that_refuses_it_gets_float_lists(srv, where):
    from treesynth.core.llm.embed_wire import probe

    e = embedder(srv)
    X = await e.embed(TEXTS[:3])
    await e.aclose()
    np.testing.assert_array_equal(X, expected(TEXTS[:3]))
    assert srv.requests[0]["encoding_format"] == "base64"
    with FakeEmbeddings(strict=True) as strict:
        assert probe(resolve_endpoint("openai/emb-small", strict.url)) == 8  # the preflight falls back too
        strict.requests.clear()
        e = embedder(strict, batch_rows=2, parallel=1)  # one request at a time: the order is the test's
        X = await e.embed(TEXTS[:6])
        await e.aclose()
        np.testing.assert_array_equal(X, expected(TEXTS[:6]))
        formats = [r.get("encoding_format") for r in strict.requests]
        assert formats == ["base64", None, None, None]  # refused once, then never asked again


async def test_per_token_answers_are_mean_pooled_one_text_per_request(where):
    with FakeEmbeddings(per_token=True) as s:
        e = embedder(s, batch_rows=4, parallel=2)
        X = await e.embed(TEXTS[:6])
        Y = await e.embed(TEXTS[6:8])
        await e.aclose()
    np.testing.assert_array_equal(X, expected(TEXTS[:6]))  # not the mis-sliced numbers of a batch
    np.testing.assert_array_equal(Y, expected(TEXTS[6:8]))
    sizes = [len(r["input"]) for r in s.requests]
    assert sizes.count(4) + sizes.count(2) <= 2 and sizes[-2:] == [1, 1]  # after the first per-token batch: one by one
    assert e.batch_rows == 1 and len(e.notices) == 1 and "per-token" in e.notices[0]


async def test_a_worker_process_that_dies_is_one_line_not_a_hang(srv):
    from treesynth.core.quality.embed_worker import EmbedWorkerError

    e = embedder(srv, max_retries=0)
    e.offload()
    await e.embed(TEXTS[:2])
    w = e._worker
    assert w is not None and w._proc is not None
    w._proc.kill()
    with pytest.raises(EmbedWorkerError, match="ended unexpectedly") as err:
        await asyncio.wait_for(e.embed(TEXTS[2:4]), 10)
    assert "\n" not in str(err.value)
    await e.aclose()


async def test_the_key_goes_to_the_worker_through_its_pipe_not_its_command_line(srv, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-secret-123")
    e = EndpointRowEmbedder("openai/emb-small", srv.url, price=None)
    e.offload()
    w = e._worker
    assert w is not None and w._proc is not None
    cmdline = Path(f"/proc/{w._proc.pid}/cmdline").read_bytes()
    assert b"sk-worker" not in cmdline
    await e.embed(TEXTS[:1])
    await e.aclose()
    assert srv.requests[-1]["auth"] == "Bearer sk-worker-secret-123"


async def test_a_cancelled_request_through_the_worker_leaves_the_next_ones_right(where):
    with FakeEmbeddings(latency=0.3) as s:
        e = embedder(s)
        task = asyncio.ensure_future(e.embed(TEXTS[:3]))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        X = await e.embed(TEXTS[3:6])
        await e.aclose()
    np.testing.assert_array_equal(X, expected(TEXTS[3:6]))


# ---- the cache ------------------------------------------------------------------------


async def test_cached_texts_make_no_call_again_across_embedders_and_reopened_caches(srv, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    first = embedder(srv, cache=cache)
    X = await first.embed(TEXTS)
    await first.aclose()
    calls = len(srv.requests)
    cache.close()
    cache = ResponseCache(tmp_path / "cache.sqlite")  # a resumed run opens the same file
    usage = UsageTotals()
    again = embedder(srv, cache=cache, usage=usage)
    Y = await again.embed(TEXTS)
    assert len(srv.requests) == calls  # zero embedding calls
    np.testing.assert_array_equal(X, Y)
    assert usage.embed_cache_hits == 10 and usage.embed_requests == 0 and usage.embed_tokens == 0
    Z = await again.embed(TEXTS[:5] + ["a new row"])  # only the new text is sent
    await again.aclose()
    assert srv.requests[-1]["input"] == ["a new row"] and len(srv.requests) == calls + 1
    np.testing.assert_array_equal(Z[:5], X[:5])
    cache.close()


async def test_no_cache_flag_writes_vectors_but_never_reads_them(srv, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    e = embedder(srv, cache=cache, read_cache=False)
    await e.embed(TEXTS[:3])
    await e.embed(TEXTS[:3])
    await e.aclose()
    assert len(srv.requests) == 2
    assert len(cache.get_vectors([__import__("treesynth.core.cache", fromlist=["vector_key"]).vector_key("emb-small", TEXTS[0])])) == 1
    cache.close()


async def test_fresh_rows_leave_the_cache_alone(srv, tmp_path, where):
    """A run's new rows (the gate pipeline embeds them ``fresh``): their vectors go to the run directory, so the
    cache is neither read for them nor written with them; other texts are cached as before."""
    from treesynth.core.cache import vector_key

    cache = ResponseCache(tmp_path / "cache.sqlite")
    e = embedder(srv, cache=cache)
    await e.embed(TEXTS[:2])  # cached
    X = await e.embed(TEXTS[:4], fresh=True)  # two of them are in the cache: asked again all the same
    assert srv.requests[-1]["input"] == TEXTS[:4] and e.usage.embed_cache_hits == 0
    await e.aclose()
    stored = cache.get_vectors([vector_key("emb-small", t) for t in TEXTS[:4]])
    assert len(stored) == 2  # the fresh call wrote nothing
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    cache.close()


async def test_the_gates_get_the_float16_vectors_that_embed_widens(srv, tmp_path, where):
    """``embed_fresh`` (the gate pipeline's call) gives the float16-rounded unit rows as float16, one request's
    answer or many, repeated texts too; ``embed`` gives the same rows widened to unit float32."""
    from treesynth.core.embeddings import quantise

    cache = ResponseCache(tmp_path / "cache.sqlite")
    e = embedder(srv, cache=cache, batch_rows=4)
    for texts in (TEXTS[:3], TEXTS + TEXTS[:2]):  # one request as answered; three, and repeated texts
        H = await e.embed_fresh(texts)
        assert H.dtype == np.float16 and H.shape == (len(texts), 8)
        np.testing.assert_array_equal(quantise(H), await e.embed(texts, fresh=True))
        np.testing.assert_allclose(np.linalg.norm(H.astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert (await e.embed_fresh([])).shape == (0, 8)
    await e.aclose()
    assert cache.get_vectors([__import__("treesynth.core.cache", fromlist=["vector_key"]).vector_key("emb-small", t) for t in TEXTS]) == {}
    cache.close()


async def test_the_cache_key_is_the_model_as_sent_not_the_api_base_or_prefix(tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    with FakeEmbeddings() as a:
        e = embedder(a, cache=cache)
        await e.embed(["same text"])
        await e.aclose()
    with FakeEmbeddings() as b:  # another server (api base), another prefix, the same model: a hit
        e = embedder(b, "hosted_vllm/emb-small", cache=cache)
        await e.embed(["same text"])
        await e.aclose()
        assert b.requests == []
        other = embedder(b, "openai/text-embedding-3-small", cache=cache)  # another model: a miss
        await other.embed(["same text"])
        await other.aclose()
        assert len(b.requests) == 1
    cache.close()


# ---- usage, cost, budget ------------------------------------------------------------------


async def test_prompt_tokens_and_cost_are_counted_from_the_price_table(srv, where):
    usage = UsageTotals()
    e = EndpointRowEmbedder("openai/text-embedding-3-small", srv.url, usage=usage, batch_rows=4)
    if OFFLOAD:
        e.offload()
    await e.embed(TEXTS)
    await e.aclose()
    words = sum(len(t.split()) for t in TEXTS)
    assert usage.embed_tokens == words and usage.embed_requests == 3
    assert usage.embed_cost == pytest.approx(words * 2e-8)  # litellm's table: $0.02 per million tokens
    assert usage.cost == pytest.approx(usage.embed_cost) and usage.cost_known
    assert usage.requests == 0 and usage.tokens_in == 0  # LLM calls are counted apart
    back = UsageTotals.from_dict(usage.to_dict())
    assert (back.embed_requests, back.embed_tokens, back.embed_cost) == (3, words, pytest.approx(usage.embed_cost))


async def test_without_usage_in_the_answer_tokens_are_estimated_and_an_unpriced_model_makes_cost_unknown(where):
    with FakeEmbeddings(usage=False) as s:
        usage = UsageTotals()
        e = EndpointRowEmbedder("hosted_vllm/emb-small", s.url, usage=usage)
        if OFFLOAD:
            e.offload()
        await e.embed(["abcdefgh" * 4])
        await e.aclose()
    assert usage.embed_tokens == 8  # 32 characters / 4
    assert not usage.cost_known and usage.cost_usd is None


async def test_no_call_starts_once_the_budget_is_spent(srv, where):
    usage = UsageTotals()
    e = embedder(srv, usage=usage, budget=1.5, price=lambda tin, tout, cached=0: 1.0, batch_rows=2, parallel=1)
    with pytest.raises(BudgetExhausted):
        await e.embed(TEXTS)
    await e.aclose()
    assert len(srv.requests) == 2 and usage.cost == 2.0  # the third call was refused before it was sent
    spent = embedder(srv, usage=UsageTotals(cost=5.0), budget=5.0)
    with pytest.raises(BudgetExhausted):
        await spent.embed(["x"])
    assert len(srv.requests) == 2


async def test_the_runs_client_gates_the_calls_and_shares_usage_budget_and_cache(srv, tmp_path, where):
    cfg = build_config(flags={"task": "t", "model": "openai/gpt-4o-mini", "embedder": "openai/emb-small", "embed_api_base": srv.url, "budget": 10})

    class Never:
        model = "openai/gpt-4o-mini"

        async def __call__(self, req):  # pragma: no cover - no LLM call in this test
            raise AssertionError

    cache = ResponseCache(tmp_path / "c.sqlite")
    client = LLMClient(Never(), budget=10, cache=cache)
    seen = []
    client.on_usage = lambda: seen.append(client.usage.embed_requests)  # the engine sets it after the embedder is made
    e = make_row_embedder(cfg, client=client, price=None)
    assert isinstance(e, EndpointRowEmbedder) and e.usage is client.usage and e.cache is cache and e.budget == 10
    await e.embed(["one", "two"])
    assert client.usage.embed_requests == 1 and seen and seen[-1] == 1
    client.stop()
    with pytest.raises(StopRequested):
        await e.embed(["three"])
    await e.aclose()
    assert len(srv.requests) == 1
    cache.close()


# ---- retries and errors -------------------------------------------------------------------


async def test_503_and_a_dropped_connection_are_retried_then_succeed(where):
    with FakeEmbeddings(faults=["503", "drop", "500"]) as s:
        e = embedder(s)
        X = await e.embed(TEXTS[:2])
        await e.aclose()
    assert len(s.requests) == 4
    np.testing.assert_array_equal(X, expected(TEXTS[:2]))
    assert e.usage.retries == 3 and e.usage.errors == 3 and e.usage.embed_requests == 4


async def test_connection_refused_is_retried_until_the_server_comes_up(where):
    port = free_port()
    # the worker process takes a moment to start: the server comes up later, so that its first try is refused too
    s = FakeEmbeddings(port=port, start_after=0.4 if where == "in-process" else 3.0).start()
    try:
        e = embedder(s, backoff_base=0.2, max_retries=8)
        X = await e.embed(["late server"])
        await e.aclose()
    finally:
        s.stop()
    assert e.usage.retries >= 1 and len(s.requests) == 1
    np.testing.assert_array_equal(X, expected(["late server"]))


async def test_429_waits_for_retry_after(where):
    with FakeEmbeddings(faults=["429:1"]) as s:
        e = embedder(s, backoff_base=0.01)
        await e.embed(["x"])
        await e.aclose()
    assert len(s.requests) == 2
    assert s.requests[1]["t"] - s.requests[0]["t"] >= 0.95  # not the 0.01 s backoff


async def test_transient_errors_past_max_retries_raise(where):
    with FakeEmbeddings(faults=["503"] * 5) as s:
        e = embedder(s, max_retries=2)
        with pytest.raises(TransientProviderError, match="HTTP 503"):
            await e.embed(["x"])
        await e.aclose()
    assert len(s.requests) == 3


@pytest.mark.parametrize(("fault", "model", "words"), [
    (None, "openai/no-such-model", "no-such-model"),
    ("401", "openai/emb-small", "authentication failed"),
    ("nopool", "openai/emb-small", "embeddings on"),
])
async def test_deterministic_errors_are_one_line_and_not_retried(fault, model, words, where):
    with FakeEmbeddings(faults=[fault] if fault else []) as s:
        e = embedder(s, model, max_retries=5)
        with pytest.raises(ProviderError) as err:
            await e.embed(TEXTS[:3])
        await e.aclose()
    assert len(s.requests) == 1 and e.usage.retries == 0
    msg = str(err.value)
    assert "\n" not in msg and words in msg


async def test_a_404_names_the_model_and_the_missing_route(where):
    with FakeEmbeddings(unknown_status=404) as s:
        e = embedder(s, "openai/nope")
        with pytest.raises(ProviderError, match="HTTP 404.*nope.*--embedding"):
            await e.embed(["x"])
        await e.aclose()


async def test_as_sync_runs_on_the_runs_loop_from_a_worker_thread_and_embed_blocking_on_its_own(srv):
    e = embedder(srv)
    loop = asyncio.get_running_loop()
    sync = e.as_sync(loop)
    X = await asyncio.to_thread(sync, TEXTS[:3])
    np.testing.assert_array_equal(X, expected(TEXTS[:3]))
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("x", e.embed_blocking(TEXTS[3:5])))
    t.start()
    await asyncio.to_thread(t.join)
    np.testing.assert_array_equal(box["x"], expected(TEXTS[3:5]))
    await e.aclose()


# ---- the preflight's probe -------------------------------------------------------------------


def test_probe_answers_the_dimension_or_one_line(srv):
    assert probe(resolve_endpoint("openai/emb-small", srv.url)) == 8
    with pytest.raises(ProviderError) as err:
        probe(resolve_endpoint("openai/bogus", srv.url))
    assert "\n" not in str(err.value) and "bogus" in str(err.value)
    with pytest.raises(ProviderError, match="connection refused"):
        probe(resolve_endpoint("openai/emb-small", f"http://127.0.0.1:{free_port()}/v1"))
    with FakeEmbeddings(faults=["503"]) as flaky:
        assert probe(resolve_endpoint("openai/emb-small", flaky.url)) == 8


def test_an_openai_embedder_without_key_or_base_is_refused_before_any_call(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="OPENAI_API_KEY"):
        probe(resolve_endpoint("openai/text-embedding-3-small"))
    with pytest.raises(ConfigError, match="embed-api-base"):
        resolve_endpoint("hosted_vllm/x")
    monkeypatch.setenv("OPENAI_API_BASE", "http://127.0.0.1:9/v1")
    assert resolve_endpoint("openai/x").api_base == "http://127.0.0.1:9/v1"


# ---- config, factory, resume -------------------------------------------------------------------


def test_embedder_forms(tmp_path):
    assert DEFAULT_LOCAL_MODEL == DEFAULT_MODEL
    for s in (None, "", "local", "default", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
        c = parse_embedder(s)
        assert (c.kind, c.spec, c.label) == ("local", None, "local all-MiniLM-L6-v2")
    c = parse_embedder("openai/text-embedding-3-small")
    assert (c.kind, c.wire_model, c.label) == ("endpoint", "text-embedding-3-small", "openai/text-embedding-3-small")
    assert parse_embedder("hosted_vllm/BAAI/bge-m3").wire_model == "BAAI/bge-m3"
    assert parse_embedder("ray").kind == "ray"
    (tmp_path / "mymodel").mkdir()
    c = parse_embedder(str(tmp_path / "mymodel"))
    assert (c.kind, c.model, c.path) == ("local", "mymodel", str(tmp_path / "mymodel"))
    for bad in ("bogus", "cohere/embed-english-v3.0", "openai/", "http://x/v1", "sentence-transformers/other-model"):
        with pytest.raises(ValueError):
            parse_embedder(bad)


def test_config_validates_the_embedder_in_one_line():
    cfg = build_config(flags={"task": "t", "embedder": " openai/emb ", "embed_api_base": "http://h:1/v1/"})
    assert (cfg.embedder, cfg.embed_api_base) == ("openai/emb", "http://h:1/v1")
    assert build_config(flags={"task": "t", "embedder": "local"}).embedder is None
    for flags, words in (
        ({"embedder": "cohere/embed-v3"}, "unknown embedder"),
        ({"embedder": "local", "embed_api_base": "http://h/v1"}, "embed_api_base"),
        ({"embedder": "openai/x", "embed_api_base": "ftp://h"}, "http(s) URL"),
    ):
        with pytest.raises(ConfigError) as err:
            build_config(flags={"task": "t", **flags})
        assert words in str(err.value) and "\n" not in str(err.value)


def test_a_resume_keeps_the_embedder_and_may_move_its_api_base():
    saved = build_config(flags={"task": "t"}).redacted()
    with pytest.raises(ConfigError) as err:
        resume_overrides(saved, {"embedder": "openai/x"})
    assert str(err.value).startswith("this run's vectors were made by local all-MiniLM-L6-v2; a resume cannot switch to openai/x")
    assert resume_overrides(saved, {"embedder": "local", "budget": 2}) == {"budget": 2}
    ep = build_config(flags={"task": "t", "embedder": "openai/x", "embed_api_base": "http://a/v1"}).redacted()
    assert resume_overrides(ep, {"embedder": "hosted_vllm/x", "embed_api_base": "http://b/v1"}) == {"embed_api_base": "http://b/v1"}
    with pytest.raises(ConfigError, match="made by openai/x; a resume cannot switch to local all-MiniLM-L6-v2"):
        resume_overrides(ep, {"embedder": "local"})
    with pytest.raises(ConfigError, match="cannot change depth"):
        resume_overrides(saved, {"depth": 5})


def test_the_factory_builds_what_the_config_names(tmp_path):
    local = make_row_embedder(build_config(flags={"task": "t"}))
    assert isinstance(local, LocalRowEmbedder) and local.identity() == {"kind": "local", "model": "all-MiniLM-L6-v2"}
    (tmp_path / "m").mkdir()
    folder = make_row_embedder(build_config(flags={"task": "t", "embedder": str(tmp_path / "m")}))
    assert folder.identity()["model"] == "m"
    ep = make_row_embedder(build_config(flags={"task": "t", "embedder": "openai/x", "embed_api_base": "http://h:1/v1", "max_retries": 2}))
    assert isinstance(ep, EndpointRowEmbedder) and ep.max_retries == 2 and ep.endpoint.url == "http://h:1/v1/embeddings"
    assert ep.identity() == {"kind": "endpoint", "model": "openai/x"}
    ray = make_row_embedder(build_config(flags={"task": "t", "embedder": "ray", "ray_address": "auto", "ray_workers": 3}))
    assert isinstance(ray, RayRowEmbedder) and ray.identity() == {"kind": "ray", "model": "all-MiniLM-L6-v2"}
    assert (ray.address, ray.workers) == ("auto", 3) and not ray.stats()  # nothing started before the first batch


# ---- the CLI ----------------------------------------------------------------------------------


def test_cli_run_with_a_bad_embedding_model_says_one_line_and_writes_nothing(srv, tmp_path):
    out = tmp_path / "run"
    r = call_cli("run", "math word problems", "--model", "openai/gpt-4o-mini", "--api-base", srv.url,
                 "--embedder", "openai/no-such-model", "--embed-api-base", srv.url, "--no-ui", "--out", str(out))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-model" in lines[0] and "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_run_with_an_unknown_embedder_form_says_one_line(tmp_path):
    r = call_cli("run", "t", "--embedder", "cohere/x", "--no-ui", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "unknown embedder" in r.stderr


def test_status_line_and_summary_show_the_embedding_calls():
    from treesynth.core import events as ev
    from treesynth.core.progress import Progress, closing_rows, status_line

    p = Progress()
    p.apply(ev.Usage(requests=3, cache_hits=0, tokens_in=1, tokens_out=1, cost_usd=0.01, retries=0, errors=0, invalid=0, elapsed_s=1,
                     embed_requests=4, embed_cache_hits=2, embed_tokens=1234, embed_cost_usd=0.0001))
    assert "embeddings 4 req, 2 cached texts, 1,234 tokens, $0.0001" in status_line(p)
    fin = ev.RunFinished(status="complete", run_dir="d", rows=1, size=1, leaves=1, nodes=1, dataset=None, cost_usd=0.01, requests=3,
                         embed_requests=4, embed_tokens=1234, embed_cost_usd=0.0001)
    assert dict(closing_rows(fin))["cost"] == "$0.0100 over 3 requests (with embeddings 4 req, 1,234 tokens, $0.0001)"
    assert "embeddings" not in status_line(Progress())


def test_the_cache_file_of_an_older_run_gains_the_vectors_table(tmp_path: Path):
    import sqlite3

    p = tmp_path / "old.sqlite"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, finish_reason TEXT,"
               " tokens_in INTEGER NOT NULL, tokens_out INTEGER NOT NULL, created REAL NOT NULL)")
    db.commit()
    db.close()
    c = ResponseCache(p)
    c.put_vectors([("k", np.ones(4, dtype=np.float16).tobytes())])
    assert np.frombuffer(c.get_vectors(["k", "missing"])["k"], dtype=np.float16).tolist() == [1, 1, 1, 1]
    c.close()


@settings(max_examples=300, deadline=None)
@given(texts=st.lists(st.text(alphabet=st.sampled_from("ab 中\U0001f600\ud800"), max_size=40), max_size=30),
       max_rows=st.integers(1, 8), max_tokens=st.integers(1, 120))
def test_request_spans_are_request_chunks_of_each_texts_tokens(texts, max_rows, max_tokens):
    # the shortcut (the whole lot's estimate fits one request: spans by rows alone) plans what the per-text sizes plan
    from treesynth.core.llm.embed_wire import request_chunks, request_spans, text_tokens

    assert request_spans(texts, max_rows, max_tokens) == request_chunks([text_tokens(t) for t in texts], max_rows, max_tokens)


def test_answers_out_of_order_or_malformed_are_still_checked_item_by_item():
    from treesynth.core.errors import TransientProviderError
    from treesynth.core.llm.embed_wire import parse_embeddings

    def doc(data):
        return json.dumps({"data": data}).encode()

    in_order = parse_embeddings(doc([{"index": 0, "embedding": [1, 2]}, {"index": 1, "embedding": [3, 4]}]), 2, "u")
    np.testing.assert_array_equal(in_order.vectors, [[1, 2], [3, 4]])
    no_index = parse_embeddings(doc([{"embedding": [1, 2]}, {"embedding": [3, 4]}]), 2, "u")  # by position
    np.testing.assert_array_equal(no_index.vectors, [[1, 2], [3, 4]])
    for bad, why in [([{"index": 0, "embedding": [1]}, {"index": 0, "embedding": [2]}], "repeated index"),
                     ([{"index": 0, "embedding": [1]}, [2]], "not an object"),
                     ([{"index": 0, "embedding": [1]}, {"index": 2, "embedding": [2]}], "bad or repeated index")]:
        with pytest.raises(TransientProviderError, match=why):
            parse_embeddings(doc(bad), 2, "u")


def test_base64_answers_are_read_in_order_and_unequal_widths_are_malformed():
    import base64

    from treesynth.core.errors import TransientProviderError
    from treesynth.core.llm.embed_wire import parse_embeddings

    def item(i, v):
        return {"index": i, "embedding": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode()}

    raw = json.dumps({"data": [item(1, [3, 4]), item(0, [1, 2])], "usage": {"prompt_tokens": 7}}).encode()
    got = parse_embeddings(raw, 2, "u")
    np.testing.assert_array_equal(got.vectors, [[1, 2], [3, 4]])
    assert got.prompt_tokens == 7 and not got.per_token
    three = json.dumps({"data": [item(0, [1, 2, 3]), item(1, [4, 5, 6])]}).encode()  # 12 bytes: no padding, one decode
    np.testing.assert_array_equal(parse_embeddings(three, 2, "u").vectors, [[1, 2, 3], [4, 5, 6]])
    bad = json.dumps({"data": [item(0, [1, 2]), item(1, [3, 4, 5])]}).encode()
    with pytest.raises(TransientProviderError, match="one length"):
        parse_embeddings(bad, 2, "u")


def test_a_parent_killed_takes_its_embedding_worker_along() -> None:
    from tests.test_neardup_process import ends_with_its_killed_parent

    code = (
        "from treesynth.core.llm.embed_wire import EmbedEndpoint\n"
        "from treesynth.core.quality.embed_worker import EmbedWorker\n"
        "import time\n"
        "w = EmbedWorker(EmbedEndpoint('openai/x', 'x', 'http://127.0.0.1:9/v1'), 5.0, 2)\n"
        "print(w._proc.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    assert ends_with_its_killed_parent(code), "the embedding worker outlived its killed parent by 30 s"
