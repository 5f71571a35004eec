"""The Python API (``import treesynth``): blocking calls in a script and inside a running event loop,
the async ``Run`` with its typed events and controls, typed errors from the preflight, read-only
``open``, ``balance``, and the typing of the public surface (mypy strict)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import treesynth
from tests.conftest import read_jsonl
from tests.fakes import ScriptedTransport, hash_embedder
from tests.stub_server import StubOpenAI

ROOT = Path(__file__).resolve().parents[1]


def _stub_options(stub: StubOpenAI) -> dict:
    return {"model": "openai/stub-model", "api_base": stub.url, "fields": ["question", "answer"], "depth": 2}


def test_import_treesynth_is_the_documented_front_door():
    for name in ("generate", "resume", "balance", "report", "open", "config", "Run", "RunConfig", "Dataset", "Mode",
                 "register_mode", "errors", "events"):
        assert hasattr(treesynth, name), name
    assert set(dir(treesynth)) >= {"generate", "Run", "Dataset"}
    assert (ROOT / "api" / "py.typed").is_file()
    with pytest.raises(AttributeError):
        treesynth.no_such_name  # noqa: B018


def test_import_treesynth_loads_no_engine_until_asked():
    code = "import sys, treesynth; print(sorted(m for m in sys.modules if m.startswith(('treesynth.core.engine', 'litellm', 'polars', 'treesynth.lib'))))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_generate_makes_exactly_size_rows_against_an_openai_compatible_server(tmp_path, stub):
    ds = treesynth.generate("math word problems", size=12, out=tmp_path / "r", progress=False, **_stub_options(stub))
    assert isinstance(ds, treesynth.Dataset) and ds.complete and ds.run_dir == tmp_path / "r"
    rows = list(ds)
    assert len(rows) == len(ds) == 12 and all(r["question"] and r["answer"] and r["path"] for r in rows)
    assert rows == read_jsonl(tmp_path / "r" / "dataset.jsonl")
    tree = str(ds.tree)
    assert tree.startswith("(root)") and "split by" in tree and ds.tree.nodes > 1 and len(ds.tree.leaves) >= 2
    df = ds.to_polars()
    assert df.height == 12 and {"question", "answer"} <= set(df.columns)
    assert ds.head(3) == rows[:3]
    # a finished run carried on makes no new request
    before = stub.requests
    again = treesynth.resume(tmp_path / "r", progress=False)
    assert again.complete and len(again) == 12 and stub.requests == before


async def test_generate_works_inside_a_running_event_loop(tmp_path, stub):
    """As in a notebook: the caller's loop is running, so asyncio.run would raise; generate does not."""
    asyncio.get_running_loop()
    ds = treesynth.generate("math word problems", size=6, out=tmp_path / "nb", progress=False, **_stub_options(stub))
    assert ds.complete and len(ds) == 6


def test_generate_shows_a_progress_bar_on_stderr(tmp_path, stub, capfd):
    treesynth.generate("math word problems", size=6, out=tmp_path / "p", **_stub_options(stub))
    err = capfd.readouterr().err
    assert "treesynth" in err and "6/6" in err and "row" in err


def test_bad_settings_and_an_unreachable_provider_raise_typed_errors_before_anything_is_written(tmp_path):
    with pytest.raises(treesynth.errors.ConfigError, match="size"):
        treesynth.generate("t", size=0, out=tmp_path / "a", progress=False)
    with pytest.raises(treesynth.errors.ConfigError, match="preset"):
        treesynth.generate("t", preset="no-such-preset", out=tmp_path / "b", progress=False)
    with pytest.raises(treesynth.errors.ProviderError):
        treesynth.generate("t", model="openai/x", api_base="http://127.0.0.1:9/v1", out=tmp_path / "c", progress=False)
    with pytest.raises(treesynth.errors.ConfigError, match="unknown mode"):
        treesynth.generate("t", mode="no-such-mode", out=tmp_path / "d", progress=False)
    assert not any((tmp_path / d).exists() for d in "abcd")
    with pytest.raises(treesynth.errors.RunDirError):
        treesynth.open(tmp_path / "nothing-here")


def test_config_takes_lists_and_validates_like_the_cli():
    cfg = treesynth.config("math", fields=["question", "answer"], size=50, preset="gsm8k")
    assert isinstance(cfg, treesynth.RunConfig) and cfg.fields == ("question", "answer") and cfg.size == 50
    assert cfg.dedup_threshold == pytest.approx(0.92)  # the preset's
    with pytest.raises(treesynth.errors.ConfigError, match="no_such_option"):
        treesynth.config("math", no_such_option=1)


async def test_async_run_streams_typed_events_and_takes_controls(tmp_path):
    t = ScriptedTransport(latency=0.002)
    cfg = treesynth.config("math word problems", fields=["question", "answer"], depth=2, size=30, pivots=6)
    seen: list[str] = []
    async with treesynth.Run(cfg, tmp_path / "r", transport=t) as run:
        async for e in run.events():
            seen.append(e.kind)
            if isinstance(e, treesynth.events.NodeExpanded) and e.node_id == "0":
                run.pause()
                assert run.paused
                run.unpause()
    assert seen[0] == "run_started" and seen[-1] == "run_finished" and "node_expanded" in seen
    assert run.finished is not None and run.finished.status == "complete"
    assert len(run.dataset) == 30
    rows = dict(run.summary_rows())
    assert rows["rows"].startswith("30/30") and "status" in rows


async def test_a_stopped_run_resumes_to_exact_size(tmp_path):
    cfg = treesynth.config("math word problems", fields=["question", "answer"], depth=2, size=40, pivots=6, concurrency=2)
    async with treesynth.Run(cfg, tmp_path / "r", transport=ScriptedTransport(latency=0.002)) as run:
        async for e in run.events():
            if isinstance(e, treesynth.events.LeafProgress) and e.samples_done >= 10:
                run.stop()
    assert run.finished is not None and run.finished.status == "stopped"
    ds = treesynth.open(tmp_path / "r")
    assert not ds.complete and 10 <= len(ds) < 40
    done = treesynth.resume(tmp_path / "r", progress=False, transport=ScriptedTransport())
    assert done.complete and len(done) == 40


def test_balance_from_python(tmp_path):
    rows = [{"question": f"Problem {i}: {'apples' if i % 3 else 'trains'} and {'money' if i % 5 else 'time'} {i}", "answer": f"#### {i}"}
            for i in range(60)]
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    ds = treesynth.balance(
        data, task="math word problems", field="question", target_per_leaf=6, route="llm", route_batch=10, depth=2, pivots=6,
        samples_per_call=3, out=tmp_path / "b", transport=ScriptedTransport(fields=("question", "answer")), embed=hash_embedder,
        progress=False,
    )
    assert ds.complete and ds.path == tmp_path / "b" / "balanced.jsonl"
    out = list(ds)
    assert len(out) == 6 * len(ds.tree.leaves) and {r["provenance"] for r in out} <= {"original", "synthesised"}


def test_the_public_api_type_checks_under_mypy_strict(tmp_path):
    """mypy --strict on the public package and on a user's script that uses it. The folders map to
    treesynth.* only at install time, so mypy reads them through a tree of links laid out as installed."""
    pkg = tmp_path / "site" / "treesynth"
    pkg.mkdir(parents=True)
    for entry in (ROOT / "api").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for folder in ("core", "analytics", "tui", "cli"):
        (pkg / folder).symlink_to(ROOT / folder)
    user = tmp_path / "user_script.py"
    user.write_text(textwrap.dedent("""
        import treesynth

        ds: treesynth.Dataset = treesynth.generate("math word problems", size=20, preset="gsm8k", depth=2)
        print(ds.tree, len(ds), ds.status)
        for row in ds:
            text: str = row["question"]
        cfg: treesynth.RunConfig = treesynth.config("math", fields=["q", "a"])
        n: int = cfg.size
    """))
    env = {**os.environ, "MYPYPATH": str(tmp_path / "site")}
    conf = tmp_path / "mypy.ini"
    # the project's own settings for third-party packages (untyped, or too large to analyse here)
    conf.write_text("[mypy]\npython_version = 3.11\nignore_missing_imports = True\n"
                    "[mypy-torch.*,transformers.*,sentence_transformers.*,ray.*,litellm.*,llama_cpp.*,datasets.*,umap.*,openTSNE.*,plotly.*,textual.*]\n"
                    "follow_imports = skip\n")
    public = [str(pkg / "__init__.py"), str(pkg / "errors.py"), *(str(pkg / "lib" / f.name) for f in (ROOT / "api" / "lib").glob("*.py"))]
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--follow-imports=silent", "--config-file", str(conf)]
    bad = tmp_path / "wrong_script.py"  # and the check is not vacuous: a wrong type in a user's script is caught
    bad.write_text("import treesynth\nn: int = treesynth.open('runs/x').status\n")
    r = subprocess.run([*mypy, *public, str(user), str(bad)], capture_output=True, text=True, cwd=tmp_path, env=env)
    errors = [line for line in r.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 1 and errors[0].startswith("wrong_script.py:2") and "Incompatible types" in errors[0], r.stdout[-4000:] + r.stderr[-2000:]


def test_ctrl_c_stops_a_blocking_generate_gracefully_and_the_run_resumes(tmp_path):
    """SIGINT while ``generate`` waits: the run stops after the calls in flight, KeyboardInterrupt reaches the
    caller, and the run directory is resumable to exact size."""
    import signal
    import time

    with StubOpenAI(latency=0.05) as stub:
        script = (
            "import treesynth\n"
            f"treesynth.generate('math word problems', size=200, depth=2, model='openai/stub-model', api_base={stub.url!r},"
            " fields=['question', 'answer'], concurrency=2, out='r', progress=False)\n"
        )
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not (tmp_path / "r" / "samples.jsonl").is_file() or not (tmp_path / "r" / "samples.jsonl").read_text().strip():
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() is not None else "no rows in 60 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode != 0 and "KeyboardInterrupt" in err
        ds = treesynth.open(tmp_path / "r")
        assert ds.status == "stopped" and 0 < len(ds) < 200
        done = treesynth.resume(tmp_path / "r", progress=False)
        assert done.complete and len(done) == 200
