"""End to end through the CLI over real HTTP (litellm, or the native http transport) to a loopback OpenAI-compatible stub."""

from __future__ import annotations

import json
import socket
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, read_jsonl
from treesynth.core.text import normalise

TASK = "GSM8K-style math word problems"
# litellm (its import alone takes seconds) in the full suite; the quick loop covers the native transport
TRANSPORTS = pytest.mark.parametrize("transport", ["http", pytest.param("litellm", marks=pytest.mark.slow)])


def _run(stub, out: Path, *extra: str, env=None, transport: str = "auto"):
    return call_cli(
        "run", TASK, "--no-ui", "--model", "openai/stub-model", "--api-base", stub.url, "--fields", "question,answer",
        "--transport", transport, "--out", str(out), *extra, env=env,
    )


@TRANSPORTS
def test_run_over_http_produces_exact_size_and_valid_tree(stub, tmp_path, transport):
    out = tmp_path / "run"
    secret = "sk-test-SECRET-0123456789"
    r = _run(stub, out, "--size", "37", "--depth", "2", "--pivots", "6", "--samples-per-call", "4", "--budget", "5", "--price-in", "0.1", "--price-out", "0.4",
             env=cli_env(OPENAI_API_KEY=secret), transport=transport)
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 37
    assert len({row["id"] for row in rows}) == 37
    for row in rows:
        assert row["path"] and all(set(p) == {"dimension", "value"} for p in row["path"])
        assert row["question"] and row["answer"]
    tree = json.loads((out / "tree.json").read_text())
    nodes = {n["id"]: n for n in tree["nodes"]}
    expanded = [n for n in nodes.values() if n["status"] == "expanded"]
    assert expanded, "the tree never split"
    for n in expanded:
        values = [nodes[c]["value"] for c in n["children"]]
        assert len({normalise(v) for v in values}) == len(values), "sibling values must be distinct"
        assigned = Counter(i for v in n["split_values"] for i in v["pivots"])
        assert sorted(assigned) == list(range(len(n["pivots"]))), "every pivot classified"
        assert set(assigned.values()) == {1}, "no pivot classified twice"
    # the key went over HTTP but never to disk
    assert f"Bearer {secret}" in stub.seen_auth
    assert all(a.startswith("treesynth/") == (transport == "http") for a in stub.seen_agents), stub.seen_agents
    for f in out.rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f"API key leaked into {f.name}"
    assert (out / "dataset.parquet").exists()

    # re-running the finished run makes zero LLM calls
    before = stub.requests
    r2 = call_cli("run", "--resume", str(out), "--no-ui")
    assert r2.returncode == 0, r2.stderr
    assert stub.requests == before
    assert len(read_jsonl(out / "dataset.jsonl")) == 37

    # `treesynth tree` shows the tree with counts
    t = call_cli("tree", str(out))
    assert t.returncode == 0 and "split by" in t.stdout and "37 samples" in t.stdout


@TRANSPORTS
@pytest.mark.slow
def test_rate_limits_are_retried_honouring_retry_after(stub, tmp_path, transport):
    stub.fail_429 = 3
    stub.fail_500 = 2
    out = tmp_path / "run"
    r = _run(stub, out, "--size", "8", "--depth", "1", "--pivots", "4", "--json-events", transport=transport)
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    usage = [e for e in events if e["event"] == "usage"][-1]
    assert usage["retries"] == 5 and usage["errors"] == 5
    assert usage["requests"] == stub.requests
    assert events[-1]["event"] == "run_finished" and events[-1]["status"] == "complete"
    assert len(read_jsonl(out / "dataset.jsonl")) == 8


@TRANSPORTS
def test_auth_failure_fails_fast_with_one_line(stub, tmp_path, transport):
    stub.auth_fail = True
    r = _run(stub, tmp_path / "run", "--size", "5", "--depth", "1", env=cli_env(OPENAI_API_KEY="sk-wrong"), transport=transport)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "authentication failed" in r.stderr.strip().splitlines()[-1]
    assert stub.requests == 1, "no retries on authentication errors"


def test_unreachable_api_base(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = call_cli("run", TASK, "--no-ui", "--model", "openai/x", "--api-base", f"http://127.0.0.1:{port}/v1", "--out", str(tmp_path / "r"))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "cannot reach --api-base" in r.stderr
    assert not (tmp_path / "r").exists()


def test_router_spreads_load_over_deployments(tmp_path):
    from tests.stub_server import StubOpenAI

    with StubOpenAI() as a, StubOpenAI() as b:
        cfg = tmp_path / "pool.yaml"
        cfg.write_text(
            "task: math word problems\nmodel: pool\nfields: [question, answer]\nsize: 24\ndepth: 1\npivots: 4\n"
            "samples_per_call: 1\nrouter:\n  model_list:\n"
            f"    - model_name: pool\n      litellm_params: {{model: openai/stub-a, api_base: '{a.url}', api_key: sk-literal-secret-in-config}}\n"
            f"    - model_name: pool\n      litellm_params: {{model: openai/stub-b, api_base: '{b.url}', api_key: os.environ/STUB_KEY}}\n"
        )
        out = tmp_path / "run"
        r = call_cli("run", "--config", str(cfg), "--no-ui", "--out", str(out), env=cli_env(STUB_KEY="sk-env-secret"))
        assert r.returncode == 0, r.stderr
        assert a.completions > 0 and b.completions > 0
    assert len(read_jsonl(out / "dataset.jsonl")) == 24
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert b"sk-literal-secret-in-config" not in data and b"sk-env-secret" not in data, f.name
    saved = json.loads((out / "config.json").read_text())["config"]["router"]["model_list"]
    assert saved[0]["litellm_params"]["api_key"] == "<redacted>"
    assert saved[1]["litellm_params"]["api_key"] == "os.environ/STUB_KEY"
