"""A mode written outside the package (tests/outside_mode.py: rows in leaves the user lists, no growth) runs
end to end through the library, the CLI and the TUI's run screen, found by its ``module:Class`` path or by
registration, with no change anywhere in treesynth."""

from __future__ import annotations

import json

import treesynth
from tests.conftest import call_cli, read_jsonl
from tests.fakes import ScriptedTransport
from tests.outside_mode import GivenPathsMode
from tests.stub_server import StubOpenAI
from tests.test_tui_support import services, wait_for
from treesynth.core.treefile import load_tree_readonly

MODE = "tests.outside_mode:GivenPathsMode"
PATHS = ["topic=fractions / level=easy", "topic=fractions / level=hard", "topic=geometry / level=easy", "topic=money"]
LEAVES = {("fractions", "easy"), ("fractions", "hard"), ("geometry", "easy"), ("money",)}


def _leaves(run_dir) -> set[tuple[str, ...]]:
    tree = load_tree_readonly(run_dir)
    return {tuple(p["value"] for p in tree.path(n.id)) for n in tree.leaves()}


def _check(run_dir, size: int, calls) -> None:
    rows = read_jsonl(run_dir / "dataset.jsonl")
    assert len(rows) == size
    assert {tuple(p["value"] for p in r["path"]) for r in rows} == LEAVES  # every row in a given leaf
    assert _leaves(run_dir) == LEAVES
    assert calls["pivots"] == calls["criterion"] == calls["assign"] == calls["supplement"] == 0  # no growth


def test_through_the_library(tmp_path):
    t = ScriptedTransport()
    ds = treesynth.generate("math word problems", mode=MODE, mode_options={"paths": PATHS}, size=16, depth=3,
                            fields=["question", "answer"], out=tmp_path / "lib", transport=t, progress=False)
    assert ds.complete
    _check(tmp_path / "lib", 16, t.calls)
    assert "topic = fractions" in str(ds.tree)
    # resumed like any run: its mode is found again from the run directory
    assert treesynth.resume(tmp_path / "lib", transport=ScriptedTransport(), progress=False).complete


def test_registered_by_name(tmp_path):
    treesynth.register_mode(GivenPathsMode)
    t = ScriptedTransport()
    ds = treesynth.generate("math word problems", mode="given-paths", mode_options={"paths": PATHS}, size=8, depth=3,
                            fields=["question", "answer"], out=tmp_path / "reg", transport=t, progress=False)
    assert ds.complete and len(ds) == 8


def test_through_the_cli(tmp_path):
    with StubOpenAI() as stub:
        cfg = tmp_path / "mode.yaml"
        cfg.write_text(json.dumps({"mode": MODE, "mode_options": {"paths": PATHS}}))
        r = call_cli("run", "math word problems", "--no-ui", "--config", str(cfg), "--model", "openai/stub-model", "--api-base", stub.url,
                     "--fields", "question,answer", "--size", "12", "--depth", "3", "--out", str(tmp_path / "cli"))
    assert r.returncode == 0, r.stderr
    assert "12/12" in r.stderr
    rows = read_jsonl(tmp_path / "cli" / "dataset.jsonl")
    assert len(rows) == 12 and {tuple(p["value"] for p in x["path"]) for x in rows} == LEAVES
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"mode": MODE, "mode_options": {"paths": ["no equals sign"]}}))
    r = call_cli("run", "t", "--no-ui", "--config", str(bad), "--out", str(tmp_path / "bad"))
    assert r.returncode == 2 and "each step is dimension=value" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "bad").exists()


async def test_through_the_tuis_run_screen(tmp_path):
    from treesynth.core.config import build_config
    from treesynth.tui.app import TreesynthApp
    from treesynth.tui.run_screen import RunScreen
    from treesynth.tui.runs import NewRun

    cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "depth": 3, "size": 12, "mode": MODE,
                              "mode_options": {"paths": PATHS}})
    t = ScriptedTransport()
    app = TreesynthApp(services=services(t), start=NewRun(cfg, tmp_path / "tui"))
    async with app.run_test(size=(100, 32)) as pilot:
        rs: RunScreen = app.screen
        await wait_for(pilot, lambda: rs.fin is not None, what="the run to finish")
        assert rs.fin.status == "complete" and rs.fin.rows == 12
        assert set(rs.tree_widget.handles) == set(load_tree_readonly(tmp_path / "tui").nodes)
    _check(tmp_path / "tui", 12, t.calls)
