"""``treesynth extend``: a finished run asked for more rows, on the same tree, in the same run directory."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from tests.conftest import call_cli, read_jsonl
from tests.fakes import ScriptedTransport
from treesynth.core.allocate import allocate
from treesynth.core.config import build_config
from treesynth.core.errors import ConfigError, RunDirError
from treesynth.core.extend import record_extension
from treesynth.core.resplit import resplit, resplit_targets
from treesynth.core.run import Run
from treesynth.core.tree import EXPANDED, LEAF, Node, Tree


def _cfg(**kw):
    flags = {"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 20, "pivots": 6, "samples_per_call": 2}
    flags.update(kw)
    return build_config(flags=flags)


def _execute(run):
    return asyncio.run(run.execute())


def _extend(out, size, transport):
    record_extension(out, size)
    return _execute(Run.resume(out, transport=transport))


def _leaf_counts(out):
    return Counter(r["leaf_id"] for r in read_jsonl(out / "samples.jsonl"))


def _tree(out):
    return {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}


# ---- the pure re-split ------------------------------------------------------------


def _two_level_tree() -> Tree:
    t = Tree.new(20)
    t.root.status, t.root.children = EXPANDED, ["0.0", "0.1", "0.2"]
    for i, tgt in enumerate(allocate(20, [1, 1, 2])):
        t.upsert(Node(id=f"0.{i}", parent="0", depth=1, target=tgt, status=LEAF, values=["a", "b"] if i == 2 else []))
    return t


def test_resplit_follows_the_allocation_rule_when_no_leaf_is_over_its_share():
    t = _two_level_tree()
    assert [t.get(f"0.{i}").target for i in range(3)] == [5, 5, 10]
    changed = resplit(t, {"0.0": 5, "0.1": 5, "0.2": 10}, 50)
    assert [t.get(f"0.{i}").target for i in range(3)] == allocate(50, [1, 1, 2]) == [13, 12, 25]
    assert t.root.target == 50 and changed[-1].id == "0"  # the root journaled last


def test_resplit_never_takes_back_rows_and_sums_to_the_new_total():
    t = _two_level_tree()
    targets = resplit_targets(t, {"0.0": 15, "0.1": 3, "0.2": 2}, 30)  # 0.0 holds more than its share (8)
    assert targets["0.0"] == 15 and targets["0"] == 30
    assert targets["0.0"] + targets["0.1"] + targets["0.2"] == 30
    assert targets["0.1"] >= 3 and targets["0.2"] >= 2
    # the same answer whatever targets the tree holds now (a crash part-way through journaling it)
    t.get("0.1").target = 99
    assert resplit_targets(t, {"0.0": 15, "0.1": 3, "0.2": 2}, 30) == targets


# ---- a run extended -----------------------------------------------------------------


def test_extend_20_to_50_keeps_every_row_and_fills_the_resplit_quotas(tmp_path):
    out = tmp_path / "r"
    fin = _execute(Run.create(_cfg(), out, transport=ScriptedTransport()))
    assert fin.status == "complete" and fin.rows == 20
    before = (out / "samples.jsonl").read_bytes()
    first_dataset = read_jsonl(out / "dataset.jsonl")
    held = _leaf_counts(out)
    tree_before = _tree(out)

    fin = _extend(out, 50, ScriptedTransport())
    assert fin.status == "complete" and fin.rows == 50 and fin.size == 50
    after = (out / "samples.jsonl").read_bytes()
    assert after.startswith(before)  # byte for byte: appended to, never rewritten
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 50 and rows[:20] == first_dataset
    assert len({r["id"] for r in rows}) == 50
    assert len({(r["question"], r["answer"]) for r in rows}) == 50
    # the same tree, its quotas re-split for 50
    tree = _tree(out)
    assert set(tree) == set(tree_before)
    assert {i: (n["status"], n["value"]) for i, n in tree.items()} == {i: (n["status"], n["value"]) for i, n in tree_before.items()}
    leaves = {i for i, n in tree.items() if n["status"] == "leaf"}
    counts = _leaf_counts(out)
    assert all(counts[i] == tree[i]["target"] for i in leaves)
    assert all(counts[i] >= held[i] for i in leaves)
    assert tree["0"]["target"] == 50
    t, _ = Tree.from_dict(json.loads((out / "tree.json").read_text()))
    assert {i: v for i, v in resplit_targets(t, held, 50).items() if i in leaves} == {i: tree[i]["target"] for i in leaves}
    # the run records its sizes; a resume knows the new total
    doc = json.loads((out / "config.json").read_text())
    assert doc["config"]["size"] == 50 and [(e["from"], e["to"]) for e in doc["extended"]] == [(20, 50)]
    assert json.loads((out / "state.json").read_text())["size"] == 50


def test_a_finished_extend_run_again_makes_no_calls(tmp_path):
    out = tmp_path / "r"
    _execute(Run.create(_cfg(), out, transport=ScriptedTransport()))
    _extend(out, 50, ScriptedTransport())
    before = (out / "samples.jsonl").read_bytes()
    again = ScriptedTransport()
    fin = _extend(out, 50, again)  # the same extension again
    assert fin.status == "complete" and fin.rows == 50 and sum(again.calls.values()) == 0
    fin = _execute(Run.resume(out, transport=(again := ScriptedTransport())))
    assert fin.status == "complete" and sum(again.calls.values()) == 0
    assert (out / "samples.jsonl").read_bytes() == before


def test_an_extend_interrupted_before_its_resplit_was_journaled_is_carried_on_by_a_resume(tmp_path):
    out = tmp_path / "r"
    _execute(Run.create(_cfg(), out, transport=ScriptedTransport()))
    record_extension(out, 50)  # killed here: config.json says 50, the tree still 20
    assert json.loads((out / "tree.json").read_text())["nodes"][0]["target"] == 20
    fin = _execute(Run.resume(out, transport=ScriptedTransport()))
    assert fin.status == "complete" and len(read_jsonl(out / "dataset.jsonl")) == 50


def test_an_extend_stopped_midway_is_carried_on_by_extend_again(tmp_path):
    out = tmp_path / "r"
    _execute(Run.create(_cfg(), out, transport=ScriptedTransport()))
    record_extension(out, 50)
    run = Run.resume(out, transport=ScriptedTransport(cost=0.01), overrides={"budget": 0.05})
    fin = _execute(run)
    assert fin.status == "budget" and 20 < fin.rows < 50
    fin = _extend(out, 50, ScriptedTransport())
    assert fin.status == "complete" and fin.rows == 50
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 50 and len({r["id"] for r in rows}) == 50


def test_a_smaller_or_equal_size_is_refused(tmp_path):
    out = tmp_path / "r"
    _execute(Run.create(_cfg(), out, transport=ScriptedTransport()))
    for size in (10, 20):
        with pytest.raises(ConfigError, match="not larger than the run's size"):
            record_extension(out, size)
    with pytest.raises(RunDirError, match="does not exist"):
        record_extension(tmp_path / "nothing", 50)


def test_cli_extend_refuses_a_smaller_size_with_one_line(tmp_path):
    out = tmp_path / "r"
    _execute(Run.create(_cfg(), out, transport=ScriptedTransport()))
    r = call_cli("extend", str(out), "--size", "10", "--no-ui")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "not larger" in r.stderr
    r = call_cli("extend", str(tmp_path / "nothing"), "--size", "50", "--no-ui")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


# ---- the command line, against the stub server ------------------------------------------


def _cli_run(out, stub, size=20):
    from tests.conftest import call_cli as cli

    r = cli("run", "math word problems", "--no-ui", "--model", "openai/stub", "--api-base", stub.url, "--fields", "question,answer",
            "--size", str(size), "--depth", "2", "--pivots", "4", "--samples-per-call", "2", "--concurrency", "4", "--out", str(out))
    assert r.returncode == 0, r.stderr


def test_cli_extend_then_baseline_tops_the_baseline_up(tmp_path):
    from tests.stub_server import StubOpenAI

    out = tmp_path / "r"
    with StubOpenAI() as stub:
        _cli_run(out, stub)
        r = call_cli("baseline", str(out))
        assert r.returncode == 0, r.stderr
        assert len(read_jsonl(out / "baseline" / "dataset.jsonl")) == 20
        before = (out / "samples.jsonl").read_bytes()
        r = call_cli("extend", str(out), "--size", "50", "--no-ui", "--baseline")
        assert r.returncode == 0, r.stderr
        assert "from 20 to 50 rows" in r.stderr
        assert (out / "samples.jsonl").read_bytes().startswith(before)
        assert len(read_jsonl(out / "dataset.jsonl")) == 50
        base = read_jsonl(out / "baseline" / "dataset.jsonl")
        assert len(base) == 50 and len({r["id"] for r in base}) == 50
        calls = stub.completions
        r = call_cli("extend", str(out), "--size", "50", "--no-ui")  # a finished extend again: nothing to do
        assert r.returncode == 0, r.stderr
        assert stub.completions == calls


def test_api_extend(tmp_path):
    import treesynth

    out = tmp_path / "r"
    _execute(Run.create(_cfg(), out, transport=ScriptedTransport()))
    ds = treesynth.extend(out, size=30, progress=False, check=False, transport=ScriptedTransport())
    assert ds.complete and len(list(ds)) == 30
    with pytest.raises(treesynth.errors.ConfigError, match="not larger"):
        treesynth.extend(out, size=30 - 1, progress=False, check=False, transport=ScriptedTransport())


@pytest.mark.slow
def test_sigkill_midway_through_an_extend_then_extend_again(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import cli_env
    from tests.stub_server import StubOpenAI

    out = tmp_path / "r"
    with StubOpenAI(latency=0.05) as stub:
        _cli_run(out, stub)
        before = (out / "samples.jsonl").read_bytes()
        p = subprocess.Popen([sys.executable, "-m", "treesynth.cli", "extend", str(out), "--size", "50", "--no-ui", "--concurrency", "2"],
                             env=cli_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline and p.poll() is None and (out / "samples.jsonl").read_bytes().count(b"\n") < 30:
            time.sleep(0.01)
        assert p.poll() is None, "the extend finished before it could be killed"
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        assert 30 <= (out / "samples.jsonl").read_bytes().count(b"\n") < 50
        r = call_cli("extend", str(out), "--size", "50", "--no-ui")
        assert r.returncode == 0, r.stderr
    assert (out / "samples.jsonl").read_bytes().startswith(before)
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 50 and len({r["id"] for r in rows}) == 50 and len({(r["question"], r["answer"]) for r in rows}) == 50
    samples = read_jsonl(out / "samples.jsonl")
    assert len({s["id"] for s in samples}) == len(samples) == 50
    tree = _tree(out)
    counts = Counter(s["leaf_id"] for s in samples)
    assert all(counts[i] == n["target"] for i, n in tree.items() if n["status"] == "leaf")


def test_an_extended_judged_run_judges_its_new_rows_and_dedups_against_the_old(tmp_path):
    from tests.fakes import hash_embedder

    out = tmp_path / "r"
    fin = _execute(Run.create(_cfg(judge=True), out, transport=ScriptedTransport(judge_fails=("item 1",)), embed=hash_embedder))
    assert fin.status == "complete"
    old = {r["id"] for r in read_jsonl(out / "samples.jsonl")}
    t = ScriptedTransport(judge_fails=("item 1",))
    record_extension(out, 50)
    fin = _execute(Run.resume(out, transport=t, embed=hash_embedder))
    assert fin.status == "complete" and fin.rows == 50
    data = read_jsonl(out / "dataset.jsonl")
    assert len(data) == 50 and all(r["judge"]["pass"] for r in data) and not any("item 1" in r["question"] for r in data)
    stored = read_jsonl(out / "samples.jsonl")
    verdicts = {v["id"] for v in read_jsonl(out / "verdicts.jsonl")}
    assert {r["id"] for r in stored} == verdicts  # every new row judged, once
    assert all(k not in {r["question"] for r in stored if r["id"] in old} for k in t.judged)  # old rows not judged again
    assert len({r["question"] for r in stored}) == len(stored)


def test_a_mode_says_whether_its_runs_extend_and_a_balance_run_is_refused_in_one_line(tmp_path):
    from treesynth.core.extend import check_extendable

    (tmp_path / "config.json").write_text(json.dumps({"config": {"mode": "balance"}}))
    with pytest.raises(ConfigError) as e:
        check_extendable(tmp_path)
    assert str(e.value) == f"{str(tmp_path)!r} is a balance run; treesynth extend works on runs made by treesynth run"
    (tmp_path / "config.json").write_text(json.dumps({"config": {"mode": "run"}}))
    check_extendable(tmp_path)  # a plain run: nothing to say
