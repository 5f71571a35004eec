"""Streamed calls and idle timeouts (core/llm/stream.py, core/llm/transports/idle.py and sse.py, both OpenAI-compatible
transports): a slow server that keeps writing is never cut off, a stalled one is noticed within the gap and asked
again, an endpoint that cannot stream is negotiated down once, and a call cut off midway is counted."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from tests.faultserver import FaultConfig, FaultServer
from tests.test_openai_http import Scripted, _err, _ok
from treesynth.core.config import build_config
from treesynth.core.errors import ConfigError, ProviderTimeout, TransientProviderError
from treesynth.core.llm import LiteLLMTransport, LLMClient, LLMRequest
from treesynth.core.llm.stream import STREAM_OPTIONS_REFUSED, STREAM_REFUSED, StreamedAnswer, refusal
from treesynth.core.llm.transports.idle import FIRST, GAP, IdleTimeout
from treesynth.core.llm.transports.openai_http import OpenAIHTTPTransport
from treesynth.core.llm.transports.sse import SSEReader

# litellm (its import alone takes seconds) in the full suite; the quick loop covers the native transport
TRANSPORTS = pytest.mark.parametrize("kind", ["http", pytest.param("litellm", marks=pytest.mark.slow)])
SCHEMA = {"type": "object", "properties": {"samples": {"type": "array", "minItems": 2, "items": {"type": "object", "properties": {"text": {}}}}}}


def _req(i: int = 0) -> LLMRequest:
    return LLMRequest(messages=[{"role": "system", "content": "You write data."}, {"role": "user", "content": f"Write 2 new samples ({i})."}],
                      slot=f"0:gen:{i}", schema=SCHEMA, seed=3, max_tokens=300)


def _transport(kind: str, url: str, model: str = "openai/fault-model", **flags):
    cfg = build_config(flags={"task": "t", "model": model, "api_base": url, "transport": kind, **flags})
    return OpenAIHTTPTransport(cfg) if kind == "http" else LiteLLMTransport(cfg)


async def _close(t) -> None:
    if hasattr(t, "aclose"):
        await t.aclose()


# ---------------------------------------------------------------------------
# the pieces: server-sent events, the idle timer, a streamed answer, a refusal
# ---------------------------------------------------------------------------


def test_sse_reader_gives_each_events_data_however_the_bytes_are_split():
    stream = (b": ping\r\n\r\ndata: {\"a\": 1}\r\n\r\nevent: x\nid: 3\ndata:{\"b\":\ndata: 2}\n\nretry: 5\n\n"
              b"data: [DONE]\n\n")
    want = [b'{"a": 1}', b'{"b":\n2}', b"[DONE]"]
    for size in (1, 2, 3, 7, len(stream)):
        r = SSEReader()
        got = [d for i in range(0, len(stream), size) for d in r.feed(stream[i:i + size])] + r.close()
        assert got == want, size
    r = SSEReader()
    assert r.feed(b"data: last\r") == [] and r.close() == [b"last"]  # an event the server did not end: given at the end


async def test_idle_timeout_bounds_the_first_wait_and_each_gap_not_the_whole():
    t0 = time.monotonic()
    with IdleTimeout(0.5, 0.15) as w:  # 10 gaps of 0.08 s: 0.8 s in all, longer than either limit
        await asyncio.sleep(0.3)  # the first wait may be longer than a gap
        for _ in range(10):
            w.progress()
            await asyncio.sleep(0.08)
    assert w.expired is None and time.monotonic() - t0 > 0.8
    with pytest.raises(TimeoutError):
        with IdleTimeout(0.2, 5) as w:
            await asyncio.sleep(2)
    assert w.expired == FIRST
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        with IdleTimeout(5, 0.2) as w:
            w.progress()
            await asyncio.sleep(2)
    assert w.expired == GAP and 0.2 <= time.monotonic() - t0 < 0.5


async def test_idle_timeout_never_turns_a_cancellation_from_outside_into_a_timeout():
    async def guarded():
        with IdleTimeout(0.2, 0.2):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(guarded())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # and the block's own timer is gone: nothing fires into the task that carries on
    with IdleTimeout(0.1, 0.1):
        pass
    await asyncio.sleep(0.2)


def test_streamed_answer_adds_up_to_the_same_completion_as_a_body():
    a = StreamedAnswer()
    for doc in ({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, {"choices": [{"delta": {"content": '{"x": '}}]},
                {"choices": [{"delta": {"content": "1}"}, "finish_reason": None}]}, {"choices": [{"delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": {"prompt_tokens": 40, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 10}}}):
        a.add(doc)
    seen = []
    c = a.completion(_req(), lambda tin, tout, cached=0: seen.append((tin, tout, cached)) or 1.5)
    assert (c.text, c.finish_reason, c.tokens_in, c.tokens_out, c.cost) == ('{"x": 1}', "stop", 40, 9, 1.5) and seen == [(40, 9, 10)]
    cut = StreamedAnswer()
    assert cut.partial(_req(), None) is None  # nothing arrived: nothing to count
    cut.add({"choices": [{"delta": {"content": "x" * 40}}]})
    p = cut.partial(_req(), lambda tin, tout, cached=0: 0.0)
    assert (p.tokens_out, p.tokens_in, p.finish_reason) == (10, sum(len(m["content"]) for m in _req().messages) // 4, None)
    with pytest.raises(TransientProviderError, match="the stream reported an error: engine died"):
        StreamedAnswer().add({"error": {"message": "engine\ndied"}})


def test_only_a_request_error_naming_stream_is_a_refusal():
    assert refusal(400, "Unrecognized request argument supplied: stream_options") == STREAM_OPTIONS_REFUSED
    assert refusal(422, "x", param="stream_options") == STREAM_OPTIONS_REFUSED
    assert refusal(400, "'stream' is not supported") == STREAM_REFUSED
    assert refusal(400, "Streaming is not supported for this model") == STREAM_REFUSED
    assert refusal(422, "bad", param="stream") == STREAM_REFUSED
    assert refusal(500, "stream broke") is None  # the server's state, not a refusal
    assert refusal(400, "upstream model rejected the prompt") is None and refusal(400, "maximum context length") is None


def test_first_token_timeout_defaults_to_three_gaps_and_is_checked():
    cfg = build_config(flags={"task": "t"})
    assert (cfg.timeout, cfg.first_token_timeout, cfg.first_token_s) == (120.0, None, 360.0)
    assert build_config(flags={"task": "t", "timeout": 2}).first_token_s == 6.0
    assert build_config(flags={"task": "t", "timeout": 2, "first_token_timeout": 30}).first_token_s == 30.0
    with pytest.raises(ConfigError, match=r"first_token_timeout \(5s\) must not be shorter than timeout \(10s\)"):
        build_config(flags={"task": "t", "timeout": 10, "first_token_timeout": 5})
    for bad in (0, -1, 10 * 3600 + 1e6):
        with pytest.raises(ConfigError, match="first_token_timeout"):
            build_config(flags={"task": "t", "first_token_timeout": bad})


def test_the_flag_sets_the_key():
    from treesynth.cli.parser import build_parser, run_flags

    args = build_parser().parse_args(["run", "t", "--timeout", "20", "--first-token-timeout", "90"])
    flags = run_flags(args)
    assert (flags["timeout"], flags["first_token_timeout"]) == (20.0, 90.0)
    assert build_config(flags=flags).first_token_s == 90.0


# ---------------------------------------------------------------------------
# against the fault server, both transports
# ---------------------------------------------------------------------------


@TRANSPORTS
async def test_a_stream_is_asked_with_usage_and_gives_the_servers_tokens_and_price(kind):
    with FaultServer(FaultConfig(tokens_in=1200, tokens_out=150, chunk_chars=7, record=True)) as srv:
        t = _transport(kind, srv.url, model="openai/gpt-4o-mini")
        c = await t(_req())
        await _close(t)
        assert srv.stats.streamed == 1 and srv.stats.plain == 0
    assert (c.tokens_in, c.tokens_out, c.finish_reason) == (1200, 150, "stop") and c.text.startswith('{"samples": [')
    assert c.cost == pytest.approx(1200 * 0.15e-6 + 150 * 0.6e-6)


@TRANSPORTS
async def test_a_server_without_usage_chunks_has_its_tokens_counted(kind):
    with FaultServer(FaultConfig(stream_usage=False, chunk_chars=5)) as srv:
        t = _transport(kind, srv.url)
        c = await t(_req())
        await _close(t)
    # the http transport estimates characters / 4, as for a body without usage; litellm counts with its tokenizer
    assert c.tokens_in > 0 and c.tokens_out > 0 and c.text.endswith("}")
    if kind == "http":
        assert c.tokens_out == len(c.text) // 4


@TRANSPORTS
async def test_a_slow_server_that_keeps_writing_is_never_cut_off(kind):
    # about 30 chunks 0.1 s apart: 3 s in all, six times the 0.5 s limit on silence
    with FaultServer(FaultConfig(trickle=0.1, chunk_chars=8)) as srv:
        t = _transport(kind, srv.url, timeout=0.5)
        client = LLMClient(t, max_retries=0)
        t0 = time.monotonic()
        c = await client.complete(_req())
        took = time.monotonic() - t0
        await _close(t)
    print(f"\n{kind}: a trickling call took {took:.2f}s with --timeout 0.5")
    assert took > 3 * 0.5 and c.finish_reason == "stop" and c.text.endswith("}")
    assert (client.usage.requests, client.usage.errors, client.usage.retries) == (1, 0, 0)


@TRANSPORTS
async def test_a_stalled_stream_is_noticed_within_the_gap_asked_again_and_counted(kind):
    # the first answer sends its role chunk and one of 64 characters, then goes silent; the second is whole
    with FaultServer(FaultConfig(stall=1, stall_chunks=2, record=True)) as srv:
        t = _transport(kind, srv.url, model="openai/gpt-4o-mini", timeout=0.5, first_token_timeout=10)
        client = LLMClient(t, max_retries=2, backoff_base=0.01, backoff_cap=0.01)
        t0 = time.monotonic()
        c = await client.complete(_req())
        took = time.monotonic() - t0
        await _close(t)
        for _ in range(100):
            if srv.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        stalled, whole = srv.records
        noticed = stalled.t_done - stalled.t_recv  # the server saw the client hang up
    print(f"\n{kind}: a stall noticed after {noticed:.2f}s with --timeout 0.5; the call took {took:.2f}s")
    assert srv.stats.outcomes["stall"] == 1 and whole.outcome == "ok"
    assert 0.5 <= noticed < 0.5 + 0.5, noticed  # the gap, plus a small margin (not the 10 s first-token limit)
    assert took < 2.0 and c.finish_reason == "stop"
    u = client.usage
    assert (u.requests, u.errors, u.retries) == (2, 1, 1)
    # the cut-off call is counted: its prompt (estimated) and the 64 characters it received (16 tokens)
    prompt = sum(len(m["content"]) for m in _req().messages) // 4
    if kind == "http":
        assert (u.tokens_in, u.tokens_out) == (c.tokens_in + prompt, c.tokens_out + 16)
    else:
        assert u.tokens_in > c.tokens_in and u.tokens_out > c.tokens_out
    assert u.cost > c.cost > 0 and u.cost_known


@TRANSPORTS
async def test_a_stall_raises_an_unreachable_timeout_with_what_arrived(kind):
    with FaultServer(FaultConfig(stall=1, stall_chunks=3, chunk_chars=10)) as srv:
        t = _transport(kind, srv.url, timeout=0.3)
        with pytest.raises(ProviderTimeout, match="stalled") as ei:
            await t(_req())
        await _close(t)
    e = ei.value
    # the role chunk and two of 10 characters arrived: 20 characters, 5 tokens
    assert e.unreachable and e.partial is not None and e.partial.text == '{"samples": [{"text"' and e.partial.tokens_out == 5


@TRANSPORTS
async def test_a_slow_first_token_has_its_own_longer_limit(kind):
    with FaultServer(FaultConfig(latency=0.8)) as srv:  # 0.8 s before anything: longer than the gap, within the first token's limit
        t = _transport(kind, srv.url, timeout=0.3, first_token_timeout=3)
        c = await t(_req())
        assert c.finish_reason == "stop"
        srv.config.latency, srv.config.p_hang, srv.config.hang_s = 0.0, 1.0, 10.0
        t0 = time.monotonic()
        with pytest.raises(ProviderTimeout, match="within 3s") as ei:
            await t(_req(1))
        took = time.monotonic() - t0
        await _close(t)
    assert ei.value.unreachable and ei.value.partial is None and 3.0 <= took < 4.0


@TRANSPORTS
async def test_an_endpoint_that_rejects_stream_is_negotiated_down_once(kind):
    with FaultServer(FaultConfig(no_stream=True, tokens_in=100, tokens_out=20)) as srv:
        t = _transport(kind, srv.url, timeout=0.5, first_token_timeout=5)
        client = LLMClient(t, max_retries=0)  # the step down needs no retry
        a = await client.complete(_req(0))
        b = await client.complete(_req(1))
        await _close(t)
        o = srv.stats.outcomes
        assert (o["no_stream"], srv.stats.streamed, srv.stats.plain) == (1, 0, 2)
    assert t.stream is False and (a.tokens_out, b.tokens_out) == (20, 20)
    assert (client.usage.requests, client.usage.errors, client.usage.retries) == (2, 0, 0)


@TRANSPORTS
async def test_an_endpoint_that_rejects_stream_options_streams_without_them(kind):
    async with Scripted(_err(400, "Unrecognized request argument supplied: stream_options", param="stream_options"), _ok(usage=False)) as srv:
        t = _transport(kind, srv.url)
        c = await t(_req())
        await _close(t)
    first, second = srv.requests
    assert first["stream"] is True and first["stream_options"] == {"include_usage": True}
    assert second["stream"] is True and "stream_options" not in second
    assert t.stream and not t.stream_usage and c.text == '{"samples": []}' and c.tokens_out > 0


@TRANSPORTS
async def test_a_stream_cut_short_without_a_finish_reason_is_asked_again_plainly(kind):
    """llama-cpp-python's server ends a stream with [DONE] and no finish reason when another request arrives
    (its interrupt_requests): such an endpoint is asked plainly from then on, the cut call again (a transient
    error: what it received is counted)."""
    with FaultServer(FaultConfig(cut_short=1, stall_chunks=2, tokens_in=100, tokens_out=20)) as srv:
        t = _transport(kind, srv.url)
        client = LLMClient(t, max_retries=1, backoff_base=0.01)
        c = await client.complete(_req())
        await client.complete(_req(1))
        await _close(t)
        assert (srv.stats.outcomes["cut_short"], srv.stats.streamed, srv.stats.plain) == (1, 1, 2)
    assert t.stream is False and len(t.notices) == 1 and "--interrupt_requests False" in t.notices[0]
    assert c.finish_reason == "stop"
    u = client.usage
    assert (u.requests, u.errors, u.retries) == (3, 1, 1)
    assert u.tokens_out == 20 + 20 + 16  # the cut call's 64 characters are counted


async def test_a_connection_broken_after_the_finish_reason_keeps_the_answer_and_one_broken_before_counts_it():
    from tests.sse_answer import sse_events

    events = sse_events('{"samples": []}', "stop", None, model="m", cid="x", chunk_chars=4)
    whole, cut = b"".join(events[:-1]), b"".join(events[:3])  # the finish reason without [DONE]; two chunks of content
    async with Scripted(("broken", whole), ("broken", cut)) as srv:
        t = _transport("http", srv.url)
        c = await t(_req())
        with pytest.raises(TransientProviderError, match="connection to") as ei:
            await t(_req(1))
        await _close(t)
    assert (c.text, c.finish_reason) == ('{"samples": []}', "stop") and t.stream
    assert ei.value.unreachable and ei.value.partial.text == '{"sample' and ei.value.partial.tokens_out == 2


async def test_a_server_that_ignores_stream_is_read_as_one_body():
    async with Scripted(("plain",) + _ok('{"samples": [1]}')[1:]) as srv:
        t = _transport("http", srv.url)
        c = await t(_req())
        await _close(t)
    assert srv.requests[0]["stream"] is True
    assert (c.text, c.tokens_in, c.tokens_out) == ('{"samples": [1]}', 40, 9)


async def test_the_batch_api_lines_are_never_streamed():
    t = _transport("http", "http://127.0.0.1:9/v1")
    body, _ = t.body(_req())
    assert "stream" not in body and "stream_options" not in body


@pytest.mark.parametrize("status,unreachable", [(502, True), (503, True), (504, True), (500, False), (429, False)])
async def test_gateway_and_unavailable_answers_are_marked_unreachable(status, unreachable):
    async with Scripted(_err(status, "try later")) as srv:
        t = _transport("http", srv.url)
        with pytest.raises(TransientProviderError) as ei:
            await t(_req())
        await _close(t)
    assert ei.value.unreachable is unreachable


async def test_connection_refused_and_dropped_streams_are_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = _transport("http", f"http://127.0.0.1:{port}/v1")
    with pytest.raises(TransientProviderError, match="connection to") as ei:
        await t(_req())
    await _close(t)
    assert ei.value.unreachable and ei.value.partial is None
    with FaultServer(FaultConfig(p_drop=1.0)) as srv:
        t = _transport("http", srv.url)
        with pytest.raises(TransientProviderError) as ei:
            await t(_req())
        await _close(t)
    assert ei.value.unreachable


async def test_ray_workers_carry_a_timeouts_kind_marks_and_what_arrived():
    """Errors cross from a Ray worker to the driver as values (core/llm/transports/ray.py): a stall stays a
    ProviderTimeout, unreachable, with the partial answer the client counts. No Ray needed: the worker's
    method and the driver's reading of its answer, joined by a stand-in actor."""
    import itertools

    from treesynth.core.llm import Completion
    from treesynth.core.llm.transports.ray import RayTransport, _Worker

    partial = Completion('{"samp', None, 30, 2, 0.001)

    async def stalls(req):
        raise ProviderTimeout("the answer stalled", unreachable=True, partial=partial)

    async def busy(req):
        raise TransientProviderError("HTTP 429", retry_after=2.0)

    for transport, kind in ((stalls, ProviderTimeout), (busy, TransientProviderError)):
        worker = _Worker(build_config(flags={"task": "t", "model": "openai/x"}).model_dump(mode="json"), lambda cfg, t=transport: t, None)
        out = await worker.call(_req())

        class Actor:
            class call:  # noqa: N801 - an actor method's shape: actor.call.remote(req)
                @staticmethod
                def remote(req, out=out):
                    f = asyncio.get_running_loop().create_future()
                    f.set_result(out)
                    return f

        driver = object.__new__(RayTransport)
        driver._ray, driver._actors, driver._load, driver._rr = None, [Actor], [0], itertools.cycle([0])
        with pytest.raises(TransientProviderError) as ei:
            await driver(_req())
        e = ei.value
        assert type(e) is kind
        if kind is ProviderTimeout:
            assert e.unreachable and e.partial == partial and str(e) == "the answer stalled"
        else:
            assert not e.unreachable and e.partial is None and e.retry_after == 2.0


@pytest.mark.parametrize("cls", ["InternalServerError", "APIConnectionError"])
def test_litellms_connection_errors_are_unreachable_whatever_class_they_come_as(cls):
    """After a server is killed mid-stream, litellm reports the next calls' refused connections as
    InternalServerError (status 500, "OpenAIException - Connection error."): the endpoint, not the request."""
    from treesynth.core.llm.litellm_loader import load_litellm

    litellm = load_litellm()
    t = _transport("litellm", "http://127.0.0.1:9/v1")
    kw = {"message": "OpenAIException - Connection error.", "llm_provider": "openai", "model": "fault-model"}
    e = getattr(litellm, cls)(**kw)
    with pytest.raises(TransientProviderError) as ei:
        t._step_down_or_raise(litellm, e, None, True, True, None)
    assert ei.value.unreachable
