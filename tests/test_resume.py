"""Kill runs with SIGKILL at several points, resume, and check the result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import call_cli, cli_env, read_jsonl
from tests.stub_server import StubOpenAI

SIZE = 60


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "treesynth.cli", *args], env=cli_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


def _rows_on_disk(out: Path) -> int:
    p = out / "samples.jsonl"
    return p.read_bytes().count(b"\n") if p.exists() else 0


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume(tmp_path):
    out = tmp_path / "run"
    with StubOpenAI(latency=0.03) as stub:
        base = ["--no-ui", "--model", "openai/stub", "--api-base", stub.url]
        args = ["run", "math word problems", *base, "--fields", "question,answer", "--size", str(SIZE), "--depth", "2",
                "--pivots", "4", "--samples-per-call", "2", "--concurrency", "4", "--out", str(out)]
        kills = 0
        # kill points: during tree growth, early synthesis, mid synthesis
        for threshold in (0, 10, 30):
            p = _start(args if kills == 0 else ["run", "--resume", str(out), "--no-ui"])
            deadline = time.time() + 60
            while time.time() < deadline and p.poll() is None:
                if (threshold == 0 and (out / "nodes.jsonl").exists()) or (threshold and _rows_on_disk(out) >= threshold):
                    break
                time.sleep(0.01)
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                kills += 1
        assert kills >= 2, "the run finished before it could be killed"
        # simulate a torn write on top of the kills
        with open(out / "samples.jsonl", "ab") as f:
            f.write(b'{"id": "torn')
        requests_before_final = stub.completions
        r = call_cli("run", "--resume", str(out), "--no-ui")
        assert r.returncode == 0, r.stderr
        assert "torn last line" in r.stderr
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == SIZE
    assert len({r["id"] for r in rows}) == SIZE
    assert len({(r["question"], r["answer"]) for r in rows}) == SIZE
    # no leaf regenerated: each (leaf, slot) generation call contributed rows once
    samples = read_jsonl(out / "samples.jsonl")
    assert len({s["id"] for s in samples}) == len(samples)
    # every leaf got exactly its target
    tree = {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}
    per_leaf = {}
    for s in samples:
        per_leaf[s["leaf_id"]] = per_leaf.get(s["leaf_id"], 0) + 1
    for lid, n in tree.items():
        if n["status"] == "leaf":
            assert per_leaf.get(lid, 0) == n["target"], lid
    assert stub.completions > requests_before_final  # the final session did real work


@pytest.mark.slow
def test_sigterm_stops_gracefully_with_resume_hint(tmp_path):
    out = tmp_path / "run"
    with StubOpenAI(latency=0.05) as stub:
        p = _start(["run", "math", "--no-ui", "--model", "openai/stub", "--api-base", stub.url, "--size", "200",
                    "--depth", "1", "--pivots", "4", "--samples-per-call", "1", "--concurrency", "2", "--out", str(out)])
        deadline = time.time() + 60
        while _rows_on_disk(out) < 5 and time.time() < deadline:
            time.sleep(0.02)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert f"treesynth run --resume {out}" in err
    assert "Traceback" not in err
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "stopped"
    assert json.loads((out / "tree.json").read_text())["nodes"]


@pytest.mark.slow
def test_ctrl_c_stops_the_run_when_stderr_is_a_closed_pipe(tmp_path):
    """`treesynth run ... 2>&1 | tee log`, then Ctrl-C: tee is gone, stderr is a closed pipe. The stop
    must still happen (and the run stay resumable), whatever printing it fails to do."""
    out = tmp_path / "run"
    size = 100
    with StubOpenAI(latency=0.05) as stub:
        base = ["--model", "openai/stub", "--api-base", stub.url]
        reader, writer = os.pipe()
        os.close(reader)  # the reader is gone: every write to stderr fails with EPIPE
        p = subprocess.Popen(
            [sys.executable, "-m", "treesynth.cli", "run", "math", "--no-ui", *base, "--size", str(size), "--depth", "1",
             "--pivots", "4", "--samples-per-call", "1", "--concurrency", "2", "--out", str(out)],
            env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=writer, start_new_session=True,
        )
        os.close(writer)
        try:
            deadline = time.time() + 60
            while _rows_on_disk(out) < 5 and time.time() < deadline and p.poll() is None:
                time.sleep(0.02)
            assert p.poll() is None, "the run ended before it could be interrupted"
            p.send_signal(signal.SIGINT)
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        assert p.returncode == 130, p.returncode
        state = json.loads((out / "state.json").read_text())
        assert state["status"] == "stopped", state
        assert _rows_on_disk(out) < size
        r = call_cli("run", "--resume", str(out), "--no-ui", "--api-base", stub.url)
        assert r.returncode == 0, r.stderr
    assert len(read_jsonl(out / "dataset.jsonl")) == size


def test_invalid_answers_are_not_counted_again_after_resume(tmp_path):
    """A node that failed after an invalid answer is expanded again on resume; its earlier answers come from
    the cache. They were counted (and saved in state.json) when they came: the resumed run must not add them again."""
    import asyncio

    from tests.fakes import ScriptedTransport
    from treesynth.core.config import build_config
    from treesynth.core.errors import TransientProviderError
    from treesynth.core.run import Run

    class ClassifyDown(ScriptedTransport):
        down = True

        async def __call__(self, req):
            if self.down and req.slot.split(":")[1] == "criterion":
                raise TransientProviderError("HTTP 503")
            return await super().__call__(req)

    out = tmp_path / "r"
    cfg = build_config(flags={"task": "t", "fields": "question,answer", "depth": 1, "size": 6, "pivots": 4, "pivots_per_call": 4, "max_retries": 0})
    first = ClassifyDown(overrides={"pivots": ["not json"]})  # the root's first pivots answer is invalid, the second valid
    fin = asyncio.run(Run.create(cfg, out, transport=first).execute())
    assert fin.status == "incomplete"
    assert json.loads((out / "state.json").read_text())["usage"]["invalid"] == 1
    second = ClassifyDown()
    second.down = False
    run = Run.resume(out, transport=second)
    fin = asyncio.run(run.execute())
    assert fin.status == "complete"
    assert second.calls["pivots"] == 0, "the root's pivots answers came from the cache"
    usage = json.loads((out / "state.json").read_text())["usage"]
    assert usage["cache_hits"] >= 2
    assert usage["invalid"] == 1, usage
