"""The native OpenAI-compatible transport (core/llm/transports/openai_http.py): request shape, error mapping,
fallbacks, usage and cost, session lifetime, and the choice between it and litellm."""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import socket
import time
import warnings

import pytest

from tests.conftest import call_cli, cli_env
from tests.faultserver import FaultConfig, FaultServer
from tests.sse_answer import sse_events, wants_usage
from treesynth.core.config import build_config
from treesynth.core.errors import ConfigError, ProviderError, TransientProviderError
from treesynth.core.llm import LiteLLMTransport, LLMClient, LLMRequest, make_local_transport, make_transport
from treesynth.core.llm.transports.openai_http import OpenAIHTTPTransport
from treesynth.core.transport_choice import http_unsupported, in_process, transport_kind, use_http

SCHEMA = {"type": "object", "properties": {"samples": {"type": "array"}}}


def _req(**kw) -> LLMRequest:
    base = dict(messages=[{"role": "system", "content": "You write data."}, {"role": "user", "content": 'Write 2 new samples. {"question": "..."}'}],
                slot="0:gen:0", schema=SCHEMA, seed=3, max_tokens=321, temperature=0.7)
    base.update(kw)
    return LLMRequest(**base)


def _ok(content: str = '{"samples": []}', finish: str = "stop", usage: dict | None = None) -> tuple:
    body = {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}]}
    if usage is not False:
        body["usage"] = usage or {"prompt_tokens": 40, "completion_tokens": 9, "total_tokens": 49}
    return ("respond", 200, {}, json.dumps(body).encode())


def _err(status: int, message: str, headers: dict | None = None, param: str | None = None) -> tuple:
    return ("respond", status, headers or {}, json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": param}}).encode())


def _as_stream(req: dict, status: int, data: bytes) -> list[bytes] | None:
    """A whole 200 answer's events when the request asked for a stream (None: send the body as it is: an error,
    a malformed body, or a plain request)."""
    if status != 200 or req.get("stream") is not True:
        return None
    try:
        doc = json.loads(data)
        msg = doc["choices"][0]["message"]
        content, finish = msg.get("content") or "", doc["choices"][0].get("finish_reason")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return sse_events(content, finish, doc.get("usage") if wants_usage(req) else None, model="test-model", cid="x", chunk_chars=5)


class Scripted:
    """A loopback HTTP/1.1 server (keep-alive) that answers POSTs from a script of actions:
    ("respond", status, headers, body) | ("plain", status, headers, body) | ("drop",) | ("hang", seconds) |
    ("broken", body): a streamed 200 whose connection breaks after ``body``; then 200 OK forever. A streamed request's 200 answer with a message is sent as server-sent events
    ("plain": as the JSON body, as a server that ignores stream does)."""

    def __init__(self, *actions) -> None:
        self.actions = list(actions)
        self.requests: list[dict] = []
        self.headers: list[dict] = []
        self.connections = 0
        self.server = None

    async def __aenter__(self) -> Scripted:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1"
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                hdrs = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                body = await reader.readexactly(int(hdrs.get("content-length", 0)))
                self.requests.append(json.loads(body) if body else {})
                self.headers.append(hdrs)
                action = self.actions.pop(0) if self.actions else _ok()
                if action[0] == "drop":
                    writer.transport.abort()
                    return
                if action[0] == "hang":
                    await asyncio.sleep(action[1])
                    writer.transport.abort()
                    return
                if action[0] == "broken":
                    data = action[1]
                    writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {len(data) + 1000}\r\n\r\n".encode() + data)
                    await writer.drain()
                    writer.transport.abort()
                    return
                kind, status, extra, data = action
                events = _as_stream(self.requests[-1], status, data) if kind == "respond" else None
                if events is not None:
                    data = b"".join(events)
                ctype = "application/json" if events is None else "text/event-stream"
                out = [f"HTTP/1.1 {status} X", f"Content-Type: {ctype}", f"Content-Length: {len(data)}"]
                out += [f"{k}: {v}" for k, v in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _transport(url: str, model: str = "openai/test-model", price=None, **cfg) -> OpenAIHTTPTransport:
    c = build_config(flags={"task": "t", "model": model, "api_base": url, "timeout": cfg.pop("timeout", 5), **cfg})
    return OpenAIHTTPTransport(c, price=price)


# ---------------------------------------------------------------------------
# the request, the answer
# ---------------------------------------------------------------------------


async def test_request_shape_and_completion(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-shape-key-123456")
    async with Scripted(_ok('{"samples": [1]}', usage={"prompt_tokens": 40, "completion_tokens": 9})) as srv:
        t = _transport(srv.url, price=lambda tin, tout, cached=0: tin * 1e-6 + tout * 2e-6)
        c = await t(_req())
        await t.aclose()
    body, hdrs = srv.requests[0], srv.headers[0]
    assert body["model"] == "test-model" and body["messages"][1]["content"].startswith("Write 2")
    assert body["max_tokens"] == 321 and "max_completion_tokens" not in body  # not api.openai.com
    assert body["temperature"] == 0.7 and body["seed"] == 3
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": False}}
    assert hdrs["authorization"] == "Bearer sk-shape-key-123456" and hdrs["content-type"] == "application/json"
    assert (c.text, c.finish_reason, c.tokens_in, c.tokens_out, c.cached) == ('{"samples": [1]}', "stop", 40, 9, False)
    assert c.cost == pytest.approx(40e-6 + 18e-6)


async def test_local_server_without_key_gets_placeholder_and_official_api_gets_max_completion_tokens(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)
    async with Scripted() as srv:
        t = _transport(srv.url)
        await t(_req(schema=None, seed=None))
        v = _transport(srv.url, model="hosted_vllm/org/model-7b")
        await v(_req())
        await t.aclose()
        await v.aclose()
    assert srv.headers[0]["authorization"] == "Bearer not-needed"
    assert "seed" not in srv.requests[0] and "response_format" not in srv.requests[0]
    assert srv.requests[1]["model"] == "org/model-7b"
    official = OpenAIHTTPTransport(build_config(flags={"task": "t", "model": "openai/gpt-4o-mini"}), price=None)
    assert official.url == "https://api.openai.com/v1/chat/completions" and official.max_tokens_key == "max_completion_tokens"


async def test_truncated_empty_and_missing_usage_map_like_litellm():
    async with Scripted(_ok('{"samp', finish="length"), _ok("", usage=False), ("respond", 200, {}, b'{"choices": [{"message": {"content": null}, "finish_reason": "stop"}]}')) as srv:
        t = _transport(srv.url)
        a, b, c = await t(_req()), await t(_req()), await t(_req())
        await t.aclose()
    assert (a.text, a.finish_reason, a.cost) == ('{"samp', "length", None)  # unpriced model: cost unknown
    assert b.text == "" and b.tokens_in == sum(len(m["content"]) for m in _req().messages) // 4 and b.tokens_out == 0
    assert c.text == "" and c.finish_reason == "stop"


async def test_cached_prompt_tokens_are_priced_at_the_cache_rate():
    seen = []
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": {"cached_tokens": 60}}
    async with Scripted(_ok(usage=usage)) as srv:
        t = _transport(srv.url, price=lambda tin, tout, cached=0: seen.append((tin, tout, cached)) or 1.0)
        await t(_req())
        await t.aclose()
    assert seen == [(100, 10, 60)]


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_errors_are_fatal_one_line_and_never_echo_the_key(monkeypatch, status):
    key = "sk-echoed-SECRET-abcdef123"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    async with Scripted(_err(status, f"Incorrect API key provided: {key}.\nYou can find your key at ...")) as srv:
        t = _transport(srv.url)
        with pytest.raises(ProviderError) as ei:
            await t(_req())
        await t.aclose()
    msg = str(ei.value)
    assert msg.startswith("authentication failed for openai/test-model") and "\n" not in msg and key not in msg


async def test_unknown_model_and_rejected_requests_are_fatal():
    async with Scripted(_err(404, "The model `nope` does not exist"), _err(400, "This model's maximum context length is 8192 tokens"),
                        _err(422, "messages: field required")) as srv:
        t = _transport(srv.url)
        with pytest.raises(ProviderError, match=r"model 'openai/test-model' not found by the provider: HTTP 404: The model `nope` does not exist"):
            await t(_req())
        with pytest.raises(ProviderError, match="the provider rejected the request for openai/test-model: HTTP 400: This model's maximum context"):
            await t(_req())
        with pytest.raises(ProviderError, match="HTTP 422: messages: field required"):
            await t(_req())
        await t.aclose()
    assert t.schema_mode == "json_schema"


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529, 408])
async def test_overload_and_server_errors_are_transient(status):
    async with Scripted(_err(status, "try later")) as srv:
        t = _transport(srv.url)
        with pytest.raises(TransientProviderError) as ei:
            await t(_req())
        await t.aclose()
    assert f"HTTP {status}" in str(ei.value) and ei.value.retry_after is None


@pytest.mark.parametrize("headers,expect", [
    ({"Retry-After": "7"}, 7.0),
    ({"Retry-After": "0.25"}, 0.25),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"Retry-After": "garbage"}, None),
    ("date", 30.0),
])
async def test_retry_after_seconds_and_http_date(headers, expect):
    if headers == "date":
        headers = {"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)}
    async with Scripted(_err(429, "Rate limit reached", headers)) as srv:
        t = _transport(srv.url)
        with pytest.raises(TransientProviderError) as ei:
            await t(_req())
        await t.aclose()
    if expect is None:
        assert ei.value.retry_after is None
    else:
        assert ei.value.retry_after == pytest.approx(expect, abs=1.5)


async def test_response_format_rejected_steps_down_at_once():
    """A rejected response_format is re-sent one step down within the same call (core/llm/structured.py;
    tests/test_negotiation.py has the whole ladder): no TransientProviderError, no backoff."""
    async with Scripted(_err(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.")) as srv:
        t = _transport(srv.url)
        c = await t(_req())
        assert t.schema_mode == "json_object_schema"
        await t.aclose()
    assert srv.requests[0]["response_format"]["type"] == "json_schema"
    assert srv.requests[1]["response_format"] == {"type": "json_object", "schema": SCHEMA}
    assert c.text == '{"samples": []}'


async def test_max_completion_tokens_and_temperature_fallbacks():
    async with Scripted(
        _err(400, "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.", param="max_tokens"),
        _err(400, "Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.", param="temperature"),
    ) as srv:
        t = _transport(srv.url)
        for _ in range(2):
            with pytest.raises(TransientProviderError) as ei:
                await t(_req())
            assert ei.value.retry_after == 0.0
        await t(_req())
        await t.aclose()
    last = srv.requests[-1]
    assert last["max_completion_tokens"] == 321 and "max_tokens" not in last and "temperature" not in last


@pytest.mark.parametrize("action,words", [
    (("respond", 200, {}, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "message": {"role": "assist'), "not JSON"),
    (("respond", 200, {}, b'{"choices": []}'), "no choices"),
    (("respond", 200, {}, b'{"error": {"message": "upstream failed"}}'), "no choices"),
    (("respond", 200, {}, b'[1, 2]'), "no choices"),
    (("drop",), "connection to"),
    (("hang", 3.0), "no answer from"),
])
async def test_malformed_bodies_drops_and_timeouts_are_transient(action, words):
    async with Scripted(action) as srv:
        t = _transport(srv.url, timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(TransientProviderError, match=words):
            await t(_req())
        assert time.monotonic() - t0 < 2.5
        c = await t(_req())  # the transport recovers: the next call succeeds
        await t.aclose()
    assert c.text


async def test_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = _transport(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(TransientProviderError, match="connection to"):
        await t(_req())
    await t.aclose()


async def test_client_retries_through_the_transport_and_counts_like_the_server():
    async with Scripted(_err(503, "overloaded"), ("drop",), _err(429, "slow down", {"Retry-After": "0"}), _ok()) as srv:
        client = LLMClient(_transport(srv.url), concurrency=4, max_retries=5, backoff_base=0.01)
        c = await client.complete(_req())
        await client.transport.aclose()
    assert c.text and client.usage.requests == len(srv.requests) == 4
    assert client.usage.errors == client.usage.retries == 3


# ---------------------------------------------------------------------------
# sessions
# ---------------------------------------------------------------------------


def test_one_pooled_session_per_loop_closed_without_warnings():
    async def calls(t, n):
        await asyncio.gather(*[t(_req(slot=f"0:gen:{i}")) for i in range(n)])

    async def first_loop(t):
        async with Scripted() as srv:
            t.url = srv.url + "/chat/completions"
            await calls(t, 40)
            first = t._session
            await calls(t, 40)
            assert t._session is first  # one session for the loop
            await t.aclose()
            assert first.closed
            return srv.connections

    async def second_loop(t):
        async with Scripted() as srv:
            t.url = srv.url + "/chat/completions"
            await calls(t, 5)
            s = t._session
            t.close()  # the run's synchronous close, called on the loop (Run.close in execute's finally)
            assert s.closed and t._session is None
            await asyncio.sleep(0.05)
            return srv.connections

    gc.collect()  # what earlier tests left behind (e.g. a fault server's sockets) is not this test's
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        t = _transport("http://127.0.0.1:9/v1", concurrency=8)
        conns = asyncio.run(first_loop(t))
        assert asyncio.run(second_loop(t)) >= 1  # a later loop gets a session of its own
        t.close()  # nothing left: a no-op
        del t
        gc.collect()
    assert conns <= 8, "connections are reused (keep-alive), at most one per concurrent call"
    assert not [x for x in w if "nclosed" in str(x.message)], [str(x.message) for x in w]


# ---------------------------------------------------------------------------
# parity with litellm, choice of transport
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["openai/gpt-4o-mini", "openai/fault-model", "hosted_vllm/some/model"])
async def test_same_completion_as_litellm(model):
    cfg = FaultConfig(tokens_in=1200, tokens_out=150, p_truncated=0.0)
    with FaultServer(cfg) as srv:
        c = build_config(flags={"task": "t", "model": model, "api_base": srv.url})
        h, lt = OpenAIHTTPTransport(c), LiteLLMTransport(c)
        for req in (_req(), _req(schema=None, seed=None)):
            a, b = await h(req), await lt(req)
            assert (a.text, a.finish_reason, a.tokens_in, a.tokens_out) == (b.text, b.finish_reason, b.tokens_in, b.tokens_out)
            assert (a.cost is None) == (b.cost is None)
            if a.cost is not None:
                assert a.cost == pytest.approx(b.cost, rel=1e-9)
        srv.config.p_truncated = 1.0
        a, b = await h(_req(slot="x")), await lt(_req(slot="x"))
        assert (a.text, a.finish_reason) == (b.text, b.finish_reason) and a.finish_reason == "length"
        await h.aclose()


def test_transport_choice():
    def cfg(**kw):
        return build_config(flags={"task": "t", **kw})

    assert isinstance(make_local_transport(cfg(model="openai/gpt-4o-mini")), OpenAIHTTPTransport)
    assert use_http(cfg(model="openai/x", api_base="http://127.0.0.1:9/v1"))
    assert use_http(cfg(model="hosted_vllm/x", api_base="http://127.0.0.1:9/v1"))
    assert not use_http(cfg(model="openai/x", transport="litellm"))
    assert isinstance(make_local_transport(cfg(model="openai/x", transport="litellm")), LiteLLMTransport)
    for model in ("anthropic/claude-3-5-haiku-latest", "gemini/gemini-2.0-flash", "local/smollm2", "gpt-4o-mini"):
        assert http_unsupported(cfg(model=model)) and not use_http(cfg(model=model))
    router = {"model_list": [{"model_name": "p", "litellm_params": {"model": "openai/a"}}]}
    assert not use_http(cfg(model="p", router=router))
    assert not use_http(cfg(model="hosted_vllm/x"))  # no api_base: litellm
    # one decision (core/transport_choice.py) names the transport; the factories build what it names
    assert [transport_kind(cfg(model=m)) for m in ("openai/x", "anthropic/claude-3-5-haiku-latest", "local/smollm2")] == ["http", "litellm", "local"]
    assert transport_kind(cfg(model="openai/x", executor="ray")) == "ray" and in_process(cfg(model="openai/x", executor="ray")) == "http"
    assert in_process(cfg(model="p", router=router)) == "litellm"
    assert isinstance(make_transport(cfg(model="openai/x")), OpenAIHTTPTransport)
    assert isinstance(make_transport(cfg(model="local/smollm2")), LiteLLMTransport)
    for bad in ({"model": "anthropic/claude-3-5-haiku-latest"}, {"model": "local/smollm2"}, {"model": "p", "router": router}):
        with pytest.raises(ConfigError) as ei:
            cfg(transport="http", **bad)
        assert "transport http" in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(ConfigError):
        cfg(model="openai/x", transport="carrier-pigeon")


def test_cli_transport_flag_errors_are_one_line(tmp_path):
    r = call_cli("run", "t", "--no-ui", "--model", "anthropic/claude-3-5-haiku-latest", "--transport", "http", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "transport http" in r.stderr, r.stderr
    # preflight still catches a missing key, before any run directory exists
    r = call_cli("run", "t", "--no-ui", "--model", "openai/gpt-4o-mini", "--transport", "http", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "missing API key" in r.stderr and "OPENAI_API_KEY" in r.stderr, r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = call_cli("run", "t", "--no-ui", "--model", "openai/x", "--transport", "http", "--api-base", f"http://127.0.0.1:{port}/v1", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "cannot reach --api-base" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()


def test_resume_may_switch_transport(tmp_path):
    with FaultServer(FaultConfig()) as srv:
        out = tmp_path / "run"
        args = ["--no-ui", "--model", "openai/fault-model", "--api-base", srv.url, "--fields", "question,answer", "--depth", "1", "--pivots", "4"]
        r = call_cli("run", "math word problems", *args, "--size", "6", "--transport", "http", "--out", str(out), env=cli_env())
        assert r.returncode == 0, r.stderr
        n = srv.requests
        assert json.loads((out / "config.json").read_text())["config"]["transport"] == "http"
        # a finished run resumed through litellm: the cache answers everything (same cache keys)
        r = call_cli("run", "--resume", str(out), "--no-ui", "--transport", "litellm", env=cli_env())
        assert r.returncode == 0, r.stderr
        assert srv.requests == n


def test_balance_task_inference_uses_the_chooser_and_closes_its_session():
    from treesynth.core.balance import Data, infer_task

    data = Data(ids=[str(i) for i in range(4)], rows=[{"question": f"What is {i} + {i}?"} for i in range(4)],
                field="question", fields=("question",), digest="d")

    async def scenario():
        async with Scripted(_ok('{"task": "Grade-school arithmetic questions about sums"}')) as srv:
            task = await infer_task(data, {"model": "openai/x", "api_base": srv.url})
            return task, srv.headers

    gc.collect()  # what earlier tests left behind (e.g. a fault server's sockets) is not this test's
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        task, headers = asyncio.run(scenario())
        gc.collect()
    assert task == "Grade-school arithmetic questions about sums"
    assert headers[0]["user-agent"].startswith("treesynth/")  # the native transport made the call
    assert not [x for x in w if "nclosed" in str(x.message)], [str(x.message) for x in w]
