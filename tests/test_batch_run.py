"""``treesynth run --batch`` end to end, as a real process against the fake batch server (which the
official SDK accepts): exact size, leaf calls in batches at batch prices, tree calls interactive, and
kill -9 while batches are pending, resumed with zero requests sent twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import count

import pytest

from tests.batch_server import FakeBatchServer
from tests.conftest import read_jsonl
from tests.fake_provider import Call
from tests.stub_server import answer_for

_counter = count()


def stub_answer(body: dict) -> tuple[int, dict]:
    """The stub server's plausible answers to the engine's calls (by their schemas), as a chat completion."""
    content = json.dumps(answer_for(Call.from_openai(body), next(_counter)))
    return 200, {"id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


def _cmd(server, out, *extra):
    return [sys.executable, "-m", "treesynth.cli", "run", "math word problems", "--fields", "question,answer",
            "--model", "openai/gpt-4o-mini", "--api-base", server.base_url, "--batch", "--batch-linger", "0.3",
            "--depth", "2", "--pivots", "4", "--samples-per-call", "5", "--size", "40", "--no-ui", "--out", str(out), *extra]


def _env():
    return {**os.environ, "OPENAI_API_KEY": "sk-test", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}


@pytest.fixture
def server():
    with FakeBatchServer(stub_answer, api_key="sk-test") as s:
        yield s


@pytest.mark.slow
def test_a_batch_run_reaches_exact_size_at_batch_prices(server, tmp_path):
    out = tmp_path / "run"
    r = subprocess.run(_cmd(server, out), capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 40
    assert server.batches and set(server.submitted.values()) == {1}
    batched = sum(server.submitted.values())
    assert server.interactive > 0 and batched >= 8  # the tree's calls interactive, the leaves' in batches
    state = json.loads((out / "state.json").read_text())
    # gpt-4o-mini: $0.15/$0.60 per M tokens interactive, half in batches; every fake answer is 10 in, 5 out
    expected = server.interactive * (10 * 0.15e-6 + 5 * 0.6e-6) + batched * (10 * 0.075e-6 + 5 * 0.3e-6)
    assert state["usage"]["cost"] == pytest.approx(expected, rel=1e-6)
    events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
    last = [e for e in events if e["event"] == "batches"][-1]
    assert last["finished"] == len(server.batches) and last["answered"] == batched and last["running"] == 0
    assert "batched calls answered" in r.stderr
    assert "sk-test" not in "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl"))


@pytest.mark.slow
def test_kill_9_while_batches_are_pending_then_resume_sends_nothing_twice(server, tmp_path):
    out = tmp_path / "run"
    server.hold.clear()  # batches stay in progress
    proc = subprocess.Popen(_cmd(server, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    try:
        t0 = time.monotonic()
        while not any(b["status"] == "in_progress" for b in list(server.batches.values())):
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
    assert before and len(server.batches) >= 1
    server.hold.set()
    r = subprocess.run([sys.executable, "-m", "treesynth.cli", "run", "--resume", str(out), "--no-ui"],
                       capture_output=True, text=True, env=_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(read_jsonl(out / "dataset.jsonl")) == 40
    assert set(server.submitted.values()) == {1}, "a request was sent to the provider twice"
    assert all(server.submitted[k] == 1 for k in before)


def judging_answer(body: dict) -> tuple[int, dict]:
    """``stub_answer``, and a judge's verdicts (every row passes) when the schema asks for them."""
    rf = body.get("response_format") or {}
    schema = (rf.get("json_schema") or {}).get("schema") or rf.get("schema") or {}
    verdicts = (schema.get("properties") or {}).get("verdicts")
    if not verdicts:
        return stub_answer(body)
    item = verdicts["items"]["properties"]
    n_constraints = item["constraints"]["minItems"] if "constraints" in item else 0
    one = {**({"constraints": [True] * n_constraints} if n_constraints else {}), "fits_task": True, "complete": True, "reason": "ok"}
    content = json.dumps({"verdicts": [one] * verdicts["minItems"]})
    return 200, {"id": "chatcmpl-j", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}


@pytest.mark.slow
def test_a_judge_model_s_calls_go_in_their_own_batches(tmp_path):
    out = tmp_path / "run"
    with FakeBatchServer(judging_answer, api_key="sk-test") as server:
        seen_models: list[str] = []
        answer = server.answer
        server.answer = lambda body: (seen_models.append(body.get("model")), answer(body))[1]
        r = subprocess.run(_cmd(server, out, "--judge", "--judge-model", "openai/gpt-4.1-nano"), capture_output=True, text=True,
                           env=_env(), timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        assert len(read_jsonl(out / "dataset.jsonl")) == 40
        assert set(server.submitted.values()) == {1}
    journal = read_jsonl(out / "batches.jsonl")
    names = {e["batch"] for e in journal if e["op"] == "created"}
    assert any(n.startswith("j") for n in names) and any(n.startswith("b") for n in names)
    assert "gpt-4.1-nano" in seen_models and "gpt-4o-mini" in seen_models
    verdicts = read_jsonl(out / "verdicts.jsonl")
    assert len({v["id"] for v in verdicts}) >= 40 and all(v["judge"] == "openai/gpt-4.1-nano" for v in verdicts)
    last = [e for e in read_jsonl(out / "events.jsonl") if e["event"] == "batches"][-1]
    assert last["finished"] == len(names) and last["running"] == 0
