"""End to end with the real embedded model (SmolLM2-135M via llama-cpp-python): no key, no network."""

from __future__ import annotations

import json

import pytest

from tests.conftest import read_jsonl, run_cli


@pytest.mark.slow
def test_embedded_model_tiny_run(tmp_path):
    out = tmp_path / "run"
    r = run_cli(
        "run", "Short grade-school math word problems", "--no-ui", "--fields", "question,answer", "--depth", "1",
        "--size", "4", "--pivots", "3", "--samples-per-call", "2", "--concurrency", "1", "--out", str(out), timeout=900,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 4 and len({row["id"] for row in rows}) == 4
    assert all(row["question"].strip() and row["answer"].strip() for row in rows)
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"] == "local/smollm2"
    tree = json.loads((out / "tree.json").read_text())
    assert tree["nodes"][0]["id"] == "0"
    t = run_cli("tree", str(out))
    assert t.returncode == 0 and "4 samples" in t.stdout
