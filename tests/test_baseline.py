"""The plain-sampling baseline of a run (treesynth baseline, run --baseline)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import call_cli, read_jsonl
from treesynth.core.baseline import baseline_config
from treesynth.core.config import build_config
from treesynth.core.errors import ConfigError


def test_baseline_config_keeps_everything_but_the_tree():
    run = build_config(flags={"preset": "gsm8k", "depth": 3, "size": 500, "temperature": 0.7, "samples_per_call": 4, "judge": True})
    saved = run.redacted()
    b = baseline_config(saved, 480)
    assert b.depth == 0 and b.size == 480 and b.preset == "gsm8k"
    for k in ("task", "fields", "model", "temperature", "samples_per_call", "validators", "dedup_threshold", "judge", "field_patterns", "examples", "seed"):
        assert getattr(b, k) == getattr(run, k), k
    with pytest.raises(ConfigError, match="no rows yet"):
        baseline_config(saved, 0)


def _run(stub, out, *extra):
    return call_cli("run", "math word problems", "--no-ui", "--model", "openai/stub", "--api-base", stub.url, "--size", "9", "--depth", "2",
                    "--pivots", "4", "--fields", "question,answer", "--out", str(out), *extra)


def test_run_with_baseline_makes_a_baseline_of_the_same_size_without_paths(stub, tmp_path):
    out = tmp_path / "run"
    r = _run(stub, out, "--baseline")
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out / "dataset.jsonl")
    base = read_jsonl(out / "baseline" / "dataset.jsonl")
    assert len(base) == len(rows) == 9
    assert all(b["path"] == [] and b["leaf_id"] == "0" for b in base) and all(r["path"] for r in rows)
    assert "baseline: 9 rows from the root prompt alone" in r.stderr
    # counted apart: the baseline's calls are in its own state, the run's did not grow
    run_state = json.loads((out / "state.json").read_text())
    base_state = json.loads((out / "baseline" / "state.json").read_text())
    assert base_state["usage"]["requests"] >= 2 and run_state["status"] == base_state["status"] == "complete"
    tree = json.loads((out / "baseline" / "tree.json").read_text())
    assert len(tree["nodes"]) == 1
    # run again: it resumes the finished baseline, makes no call and keeps its rows
    before = stub.requests
    again = call_cli("baseline", str(out))
    assert again.returncode == 0, again.stderr
    assert stub.requests == before and read_jsonl(out / "baseline" / "dataset.jsonl") == base


@pytest.mark.parametrize("which", ["missing", "baseline_itself", "tui"])
def test_baseline_errors_are_one_line(stub, tmp_path, which):
    if which == "missing":
        r = call_cli("baseline", str(tmp_path / "nope"))
        msg = "is not a treesynth run directory"
    elif which == "tui":
        r = call_cli("run", "t", "--baseline", "--size", "3")
        msg = "--baseline runs after a headless run"
    else:
        out = tmp_path / "run"
        assert _run(stub, out, "--baseline").returncode == 0
        r = call_cli("baseline", str(out / "baseline"))
        msg = "is a baseline already"
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
