"""Trees as artifacts: ``treesynth tree RUN --format json|yaml|mermaid`` writes a run's tree, and ``treesynth
run --tree-from SOURCE`` (a run directory, its tree.json, or a taxonomy file a person wrote or edited)
takes that tree's splits with no tree calls, fills its leaves, and refuses a bad file in one line before
any directory exists. Runs are in-process with the scripted fake provider (tests/fakes.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import orjson
import pytest
import yaml

import treesynth
from tests.conftest import call_cli, read_jsonl, run_cli
from tests.fakes import ScriptedTransport
from tests.stub_server import StubOpenAI
from treesynth.core.errors import ConfigError
from treesynth.core.llm import Completion, LLMRequest
from treesynth.core.rundir import CONFIG, GIVEN_TREE, SNAPSHOT
from treesynth.core.treefile import load_tree_readonly

TREE_STEPS = ("pivots", "criterion", "assign", "supplement")
BIKE = """\
task: Short customer-support questions about a bike shop
fields: [question, answer]
depth: 2
tree:
  dimension: topic
  values:
    - value: repairs
      dimension: urgency
      values:
        - value: same day
          examples: [{question: "Can you true a buckled wheel while I wait?", answer: "Usually, yes: about twenty minutes."}]
        - value: this week
    - value: sales
      leaf: true
    - value: rentals
      dimension: rental length
      values: [one hour, full day, whole weekend]
"""
BIKE_LEAVES = {("repairs", "same day"), ("repairs", "this week"), ("sales",), ("rentals", "one hour"), ("rentals", "full day"),
               ("rentals", "whole weekend")}


@dataclass
class Recording(ScriptedTransport):
    """The scripted provider, remembering every call's slot and its last message."""

    seen: list[tuple[str, str]] = field(default_factory=list)

    async def __call__(self, req: LLMRequest) -> Completion:
        self.seen.append((req.slot, req.messages[-1]["content"]))
        return await super().__call__(req)

    def tree_calls(self) -> list[str]:
        return [s for s, _ in self.seen if s.split(":")[1] in TREE_STEPS]


def leaf_paths(run_dir) -> set[tuple[str, ...]]:
    tree = load_tree_readonly(run_dir)
    return {tuple(p["value"] for p in tree.path(n.id)) for n in tree.leaves()}


def row_paths(run_dir) -> list[tuple[str, ...]]:
    return [tuple(p["value"] for p in r["path"]) for r in read_jsonl(run_dir / "dataset.jsonl")]


def source_run(tmp_path, **kw):
    """A finished run grown by the scripted model (depth 2): the tree to reuse."""
    ds = treesynth.generate("math word problems", size=18, depth=2, fields=["question", "answer"], out=tmp_path / "src",
                            transport=ScriptedTransport(), progress=False, **kw)
    assert ds.complete
    return tmp_path / "src"


def test_a_hand_written_taxonomy_is_grown_with_no_tree_calls(tmp_path):
    (tmp_path / "bike.yaml").write_text(BIKE)
    t = Recording()
    ds = treesynth.generate(size=30, tree_from=str(tmp_path / "bike.yaml"), out=tmp_path / "run", transport=t, progress=False)
    assert ds.complete and len(ds) == 30
    assert t.tree_calls() == [] and t.calls["criterion"] == 0  # every node is the file's
    assert leaf_paths(tmp_path / "run") == BIKE_LEAVES
    assert set(row_paths(tmp_path / "run")) == BIKE_LEAVES  # every row in a leaf of the file, every leaf has rows
    # the quota is split as a grown tree's: by the allocation rule, down the given splits
    tree = load_tree_readonly(tmp_path / "run")
    assert [tree.get(c).target for c in tree.root.children] == [10, 10, 10]
    # the run's task, fields and depth came from the file; its config says where the tree came from
    cfg = orjson.loads((tmp_path / "run" / CONFIG).read_bytes())["config"]
    assert (cfg["task"], cfg["fields"], cfg["depth"]) == ("Short customer-support questions about a bike shop", ["question", "answer"], 2)
    assert cfg["tree_from"] == str((tmp_path / "bike.yaml").resolve())
    assert (tmp_path / "run" / GIVEN_TREE).is_file()
    # the leaf's examples reach its prompt, and only its own
    same_day = [m for s, m in t.seen if ":gen:" in s and "same day" in m]
    assert same_day and all("buckled wheel" in m for m in same_day)
    assert not any("buckled wheel" in m for s, m in t.seen if ":gen:" in s and "same day" not in m)


def test_values_shallower_than_the_depth_are_grown_by_the_model(tmp_path):
    (tmp_path / "bike.yaml").write_text(BIKE)
    t = Recording()
    ds = treesynth.generate(size=40, depth=3, tree_from=tmp_path / "bike.yaml", out=tmp_path / "run", transport=t, progress=False)
    assert ds.complete
    grown = {s.split(":")[0] for s in t.tree_calls()}
    tree = load_tree_readonly(tmp_path / "run")
    assert grown and all(tree.get(n).depth == 2 for n in grown)  # only under the file's depth-2 leaves
    assert ("sales",) in leaf_paths(tmp_path / "run")  # leaf: true is never split


def test_a_placeholder_value_is_one_line_exit_2_and_no_directory(tmp_path):
    (tmp_path / "bad.yaml").write_text(BIKE.replace("this week", "Value 2"))
    r = run_cli("run", "--no-ui", "--tree-from", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"treesynth: error: --tree-from {tmp_path / 'bad.yaml'}: at topic = repairs: value 'Value 2' is a placeholder, not a concrete name"
    ]
    assert not (tmp_path / "out").exists()
    # the library says the same, and leaves nothing either
    try:
        treesynth.generate(size=10, tree_from=tmp_path / "bad.yaml", out=tmp_path / "lib", transport=ScriptedTransport(), progress=False)
        raise AssertionError("no error")
    except ConfigError as e:
        assert "'Value 2' is a placeholder" in str(e)
    assert not (tmp_path / "lib").exists()
    # a file deeper than the run, a missing one, broken YAML: one line each
    (tmp_path / "broken.yaml").write_text("tree: [unclosed\n")
    for args, said in (
        (["--tree-from", str(tmp_path / "bad.yaml"), "--depth", "1"], "deeper than the run's depth 1"),
        (["--tree-from", str(tmp_path / "nope.yaml")], "no such run directory or file"),
        (["--tree-from", str(tmp_path / "broken.yaml"), "some task"], "not valid YAML"),
    ):
        r = call_cli("run", "--no-ui", *args, "--out", str(tmp_path / "out"))
        assert r.returncode == 2 and said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "out").exists()


def test_yaml_round_trip_gives_the_same_leaves(tmp_path):
    src = source_run(tmp_path)
    r = call_cli("tree", str(src), "--format", "yaml")
    assert r.returncode == 0, r.stderr
    doc = yaml.safe_load(r.stdout)
    assert doc["task"] == "math word problems" and doc["depth"] == 2 and doc["tree"]["dimension"]
    (tmp_path / "tree.yaml").write_text(r.stdout)
    t = Recording()
    ds = treesynth.generate(size=40, tree_from=tmp_path / "tree.yaml", out=tmp_path / "again", transport=t, progress=False)
    assert ds.complete and t.tree_calls() == []
    assert leaf_paths(tmp_path / "again") == leaf_paths(src)
    assert set(row_paths(tmp_path / "again")) <= leaf_paths(src)


def test_a_renamed_value_in_the_file_is_the_new_runs(tmp_path):
    src = source_run(tmp_path)
    doc = yaml.safe_load(call_cli("tree", str(src), "--format", "yaml").stdout)
    old = doc["tree"]["values"][0]["value"]
    doc["tree"]["values"][0]["value"] = "weekend errands"
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    t = Recording()
    assert treesynth.generate(size=20, tree_from=tmp_path / "edited.yaml", out=tmp_path / "run", transport=t, progress=False).complete
    tops = {p[0] for p in leaf_paths(tmp_path / "run")}
    assert "weekend errands" in tops and old not in tops and t.tree_calls() == []


def test_a_run_directory_and_its_tree_json_are_sources_too(tmp_path):
    src = source_run(tmp_path)
    with StubOpenAI() as stub:
        for name, source in (("from-dir", src), ("from-json", src / SNAPSHOT)):
            r = call_cli("run", "--no-ui", "--tree-from", str(source), "--model", "openai/stub-model", "--api-base", stub.url,
                         "--size", "24", "--out", str(tmp_path / name))
            assert r.returncode == 0, r.stderr
            assert leaf_paths(tmp_path / name) == leaf_paths(src)
            assert set(row_paths(tmp_path / name)) <= leaf_paths(src)
            cfg = orjson.loads((tmp_path / name / CONFIG).read_bytes())["config"]
            assert cfg["task"] == "math word problems" and cfg["tree_from"] == str(source.resolve())


def test_json_output_parses_and_goes_back_in(tmp_path):
    src = source_run(tmp_path)
    r = call_cli("tree", str(src), "--format", "json", "--examples", "2")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    root = doc["tree"]
    assert root["id"] == "0" and root["status"] == "expanded" and root["rows"] == 18
    leaves = [v for top in root["values"] for v in top.get("values", [])]
    assert leaves and all(v["status"] == "leaf" and 1 <= len(v["examples"]) <= 2 for v in leaves)
    assert sum(v["rows"] for v in leaves) == 18
    # back in (without the examples: the scripted model would write them again, and a copy of an example is dropped)
    (tmp_path / "tree.json").write_text(call_cli("tree", str(src), "--format", "json").stdout)
    t = Recording()
    assert treesynth.generate(size=20, tree_from=tmp_path / "tree.json", out=tmp_path / "run", transport=t, progress=False).complete
    assert leaf_paths(tmp_path / "run") == leaf_paths(src) and t.tree_calls() == []
    # mermaid: a fenced flowchart with one node line per node
    m = call_cli("tree", str(src), "--format", "mermaid").stdout.splitlines()
    assert m[:2] == ["```mermaid", "graph TD"] and m[-1] == "```"
    assert sum(1 for x in m if "-->" in x) == len(load_tree_readonly(src)) - 1


def test_an_open_ended_list_is_one_child_drawing_its_values(tmp_path):
    (tmp_path / "cities.yaml").write_text(
        "tree:\n  dimension: city\n  values:\n    - one_of: [Paris, Lyon, Nice, Lille]\n"
    )
    ds = treesynth.generate("travel questions", size=12, depth=1, fields=["question", "answer"], tree_from=tmp_path / "cities.yaml",
                            out=tmp_path / "run", transport=ScriptedTransport(), progress=False)
    assert ds.complete
    tree = load_tree_readonly(tmp_path / "run")
    (leaf,) = tree.leaves()
    assert leaf.values == ["Paris", "Lyon", "Nice", "Lille"] and leaf.value == "one of 4 city values"
    assert {p[0] for p in row_paths(tmp_path / "run")} <= {"Paris", "Lyon", "Nice", "Lille"}
    # and it is written back the same way
    doc = yaml.safe_load(call_cli("tree", str(tmp_path / "run"), "--format", "yaml").stdout)
    assert doc["tree"]["values"] == [{"one_of": ["Paris", "Lyon", "Nice", "Lille"]}]


def test_a_run_given_a_tree_resumes_without_its_source(tmp_path):
    (tmp_path / "bike.yaml").write_text(BIKE)
    # stopped by its budget part way through its leaves
    t = Recording(cost=0.01)
    with pytest.warns(RuntimeWarning, match="ended budget"):
        ds = treesynth.generate(size=30, budget=0.03, tree_from=tmp_path / "bike.yaml", out=tmp_path / "run", transport=t, progress=False)
    assert 0 < len(read_jsonl(tmp_path / "run" / "samples.jsonl")) < 30
    # made, never started (a crash before the first node was journaled): the given splits come from its copy
    from treesynth.core.config import build_config
    from treesynth.core.run import Run

    Run.create(build_config(flags={"tree_from": str(tmp_path / "bike.yaml"), "size": 12}), tmp_path / "new", transport=ScriptedTransport()).close()
    (tmp_path / "bike.yaml").unlink()
    for run_dir in (tmp_path / "run", tmp_path / "new"):
        t = Recording()
        ds = treesynth.resume(run_dir, transport=t, budget=100.0, progress=False)
        assert ds.complete and t.tree_calls() == []
        assert leaf_paths(run_dir) == BIKE_LEAVES and set(row_paths(run_dir)) == BIKE_LEAVES


def test_a_baseline_of_a_run_given_a_tree_has_no_tree(tmp_path):
    from treesynth.core.baseline import baseline_config
    from treesynth.core.store import read_saved_config

    (tmp_path / "bike.yaml").write_text(BIKE)
    assert treesynth.generate(size=6, tree_from=tmp_path / "bike.yaml", out=tmp_path / "run", transport=ScriptedTransport(), progress=False).complete
    cfg = baseline_config(read_saved_config(tmp_path / "run"), 6)
    assert cfg.tree_from is None and cfg.depth == 0
