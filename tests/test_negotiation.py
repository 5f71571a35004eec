"""Structured-output negotiation in both transports (core/llm/structured.py used by core/llm/transports/openai_http.py and
core/llm/transports/litellm.py's LiteLLMTransport), against loopback stubs that produce the faults a real server will not
produce on demand: a 400 naming response_format, a 500 repeating identically, a server rejecting
every structured form."""

from __future__ import annotations

import json

import pytest

from tests.conftest import call_cli, cli_env, read_jsonl
from tests.test_openai_http import Scripted, _err, _req
from treesynth.core.config import build_config
from treesynth.core.errors import ProviderError, TransientProviderError
from treesynth.core.llm import LiteLLMTransport, LLMClient
from treesynth.core.llm.transports.openai_http import OpenAIHTTPTransport

LLAMA_CPP_500 = "Input should be 'text' or 'json_object'"
BAD_PARAM_500 = "1 validation error for CreateChatCompletionRequest top_k Input should be a valid integer"
# litellm (its import alone takes seconds) in the full suite; the quick loop covers the native transport
TRANSPORTS = pytest.mark.parametrize("kind", ["http", pytest.param("litellm", marks=pytest.mark.slow)])
BIG = {"type": "object", "properties": {"samples": {"type": "array", "items": {"type": "string", "maxLength": 4000}}}}


def _transport(kind: str, url: str):
    cfg = build_config(flags={"task": "t", "model": "openai/test-model", "api_base": url, "timeout": 10, "transport": kind})
    return OpenAIHTTPTransport(cfg, price=None) if kind == "http" else LiteLLMTransport(cfg)


async def _close(t) -> None:
    if hasattr(t, "aclose"):
        await t.aclose()


def _kind(body: dict) -> str:
    from tests.stub_server import rf_kind

    return rf_kind(body)


@TRANSPORTS
async def test_a_500_rejecting_json_schema_steps_down_in_the_same_call(kind):
    """llama-cpp-python's server answers json_schema with HTTP 500 "Input should be 'text' or 'json_object'"."""
    async with Scripted(_err(500, LLAMA_CPP_500)) as srv:
        t = _transport(kind, srv.url)
        c = await t(_req(schema=BIG))  # no TransientProviderError: re-sent at once one step down
        c2 = await t(_req(schema=BIG))
        await _close(t)
    assert c.text == c2.text == '{"samples": []}'
    assert [_kind(b) for b in srv.requests] == ["json_schema", "json_object_schema", "json_object_schema"]
    assert t.schema_mode == "json_object_schema"
    sent = srv.requests[1]["response_format"]["schema"]
    assert sent["properties"]["samples"]["items"]["maxLength"] == 500 and sent["properties"]["samples"]["type"] == "array"  # grammar-safe


@TRANSPORTS
async def test_400s_naming_response_format_walk_the_whole_ladder(kind):
    async with Scripted(
        _err(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.", param="response_format"),
        _err(400, "response_format.schema: extra inputs are not permitted"),  # (litellm absorbs 422s itself: drop_params)
        _err(400, "json_object is not supported by this model"),
    ) as srv:
        t = _transport(kind, srv.url)
        c = await t(_req())
        await t(_req())
        await _close(t)
    assert c.text == '{"samples": []}'
    assert [_kind(b) for b in srv.requests] == ["json_schema", "json_object_schema", "json_object", "none", "none"]
    assert t.schema_mode == "none"


@TRANSPORTS
async def test_downgrades_are_neither_errors_nor_retries_of_the_client(kind):
    async with Scripted(_err(500, LLAMA_CPP_500), _err(500, "grammar: failed to parse the schema")) as srv:
        t = _transport(kind, srv.url)
        client = LLMClient(t, max_retries=0)  # no retry budget at all: the downgrades must not need one
        c = await client.complete(_req())
        await _close(t)
    assert c.text == '{"samples": []}'
    assert (client.usage.retries, client.usage.errors, client.usage.requests) == (0, 0, 1)
    assert t.schema_mode == "json_object"


@TRANSPORTS
async def test_a_request_shaped_500_repeating_identically_ends_with_one_line(kind):
    async with Scripted(_err(500, BAD_PARAM_500), _err(500, BAD_PARAM_500)) as srv:
        t = _transport(kind, srv.url)
        with pytest.raises(TransientProviderError):
            await t(_req(schema=None))  # once may be a fluke
        with pytest.raises(ProviderError) as ei:
            await t(_req(schema=None))  # the same again: deterministic, no more backoff
        await _close(t)
    line = str(ei.value)
    assert "\n" not in line and "rejects the request deterministically" in line and "HTTP 500" in line
    assert f"127.0.0.1:{srv.url.split(':')[2].split('/')[0]}" in line and "top_k" in line
    assert len(srv.requests) == 2


@TRANSPORTS
async def test_a_schema_rejection_that_survives_every_downgrade_is_deterministic(kind):
    async with Scripted(*[_err(500, LLAMA_CPP_500)] * 5) as srv:
        t = _transport(kind, srv.url)
        with pytest.raises(ProviderError, match="rejects the request deterministically with HTTP 500"):
            await t(_req())  # stepped down to none, and the same error came back without any response_format
        await _close(t)
    assert [_kind(b) for b in srv.requests] == ["json_schema", "json_object_schema", "json_object", "none"]


@TRANSPORTS
async def test_generic_server_errors_stay_transient(kind):
    async with Scripted(*[_err(500, "internal error")] * 3) as srv:
        t = _transport(kind, srv.url)
        for _ in range(3):
            with pytest.raises(TransientProviderError):
                await t(_req())
        await _close(t)
    assert t.schema_mode == "json_schema"


# ---------------------------------------------------------------------------- the CLI over the stub server


def _run(stub, out, transport, *extra):
    return call_cli("run", "GSM8K-style math word problems", "--no-ui", "--model", "openai/stub-model", "--api-base", stub.url,
                    "--fields", "question,answer", "--transport", transport, "--out", str(out), "--size", "8", "--depth", "1",
                    "--pivots", "4", "--json-events", *extra, env=cli_env())


@TRANSPORTS
def test_cli_run_on_a_server_without_json_schema_completes_without_retries(stub, tmp_path, kind):
    stub.reject_formats = {"json_schema": (400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported.")}
    out = tmp_path / "run"
    r = _run(stub, out, kind)
    assert r.returncode == 0, r.stderr
    usage = [json.loads(line) for line in r.stdout.splitlines() if '"usage"' in line][-1]
    assert usage["retries"] == 0 and usage["errors"] == 0
    assert len(read_jsonl(out / "dataset.jsonl")) == 8
    assert stub.formats["json_schema"] >= 1 and stub.formats["json_object_schema"] >= 1
    assert set(stub.formats) == {"json_schema", "json_object_schema"}


@TRANSPORTS
def test_cli_run_against_a_deterministic_500_fails_fast_with_one_line(stub, tmp_path, kind):
    stub.fail_always = (500, "Extra inputs are not permitted: bogus_param")
    r = _run(stub, tmp_path / "run", kind)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert "rejects the request deterministically" in last and "bogus_param" in last and f"127.0.0.1:{stub.port}" in last
    assert "Traceback" not in r.stderr
    assert stub.requests <= 4, "a deterministic rejection is not retried with backoff"


async def test_an_endpoint_in_llama_cpp_s_dialect_samples_like_the_embedded_model_and_extra_body_wins():
    """After the step down to llama.cpp's json_object + schema, requests carry repeat_penalty 1.0 (the
    embedded model's sampling; llama-cpp-python's server would apply 1.1); OpenAI-style endpoints never
    see it. ``extra_body`` is added to every body and wins over treesynth's own fields."""
    async with Scripted(_err(500, LLAMA_CPP_500)) as srv:
        t = _transport("http", srv.url)
        await t(_req(schema=BIG))
        await t(_req(schema=BIG))
        await _close(t)
    assert "repeat_penalty" not in srv.requests[0]
    assert [b.get("repeat_penalty") for b in srv.requests[1:]] == [1.0, 1.0]
    async with Scripted(_err(500, LLAMA_CPP_500)) as srv:
        cfg = build_config(flags={"task": "t", "model": "openai/m", "api_base": srv.url, "transport": "http",
                                  "extra_body": {"repeat_penalty": 1.3, "top_k": 20}})
        t = OpenAIHTTPTransport(cfg, price=None)
        await t(_req(schema=BIG))
        await _close(t)
    assert [(b["repeat_penalty"], b["top_k"]) for b in srv.requests] == [(1.3, 20), (1.3, 20)]
