"""Conformance against a REAL OpenAI-compatible server: llama-cpp-python's own server
(``python -m llama_cpp.server``) running the shipped SmolLM2 GGUF, on both transports.

One server per session, behind a counting forwarding proxy (tests/counting_proxy.py, it only forwards
and counts ``POST /v1/chat/completions``). Sizes are small: the model runs on 2 CPU threads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import cli_env, gsm8k_file, read_jsonl, run_cli
from tests.counting_proxy import CountingProxy
from tests.llama_server import llama_cpp_server, skip_without_server

pytestmark = pytest.mark.slow

TASK = "GSM8K-style grade-school math word problems"
TRANSPORTS = pytest.mark.parametrize("transport", ["http", "litellm"])


def on(transport: str):
    """One transport for a test whose subject is not the wire (resume, balance, Ray, the TUI): the two take
    turns across these tests, so each meets the server in every kind of run, and the suite runs the slow
    135M model half as often. The wire itself (a streamed call, negotiation, exact size) runs on both."""
    return pytest.mark.parametrize("transport", [transport])
SECRET = "sk-test-secret-1234567890"
LLAMA_CPP_JSON_SCHEMA_ERROR = "Input should be 'text' or 'json_object'"


@dataclass
class Server:
    proc: subprocess.Popen
    port: int
    proxy: CountingProxy

    @property
    def url(self) -> str:
        """What treesynth talks to: the proxy in front of the server."""
        return self.proxy.url

    @property
    def direct(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    skip_without_server()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    with llama_cpp_server(log) as (proc, port):
        proxy = CountingProxy("127.0.0.1", port).start()
        try:
            yield Server(proc, port, proxy)
        finally:
            proxy.stop()


def _config(tmp_path: Path) -> Path:
    """Keys without a flag: a modest answer length (the 135M model rambles) and a generous timeout
    (the server answers one request at a time)."""
    p = tmp_path / "small.yaml"
    p.write_text("max_tokens: 448\ntimeout: 300\nmax_retries: 3\n")
    return p


def _args(server: Server, tmp_path: Path, transport: str, out: Path, *, size: int = 24, depth: int = 2, pivots: int = 6) -> list[str]:
    """``pivots``: the grammar-constrained pivots answer is the slowest call on 2 CPU threads (minutes
    for 6 pivots); the tests past the main run ask for fewer."""
    return ["run", TASK, "--model", "openai/smollm2", "--api-base", server.url, "--transport", transport,
            "--depth", str(depth), "--size", str(size), "--pivots", str(pivots), "--pivots-per-call", "3", "--samples-per-call", "4", "--concurrency", "4",
            "--config", str(_config(tmp_path)), "--no-ui", "--out", str(out)]


def _post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _leaves(out: Path) -> list[dict]:
    return [n for n in json.loads((out / "tree.json").read_text())["nodes"] if n["status"] == "leaf"]


# ---------------------------------------------------------------------------- what the server accepts


def test_which_response_formats_the_server_accepts(llama_server):
    """Documents llama-cpp-python 0.3.36's server: json_schema is refused with HTTP 500 (a pydantic
    validation error), json_object with a schema is grammar-constrained, json_object and none answer."""
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    base = {"model": "smollm2", "messages": [{"role": "user", "content": "What is 2 + 3? Reply in JSON."}], "max_tokens": 24, "temperature": 0}
    status, body = _post(llama_server.direct, {**base, "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}})
    assert status == 500 and LLAMA_CPP_JSON_SCHEMA_ERROR in json.dumps(body)
    status, body = _post(llama_server.direct, {**base, "response_format": {"type": "json_object", "schema": schema}})
    assert status == 200
    assert isinstance(json.loads(body["choices"][0]["message"]["content"])["answer"], int)  # the grammar held
    for rf in ({"type": "json_object"}, None):
        status, body = _post(llama_server.direct, {**base, **({"response_format": rf} if rf else {})})
        assert status == 200 and body["choices"][0]["message"]["content"] is not None


# ---------------------------------------------------------------------------- streamed calls


@TRANSPORTS
async def test_a_streamed_call_longer_than_the_timeout_completes_with_rows(llama_server, transport):
    """Calls are streamed (core/llm/stream.py): with --timeout 1 (the longest silence between tokens), a
    generation call that takes several seconds on 2 CPU threads is never cut off, and its answer parses into
    rows. llama-cpp-python's server sends no usage chunk: the tokens are counted from the text."""
    from treesynth.core.config import build_config
    from treesynth.core.llm import LLMClient, LLMRequest, make_local_transport
    from treesynth.core.llm.lifecycle import close_transport
    from treesynth.core.parsing import parse_answer, parse_samples
    from treesynth.core.prompts import Prompts
    from treesynth.core.schemas import samples_schema

    cfg = build_config(flags={"task": TASK, "fields": "question,answer", "model": "openai/smollm2", "api_base": llama_server.url,
                              "transport": transport, "timeout": 1, "first_token_timeout": 300})
    t = make_local_transport(cfg)
    client = LLMClient(t, max_retries=0)
    path = [{"dimension": "topic", "value": "sharing apples among friends"}]
    streamed = llama_server.proxy.streamed
    t0 = time.monotonic()
    c = await client.complete(LLMRequest(
        Prompts(cfg).generate(path, 2), slot="0:gen:0", schema=samples_schema(cfg.fields, 2, 600), schema_name="samples",
        temperature=0.2, max_tokens=448, seed=7,
    ))
    took = time.monotonic() - t0
    await close_transport(t)
    print(f"\n{transport}: a streamed call took {took:.1f}s with --timeout 1: {c.tokens_out} tokens out, finish {c.finish_reason}")
    assert llama_server.proxy.streamed > streamed  # streamed through, as the server wrote it
    assert took > 1 and (client.usage.errors, client.usage.retries) == (0, 0)
    assert c.finish_reason in ("stop", "length") and c.tokens_in > 0 and c.tokens_out > 0
    if c.finish_reason == "stop":
        rows, _ = parse_samples(parse_answer(c.text), cfg.fields, max_items=2, max_chars=cfg.max_field_chars)
        assert rows and all(r["question"].strip() and r["answer"].strip() for r in rows)


@on("litellm")
def test_a_streamed_run_one_call_at_a_time_reaches_exact_size(llama_server, tmp_path, transport):
    """A whole run streamed (one call at a time: llama-cpp-python's server cuts a stream short when another
    request arrives, and the transports then stop streaming, as the concurrent run below shows) with a 5 s limit
    on silence and none on a call's length: every call streamed, correct rows, no call cut off or retried."""
    out = tmp_path / "run"
    proxy = llama_server.proxy
    before, streamed, refused = proxy.count(), proxy.streamed, proxy.formats.get(("json_schema", 500), 0)
    args = _args(llama_server, tmp_path, transport, out, size=8, depth=1, pivots=4)
    args[args.index("--concurrency") + 1] = "1"
    r = run_cli(*args, "--timeout", "5", "--first-token-timeout", "300", "--json-events", env=cli_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    calls = proxy.count() - before
    refused = proxy.formats.get(("json_schema", 500), 0) - refused  # the structured-output negotiation's: answered with an error
    assert calls > 0 and proxy.streamed - streamed == calls - refused
    events = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    usage = [e for e in events if e["event"] == "usage"][-1]
    assert (usage["errors"], usage["retries"]) == (0, 0), usage
    assert not [e for e in events if e["event"] == "warning" and "streamed answer" in e.get("message", "")]
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 8 and len({r["id"] for r in rows}) == 8 and all(r["text"].strip() for r in rows)


# ---------------------------------------------------------------------------- treesynth run


@TRANSPORTS
def test_run_reaches_exact_size_and_a_finished_rerun_makes_no_request(llama_server, tmp_path, transport):
    """The main run on each transport: http grows two levels, litellm one (its wire is what differs)."""
    out = tmp_path / "run"
    proxy = llama_server.proxy
    before = proxy.count()
    formats_before = dict(proxy.formats)
    size, depth, pivots = (12, 2, 6) if transport == "http" else (12, 1, 4)  # 4 pivots at depth 2: SmolLM2 once never branched
    r = run_cli(*_args(llama_server, tmp_path, transport, out, size=size, depth=depth, pivots=pivots), env=cli_env(OPENAI_API_KEY=SECRET),
                timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == size and len({row["id"] for row in rows}) == size
    calls = proxy.count() - before
    assert calls > 0
    new = {k: v - formats_before.get(k, 0) for k, v in proxy.formats.items() if v - formats_before.get(k, 0)}
    # negotiated: json_schema refused (HTTP 500) at most once per call in flight, then llama.cpp's json_object + schema
    assert new.get(("json_schema", 500), 0) <= 4 and not any(k[0] == "json_schema" and k[1] == 200 for k in new), new
    assert new.get(("json_object_schema", 200), 0) > 0, new
    assert {k[1] for k in new if k[0] != "json_schema"} == {200}, new
    # the key reached the server's port but never the run directory
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f"API key leaked into {f}"
    # the tree branched: by the model's criterion, or (SmolLM2 rarely gives a valid one) a labelled data-driven split
    leaves = _leaves(out)
    assert len(leaves) >= 2, "the tree never branched on SmolLM2"
    assert len({row["leaf_id"] for row in rows}) >= 2

    # a finished run resumed: zero requests to the server, the same rows
    n = proxy.count()
    r2 = run_cli("run", "--resume", str(out), "--no-ui", env=cli_env(), timeout=300)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert proxy.count() == n
    assert len(read_jsonl(out / "dataset.jsonl")) == size


@on("http")
def test_sigkill_mid_run_then_resume_reaches_exact_size(llama_server, tmp_path, transport):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "treesynth.cli", *_args(llama_server, tmp_path, transport, out, depth=1, pivots=3)],
                            env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples = out / "samples.jsonl"
    # generous: on 2 cores the other test worker may be decoding with the embedded model at the same time,
    # and the tree calls (pivots, criterion, assignment) come before the first sample (CI once took >600 s)
    deadline = time.monotonic() + 1500
    try:
        while not (samples.exists() and samples.stat().st_size > 0):
            assert proc.poll() is None, f"the run ended before any sample: {proc.stderr.read().decode()[-2000:]}"
            assert time.monotonic() < deadline, f"no sample within 1500s ({llama_server.proxy.count()} completions so far)"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert len(read_jsonl(samples)) < 24
    r = run_cli("run", "--resume", str(out), "--no-ui", env=cli_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 24 and len({row["id"] for row in rows}) == 24


# ---------------------------------------------------------------------------- balance, Ray, the TUI


@on("litellm")
def test_balance_against_the_server_completes(llama_server, tmp_path, transport):
    data = tmp_path / "gsm8k_slice.jsonl"
    with open(gsm8k_file("test")) as f:
        data.write_text("".join(next(f) for _ in range(16)))
    out = tmp_path / "b"
    before = llama_server.proxy.count()
    r = run_cli("balance", str(data), "--field", "question", "--fields", "question,answer", "--task", TASK,
                "--model", "openai/smollm2", "--api-base", llama_server.url, "--transport", transport, "--depth", "1",
                "--pivots", "3", "--samples-per-call", "4", "--concurrency", "4", "--size", "20", "--route", "embed",
                "--config", str(_config(tmp_path)), "--no-ui", "--out", str(out), env=cli_env(), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert llama_server.proxy.count() > before
    balanced = read_jsonl(out / "balanced.jsonl")
    assert len(balanced) == 20
    assert json.loads((out / "state.json").read_text())["status"] == "complete"


@on("http")
def test_ray_executor_reaches_exact_size(llama_server, tmp_path, transport):
    pytest.importorskip("ray")
    from tests.ray_fakes import token_auth_env

    out = tmp_path / "run"
    before = llama_server.proxy.count()
    r = run_cli(*_args(llama_server, tmp_path, transport, out, size=12, depth=1, pivots=3), "--executor", "ray", "--ray-workers", "1",
                env=cli_env(**token_auth_env()), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(read_jsonl(out / "dataset.jsonl")) == 12
    assert llama_server.proxy.count() > before


@on("litellm")
async def test_tui_run_against_the_server_completes(llama_server, tmp_path, transport):
    from tests.test_tui_support import wait_for
    from treesynth.core.config import build_config
    from treesynth.tui.app import TreesynthApp
    from treesynth.tui.run_screen import RunScreen
    from treesynth.tui.runs import NewRun, Services

    cfg = build_config(flags={"task": TASK, "model": "openai/smollm2", "api_base": llama_server.url, "transport": transport,
                              "fields": "question,answer", "depth": 1, "size": 12, "pivots": 3, "samples_per_call": 4,
                              "concurrency": 4, "max_tokens": 448, "timeout": 300})
    out = tmp_path / "tui"
    before = llama_server.proxy.count()
    app = TreesynthApp(services=Services(runs_root=tmp_path), start=NewRun(cfg, out))  # the product's transport and preflight
    async with app.run_test(size=(100, 32)) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.fin is not None, timeout=600, step=0.2, what="the run to finish")
        assert rs.fin.status == "complete", rs.fin
    assert len(read_jsonl(out / "dataset.jsonl")) == 12
    assert llama_server.proxy.count() > before


def test_tui_in_a_real_terminal_against_the_server(llama_server, tmp_path):
    """The real command, no --no-ui, under tmux: the run screen shows the call in flight while the
    server works, the tree grows, and the summary reports exact size."""
    import shlex
    import shutil

    if shutil.which("tmux") is None:
        pytest.skip("needs tmux")
    from tests.test_tui_terminal import Tmux, _terminal_env, _treesynth

    out = tmp_path / "run"
    done = tmp_path / "exit-code"
    tmux = Tmux("server")
    try:
        cmd = (f"{_treesynth()} run {shlex.quote(TASK)} --model openai/smollm2 --api-base {llama_server.url} --depth 1 "
               f"--size 6 --pivots 6 --pivots-per-call 3 --samples-per-call 3 --concurrency 2 "
               f"--config {shlex.quote(str(_config(tmp_path)))} --out {shlex.quote(str(out))}; "
               f"echo $? > {shlex.quote(str(done))}; sleep 60")
        tmux.start(cmd, _terminal_env(tmp_path), tmp_path)
        tmux.wait_for("openai/smollm2", timeout=90)
        tmux.wait_for("re:in flight \\d", timeout=120)  # the heartbeat while the server answers the first call
        screen = tmux.wait_for("Run complete", timeout=600)
        assert "6/6 in" in screen  # the summary rows the CLI prints too
        assert tmux.quit_and_exit_code(done) == "0"
    finally:
        tmux.kill()
    assert len(read_jsonl(out / "dataset.jsonl")) == 6


# ---------------------------------------------------------------------------- quality gates


def test_gsm8k_gates_and_the_judge_against_the_server(llama_server, tmp_path):
    """The gsm8k preset's validators and semantic dedup, and SmolLM2 behind the server as the judge. The
    135M model is a weak judge (measured: asked for its reason first, through the server it failed every
    row; with the reason last it passes correct rows and fails some planted bad ones), so this checks the
    mechanics against the real server, not the verdicts: every
    stored row has exactly one verdict with an answer per path step, rows in the data passed, a failed row is
    recorded with its reason, the run ends complete or says how many rows could not be made, and the
    summary shows the quality counts."""
    out = tmp_path / "run"
    before = llama_server.proxy.count()
    r = run_cli(*_args(llama_server, tmp_path, "http", out, size=6, depth=1, pivots=3), "--preset", "gsm8k", "--judge",
                env=cli_env(), timeout=1500)
    assert r.returncode in (0, 1, 2), r.stderr[-3000:]
    assert llama_server.proxy.count() > before
    stored = {s["id"]: s for s in read_jsonl(out / "samples.jsonl")}
    ids = [s["id"] for s in read_jsonl(out / "samples.jsonl")]
    assert len(ids) == len(stored)  # no id written twice
    verdicts = read_jsonl(out / "verdicts.jsonl")
    if r.returncode == 2:  # the judge failed nearly every row: the run stops, saying so in one line
        assert "the judge (openai/smollm2) passed" in r.stderr and "Traceback" not in r.stderr
        assert len({v["id"] for v in verdicts}) == len(verdicts) and {v["id"] for v in verdicts} <= set(stored)
        verdicts = [v for v in verdicts if v["id"] in stored]
        stored = {v["id"]: stored[v["id"]] for v in verdicts}  # rows stored after the last verdicts wait for a resume
    assert verdicts and sorted(v["id"] for v in verdicts) == sorted(stored)  # every stored row judged, once
    assert all(v["judge"] == "openai/smollm2" and len(v["constraints"]) == len(stored[v["id"]]["path"]) for v in verdicts)
    # the server enforces the judge's schema (json_object with the schema): every verdict is the judge's own
    # answer, none the stand-in for an answer that never parsed (a key left out of "required" once did that)
    assert not [v for v in verdicts if v["reason"].startswith("the judge gave no valid verdict")]
    failed = {v["id"] for v in verdicts if not v["pass"]}
    rejected = read_jsonl(out / "rejected.jsonl") if (out / "rejected.jsonl").exists() else []
    assert {x["id"] for x in rejected if x["gate"] == "judge"} == failed
    if r.returncode == 2:
        return
    assert "quality:  judged" in r.stderr
    if r.returncode == 0:
        rows = read_jsonl(out / "dataset.jsonl")
        assert len(rows) == 6 and all(row["judge"]["pass"] for row in rows)
    else:
        assert "samples could not be generated" in r.stderr


def test_baseline_report_and_chat_export_against_the_server(llama_server, tmp_path):
    """run --baseline against the real server: the baseline has the run's size, no paths and its own calls;
    the report compares the two with intervals; the chat export loads into datasets."""
    import datasets

    out = tmp_path / "run"
    before = llama_server.proxy.count()
    r = run_cli(*_args(llama_server, tmp_path, "http", out, size=4, depth=1, pivots=3), "--fields", "question,answer", "--baseline",
                env=cli_env(), timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    rows, base = read_jsonl(out / "dataset.jsonl"), read_jsonl(out / "baseline" / "dataset.jsonl")
    # (with 3 pivots the run's root may honestly stay a leaf: fewer than 4 distinct pivots to split)
    assert len(rows) == len(base) == 4 and all(b["path"] == [] and b["leaf_id"] == "0" for b in base)
    assert len(json.loads((out / "baseline" / "tree.json").read_text())["nodes"]) == 1
    base_calls = json.loads((out / "baseline" / "state.json").read_text())["usage"]["requests"]
    run_calls = json.loads((out / "state.json").read_text())["usage"]["requests"]
    assert base_calls >= 1 and run_calls >= 1 and llama_server.proxy.count() - before >= base_calls
    rep = run_cli("report", str(out), env=cli_env(), timeout=600)
    assert rep.returncode == 0, rep.stderr[-2000:]
    ab = json.loads((out / "metrics.json").read_text())["ab"]
    mc = next(x for x in ab["rows"] if x["key"] == "mean_cosine_similarity")
    assert mc["ci95"][0] <= mc["difference"] <= mc["ci95"][1] and ab["sentence"].startswith("By mean cosine similarity")
    assert {c["key"]: c["baseline"] for c in ab["cost"]}["requests"] == base_calls
    ex = run_cli("export", str(out), "--format", "chat", env=cli_env(), timeout=120)
    assert ex.returncode == 0, ex.stderr
    ds = datasets.load_dataset("json", data_files=str(out / "export.chat.jsonl"), split="train")
    assert len(ds) == 4 and [m["role"] for m in ds[0]["messages"]] == ["user", "assistant"]
    assert ds[0]["messages"][0]["content"] == rows[0]["question"] and ds[0]["messages"][1]["content"] == rows[0]["answer"]


# ---------------------------------------------------------------------------- the Python API


def test_the_python_api_against_the_server(llama_server, tmp_path):
    """The README's five lines, pointed at the server (a script of its own: its stdout is the tree), and the
    same call inside a running event loop, as in a notebook."""
    script = (
        "import treesynth\n"
        f"ds = treesynth.generate('GSM8K-style grade-school math word problems', preset='gsm8k', size=8, depth=1, small_model=True,"
        f" model='openai/smollm2', api_base={llama_server.url!r}, out='api-run', progress=False)\n"
        "print(ds.tree)\n"
        "import asyncio\n"
        "async def in_a_loop():\n"
        "    return treesynth.resume('api-run', progress=False)\n"
        "print(len(asyncio.run(in_a_loop())), 'rows again')\n"
    )
    before = llama_server.proxy.count()
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=cli_env(OPENAI_API_KEY=SECRET),
                       timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("(root)") and "8 rows again" in r.stdout
    rows = read_jsonl(tmp_path / "api-run" / "dataset.jsonl")
    assert len(rows) == 8 and llama_server.proxy.count() > before
    assert len(_leaves(tmp_path / "api-run")) >= 2
