"""End to end with the real embedded model (SmolLM2-135M via llama-cpp-python): no key, no network.

The README's first command, as a new user runs it (as the pilot of the README's tree workflow): a real tree
(depth 2, rows over 3+ leaves, any data-driven split labelled), exactly --size rows, and rows that read as
word problems; then the rest of that workflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import call_cli, read_jsonl, run_cli


def readme_first_command() -> str:
    """The ``treesynth run`` of the README's first command (after the install)."""
    from tests.test_examples import ROOT

    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ln.startswith("python3 -m venv") and "treesynth run" in ln)
    return line[line.index("treesynth run"):]


def check_first_command_run(out: Path) -> None:
    """What the README's first command must give a new user: a real tree (two levels, rows over 3+ leaves,
    any data-driven split labelled), exactly 20 rows with distinct ids, rows that read as word problems."""
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 20 and len({row["id"] for row in rows}) == 20
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"] == "local/smollm2"
    nodes = {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}
    assert max(n["depth"] for n in nodes.values() if n["status"] == "leaf") == 2, "the tree is not two levels deep"
    assert len({row["leaf_id"] for row in rows}) >= 3, "the rows sit in fewer than 3 leaves"
    word_problems = [r for r in rows if len(r["question"].split()) >= 8 and "?" in r["question"]]
    assert len(word_problems) >= 0.75 * len(rows), [r["question"] for r in rows]
    assert all(r["answer"].strip() for r in rows)
    t = call_cli("tree", str(out))
    assert t.returncode == 0 and "20 samples" in t.stdout
    data_driven = [n for n in nodes.values() if (n.get("split_dimension") or "").startswith("embedding cluster")]
    if data_driven:  # the embedded model rarely gives a valid criterion: its fallback is labelled
        assert "[data-driven" in t.stdout
    expanded = [n for n in nodes.values() if n["status"] == "expanded"]
    assert all(n["split_dimension"] for n in expanded)


@pytest.mark.slow
def test_the_embedded_model_as_judge_with_the_gsm8k_gates(tmp_path):
    """The embedded model writes and judges, with the gsm8k preset's validators and semantic dedup: every
    stored row carries exactly one verdict, rows in the data passed, what the gates turned away is recorded
    with its reason, and the run ends complete or says how many rows could not be made. (SmolLM2-135M is
    no judge: it passes almost everything; the verdicts' quality is not what this checks.)"""
    out = tmp_path / "run"
    r = run_cli("run", "GSM8K-style grade-school math word problems", "--preset", "gsm8k", "--judge", "--no-ui", "--depth", "1",
                "--pivots", "3", "--size", "6", "--out", str(out), timeout=1500)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    verdicts = read_jsonl(out / "verdicts.jsonl")
    assert verdicts and sorted(v["id"] for v in verdicts) == sorted(s["id"] for s in read_jsonl(out / "samples.jsonl"))
    assert all(v["judge"] == "local/smollm2" for v in verdicts)
    for rej in read_jsonl(out / "rejected.jsonl") if (out / "rejected.jsonl").exists() else []:
        assert rej["gate"] in ("validator", "near_duplicate", "judge") and rej["detail"]
    assert "quality:  judged" in r.stderr
    if r.returncode == 0:
        rows = read_jsonl(out / "dataset.jsonl")
        assert len(rows) == 6 and all(row["judge"]["pass"] for row in rows)
    else:
        assert "samples could not be generated" in r.stderr


def readme_workflow_block() -> str:
    """The bash block of the README's "Trees as files" section: pilot, tree as YAML, one value renamed,
    a run over the edited tree, an extend."""
    from tests.test_examples import ROOT

    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Trees as files"):]
    return section[section.index("```bash\n") + 8:section.index("```\n", section.index("```bash\n") + 8)]


@pytest.mark.slow
def test_the_readmes_first_command_then_its_tree_workflow(tmp_path):
    """The README's first command and its tree workflow, the commands as written, on the embedded model. The
    workflow's pilot is the first command itself (the same words, plus ``--out``), so one run checks both
    (the first command makes a real tree of word problems, ``check_first_command_run``), and the embedded
    model grows that depth-2 tree once in the suite instead of twice. The workflow's later sizes are scaled
    down (60, 100 -> 8, 10) to keep the suite short; the full sizes were measured by hand. The run over the
    edited tree holds exactly the extended size, every row in one of the edited tree's leaves."""
    import os
    import subprocess
    import sys

    from tests.conftest import cli_env

    block = readme_workflow_block()
    assert block.count("treesynth ") == 5 and "--size 20" in block and "--size 60" in block and "--size 100" in block
    pilot = block.splitlines()[0]
    assert pilot.split("   #")[0] == readme_first_command() + " --out runs/workflow/pilot", "the pilot is no longer the first command"
    script = block.replace("--size 60", "--size 8").replace("--size 100", "--size 10")
    env = cli_env()
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # the venv's treesynth
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=2400)
    assert r.returncode == 0, r.stderr[-3000:]
    check_first_command_run(tmp_path / "runs" / "workflow" / "pilot")
    big = tmp_path / "runs" / "workflow" / "big"
    rows = read_jsonl(big / "dataset.jsonl")
    assert len(rows) == 10 and len({row["id"] for row in rows}) == 10
    given = json.loads((big / "given_tree.json").read_text())["taxonomy"]
    assert any(v.get("value") == "sharing sweets among friends" for v in given["tree"]["values"] if isinstance(v, dict)), given["tree"]
    nodes = {n["id"]: n for n in json.loads((big / "tree.json").read_text())["nodes"]}
    leaves = {i for i, n in nodes.items() if n["status"] == "leaf"}
    assert {row["leaf_id"] for row in rows} <= leaves
    assert any(p["value"] == "sharing sweets among friends" for row in rows for p in row["path"]), "no row in the renamed value"
    assert "10 samples" in r.stdout  # the last command prints the tree
