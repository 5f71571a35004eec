"""Steering a run while it goes on: prune, add/rename/remove values, re-expand; edits persist."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import read_jsonl
from tests.fakes import ScriptedTransport
from treesynth.core import events as ev
from treesynth.core.config import build_config
from treesynth.core.errors import SteeringError
from treesynth.core.run import Run


def _cfg(**kw):
    flags = {"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 60, "pivots": 6}
    flags.update(kw)
    return build_config(flags=flags)


def _steered(out, on_root_expanded, transport=None, cfg=None, trigger="0"):
    run = Run.create(cfg or _cfg(), out, transport=transport or ScriptedTransport(latency=0.001))
    events: list[ev.Event] = []
    done = {"hit": False}

    def cb(e):
        events.append(e)
        if isinstance(e, ev.NodeExpanded) and e.node_id == trigger and not done["hit"]:
            done["hit"] = True
            on_root_expanded(run.steering)

    fin = asyncio.run(run.execute(cb))
    return fin, events


def _tree(out):
    return {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}


def test_prune_gives_a_subtree_no_samples_and_keeps_the_size(tmp_path):
    out = tmp_path / "r"
    fin, events = _steered(out, lambda eng: eng.prune("0.1"))
    rows = read_jsonl(out / "dataset.jsonl")
    assert fin.status == "complete" and len(rows) == 60
    assert not [r for r in rows if r["leaf_id"].startswith("0.1")]
    tree = _tree(out)
    assert tree["0.1"]["status"] == "pruned"
    assert any(isinstance(e, ev.NodePruned) and e.node_id == "0.1" for e in events)


def test_add_value_creates_a_child_that_gets_samples(tmp_path):
    out = tmp_path / "r"
    fin, _ = _steered(out, lambda eng: eng.add_value("0", "ratios and rates"))
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == 60
    added = [r for r in rows if r["path"][0]["value"] == "ratios and rates"]
    assert added, "the added value got no samples"
    tree = _tree(out)
    assert any(sv["value"] == "ratios and rates" and sv["source"] == "user" for sv in tree["0"]["split_values"])


def test_rename_and_remove_values(tmp_path):
    out = tmp_path / "r"

    def edit(eng):
        eng.rename_value("0.0", "fractions of a pizza")
        eng.remove_value("0.2")

    fin, events = _steered(out, edit)
    rows = read_jsonl(out / "dataset.jsonl")
    assert fin.status == "complete" and len(rows) == 60
    top = {r["path"][0]["value"] for r in rows}
    assert "fractions of a pizza" in top and "d0 value 0" not in top
    assert not [r for r in rows if r["leaf_id"].startswith("0.2")]
    last_root = [e for e in events if isinstance(e, ev.NodeExpanded) and e.node_id == "0"][-1]
    assert "0.2" not in {c.node_id for c in last_root.children}


def test_reexpand_asks_again(tmp_path):
    out = tmp_path / "r"
    t = ScriptedTransport(latency=0.001)

    def later(eng):
        # pause so the leaves get no samples, re-expand once the expansion has finished, resume
        eng.pause()
        asyncio.get_running_loop().call_soon(lambda: (eng.reexpand("0.0"), eng.resume()))

    fin, events = _steered(out, later, transport=t, trigger="0.0")
    assert fin.status == "complete" and fin.rows == 60
    assert any(isinstance(e, ev.NodeReset) and e.node_id == "0.0" for e in events)
    assert _tree(out)["0.0"]["revision"] == 1 and _tree(out)["0.0"]["status"] == "expanded"
    assert t.calls["pivots"] == (1 + 4 + 1) * 2  # root, its four children, and 0.0 once more; two pivot calls each (3 + 3)


def test_refused_edits_say_why(tmp_path):
    out = tmp_path / "r"
    fin, _ = asyncio.run(_finished(out))
    eng = fin
    with pytest.raises(SteeringError, match="root cannot be pruned"):
        eng.prune("0")
    with pytest.raises(SteeringError, match="already has samples"):
        eng.prune("0.0")
    with pytest.raises(SteeringError, match="no node"):
        eng.prune("9.9")


async def _finished(out):
    run = Run.create(_cfg(depth=1, size=10), out, transport=ScriptedTransport())
    await run.execute()
    return run.steering, None


def test_edits_persist_across_resume(tmp_path):
    out = tmp_path / "r"
    run = Run.create(_cfg(size=120, concurrency=2), out, transport=ScriptedTransport(latency=0.002))

    def cb(e):
        if isinstance(e, ev.NodeExpanded) and e.node_id == "0":
            run.steering.prune("0.3")
            run.steering.add_value("0", "money and change")
        if isinstance(e, ev.LeafProgress) and e.samples_done >= 20:
            run.request_stop()

    fin = asyncio.run(run.execute(cb))
    assert fin.status == "stopped"
    run2 = Run.resume(out, transport=ScriptedTransport())
    assert run2.recovered.tree.get("0.3").status == "pruned"
    assert any(run2.recovered.tree.get(c).value == "money and change" for c in run2.recovered.tree.get("0").children)
    fin2 = asyncio.run(run2.execute())
    rows = read_jsonl(out / "dataset.jsonl")
    assert fin2.status == "complete" and len(rows) == 120 and len({r["id"] for r in rows}) == 120
    assert not [r for r in rows if r["leaf_id"].startswith("0.3")]
    assert [r for r in rows if r["path"][0]["value"] == "money and change"]


def test_pause_stops_new_calls_and_resume_continues(tmp_path):
    t = ScriptedTransport(latency=0.002)
    run = Run.create(_cfg(size=80), tmp_path / "r", transport=t)

    async def main():
        task = asyncio.ensure_future(run.execute())
        while run.steering is None or run.steering._n_expanded < 1:
            await asyncio.sleep(0.001)
        run.steering.pause()
        assert run.steering.paused
        await asyncio.sleep(0.05)  # in-flight calls finish
        n = sum(t.calls.values())
        await asyncio.sleep(0.3)
        assert sum(t.calls.values()) == n, "calls started while paused"
        run.steering.resume()
        return await task

    fin = asyncio.run(main())
    assert fin.status == "complete" and fin.rows == 80
