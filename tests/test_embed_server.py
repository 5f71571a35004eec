"""The endpoint embedder against a REAL server: llama-cpp-python's (``python -m llama_cpp.server --embedding
true``) on the shipped SmolLM2 GGUF. A decoder model is no sentence embedder, but it proves the path: unit
vectors of the model's width in input order, ``usage.prompt_tokens`` counted, a second call served from the
run's cache, and the preflight's one-text check.

What this server does (measured): without a pooling type it answers each text's per-token vectors (576
wide), which the embedder mean-pools, and it mis-slices every text after the first of a request (cosine
-0.02 to the same text alone), so the embedder sends such a server one text per request; it reports
``usage.prompt_tokens``; it ignores the model name (any name gets the loaded model), so an unknown name
is tested against the fake (tests/test_embed_endpoint.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.llama_server import llama_cpp_server, skip_without_server
from treesynth.core.cache import ResponseCache
from treesynth.core.config import build_config
from treesynth.core.embeddings import quantise
from treesynth.core.llm.embed_wire import probe, resolve_endpoint
from treesynth.core.preflight import check_embedder
from treesynth.core.quality.embed_endpoint import EndpointRowEmbedder

pytestmark = pytest.mark.slow

TEXTS = ["A train leaves at 3 pm and travels 60 miles.", "Tom has 5 apples and eats 2.", "hello", "A train leaves at 3 pm and travels 60 miles."]
DIM = 576  # SmolLM2-135M's hidden size


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory):
    skip_without_server()
    log = tmp_path_factory.mktemp("embed_server") / "server.log"
    with llama_cpp_server(log, "--embedding", "true", n_ctx=2048) as (_proc, port):
        yield f"http://127.0.0.1:{port}/v1"


async def test_unit_vectors_of_the_models_width_in_order_and_cached(embed_server, tmp_path):
    cache = ResponseCache(tmp_path / "cache.sqlite")
    e = EndpointRowEmbedder("openai/smollm2", embed_server, cache=cache, batch_rows=2, parallel=2)
    X = await e.embed(TEXTS)
    assert X.shape == (4, DIM) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(quantise(X), X)
    np.testing.assert_array_equal(X[0], X[3])  # the same text, sent once
    u = e.usage
    assert e.batch_rows == 1 and len(e.notices) == 1  # per-token answers: one text per request from the first
    assert u.embed_requests == 4  # [A, B] (answered per token, so sent again:) A, B; and C
    assert u.embed_tokens > 3  # the server's usage.prompt_tokens
    assert not u.cost_known  # an unpriced model: the cost is unknown, as an unpriced chat model's

    # order and the right numbers: each text alone gets the vector it got among the others
    for i in (0, 1, 2):
        alone = EndpointRowEmbedder("openai/smollm2", embed_server)
        Y = await alone.embed([TEXTS[i]])
        await alone.aclose()
        np.testing.assert_array_equal(Y[0], X[i])

    again = EndpointRowEmbedder("openai/smollm2", embed_server, cache=cache)
    Z = await again.embed(list(reversed(TEXTS)))
    await e.aclose()
    await again.aclose()
    assert again.usage.embed_requests == 0 and again.usage.embed_cache_hits == 3
    np.testing.assert_array_equal(Z, X[::-1])
    cache.close()


async def test_through_the_worker_process_the_same_vectors_and_usage(embed_server):
    """A large run's requests go through a worker process (core/quality/embed_worker.py, ``offload``): against the
    real server it gets the vectors, the per-token handling and the usage the embedder gets in process."""
    here = EndpointRowEmbedder("openai/smollm2", embed_server, batch_rows=2, parallel=2)
    X = await here.embed(TEXTS[:3])
    await here.aclose()
    there = EndpointRowEmbedder("openai/smollm2", embed_server, batch_rows=2, parallel=2)
    there.offload()
    Y = await there.embed(TEXTS[:3])
    await there.aclose()
    np.testing.assert_array_equal(X, Y)
    assert there.batch_rows == 1 and len(there.notices) == 1  # the per-token answer seen through the worker
    assert (there.usage.embed_requests, there.usage.embed_tokens) == (here.usage.embed_requests, here.usage.embed_tokens)


def test_the_preflight_asks_the_server_for_one_vector(embed_server):
    assert probe(resolve_endpoint("openai/smollm2", embed_server)) == DIM
    check_embedder(build_config(flags={"task": "t", "embedder": "openai/smollm2", "embed_api_base": embed_server}))


def test_a_server_without_embeddings_is_one_line_and_not_retried(tmp_path):
    skip_without_server()
    from treesynth.core.errors import ProviderError

    with llama_cpp_server(tmp_path / "chat.log", n_ctx=512) as (_proc, port):
        with pytest.raises(ProviderError) as err:
            probe(resolve_endpoint("openai/smollm2", f"http://127.0.0.1:{port}/v1"))
    msg = str(err.value)
    assert "\n" not in msg and "--embedding" in msg, msg


def test_a_whole_run_gates_its_rows_with_the_servers_vectors_and_keeps_its_embedder(embed_server, stub, tmp_path):
    """`treesynth run --embedder openai/smollm2 --embed-api-base <llama-cpp-python>`: the rows' vectors come
    from the real server through the gate pipeline (one vector per stored row in row_vectors.f16, the
    embedding calls counted in the closing cost line), and a resume that switches embedders is one line."""
    from tests.conftest import read_jsonl, run_cli
    from treesynth.core.neardup import VectorLog

    out = tmp_path / "r"
    args = ["run", "numbers", "--model", "openai/stub", "--api-base", stub.url, "--depth", "1", "--size", "8",
            "--samples-per-call", "2", "--no-ui", "--out", str(out), "--embedder", "openai/smollm2",
            "--embed-api-base", embed_server, "--dedup-threshold", "0.9999"]
    r = run_cli(*args, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "with embeddings" in r.stdout + r.stderr
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 8
    log = VectorLog(out / "row_vectors.f16", DIM)
    V = log.read()
    log.close()
    assert len(V) == len(read_jsonl(out / "samples.jsonl")) and np.allclose(np.linalg.norm(V, axis=1), 1, atol=1e-2)
    r = run_cli("run", "--resume", str(out), "--embedder", "local", "--no-ui")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "a resume cannot switch to" in r.stderr and len(r.stderr.strip().splitlines()) == 1
