"""Engine behaviour with the scripted in-process provider."""

from __future__ import annotations

import asyncio
import dataclasses
import json

from tests.conftest import read_jsonl
from tests.fakes import ScriptedTransport
from treesynth.core import events as ev
from treesynth.core.config import build_config
from treesynth.core.run import Run


def _cfg(**kw):
    flags = {"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 40, "pivots": 6}
    flags.update(kw)
    return build_config(flags=flags)


def _run(cfg, out, transport, resume=False, **kw):
    run = Run.resume(out, transport=transport, overrides=kw) if resume else Run.create(cfg, out, transport=transport)
    events: list[ev.Event] = []
    fin = asyncio.run(run.execute(events.append))
    return fin, events


def test_events_are_typed_immutable_and_cumulative(tmp_path):
    fin, events = _run(_cfg(), tmp_path / "r", ScriptedTransport())
    assert fin.status == "complete" and fin.rows == 40
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert {"node_started", "node_expanded", "node_leaf", "leaf_progress", "usage"} <= set(kinds)
    progress = [e.samples_done for e in events if isinstance(e, ev.LeafProgress)]
    assert progress == sorted(progress) and progress[-1] == 40
    usage = [e for e in events if isinstance(e, ev.Usage)]
    assert [u.requests for u in usage] == sorted(u.requests for u in usage)
    try:
        events[0].task = "changed"  # type: ignore[misc]
        raise AssertionError("events must be immutable")
    except AttributeError:
        pass
    json.dumps([e.to_dict() for e in events])  # serialisable


def test_pipelined_leaves_start_before_tree_is_complete(tmp_path):
    # one branch is slow to expand; the others' leaves must not wait for it
    t = ScriptedTransport(latency=0.001, slow_prefix="0.3", slow_latency=0.2)
    _, events = _run(_cfg(depth=3, size=200, concurrency=32), tmp_path / "r", t)
    first_progress = next(i for i, e in enumerate(events) if isinstance(e, ev.LeafProgress))
    last_expand = max(i for i, e in enumerate(events) if isinstance(e, ev.NodeExpanded))
    assert first_progress < last_expand


class _TempsTransport(ScriptedTransport):
    async def __call__(self, req):
        self.calls[f"temp:{req.slot.split(':')[1]}:{req.temperature}"] += 1
        return await ScriptedTransport.__call__(self, req)


def test_invalid_criterion_is_resampled_hotter_then_the_pivots_are_split_by_embedding_clusters(tmp_path):
    from tests.fakes import hash_embedder

    bad = json.dumps({"dimension": "dimension_1", "values": ["text", "text"]})
    t = _TempsTransport(overrides={"criterion": [bad, bad, bad]})
    out = tmp_path / "r"
    run = Run.create(_cfg(depth=1, size=10, validation_retries=2), out, transport=t, embed=hash_embedder)
    events: list[ev.Event] = []
    fin = asyncio.run(run.execute(events.append))
    assert fin.status == "complete" and fin.rows == 10
    assert t.calls["criterion"] == 3 and t.calls["assign"] == 0  # no assignment for an invalid criterion
    assert [t.calls[f"temp:criterion:{x}"] for x in (0.3, 0.8, 1.3)] == [1, 1, 1]  # fresh answers, hotter each time
    root = next(e for e in events if isinstance(e, ev.NodeExpanded) and e.node_id == "0")
    assert root.data_driven and root.dimension.startswith("embedding cluster") and len(root.children) >= 2
    assert all(c.source == "data" for c in root.children)
    assert any(isinstance(e, ev.RunWarning) and "data-driven" in e.message for e in events)
    from treesynth.core.store import RunStore
    from treesynth.core.treeview import render_tree

    text = render_tree(RunStore.open(out).recover(10).tree, {})
    assert "data-driven" in text


def test_a_node_with_too_few_distinct_pivots_becomes_a_leaf_and_says_so(tmp_path):
    from tests.fakes import hash_embedder

    bad = json.dumps({"dimension": "setting", "values": ["shopping"]})
    few = json.dumps({"samples": [{"question": f"q{i % 3}", "answer": "a"} for i in range(6)]})
    t = ScriptedTransport(overrides={"criterion": [bad, bad, bad], "pivots": [few, few, few]})
    cfg = _cfg(depth=1, size=10, validation_retries=2, pivots=6, pivots_per_call=6)
    run = Run.create(cfg, tmp_path / "r", transport=t, embed=hash_embedder)
    events: list[ev.Event] = []
    fin = asyncio.run(run.execute(events.append))
    assert fin.status == "complete" and fin.rows == 10
    assert t.calls["pivots"] == 3  # the first round, then the missing pivots asked for twice more
    leaf = next(e for e in events if isinstance(e, ev.NodeLeaf) and e.node_id == "0")
    assert "3 distinct pivot" in leaf.reason and "nothing honest to split" in leaf.reason


def test_a_model_that_repeats_its_pivots_is_asked_for_the_missing_ones_and_the_node_splits(tmp_path):
    """A small model asked for 4 pivots wrote the same one twice: the root stayed a leaf and the run
    "completed" with a 1-node tree. Now the missing pivots are asked for again, in a call of their own."""
    few = json.dumps({"samples": [{"question": "How many apples?", "answer": "4"}, {"question": "How  many APPLES?", "answer": "4"},
                                  {"question": "How many pears?", "answer": "2"}, {"question": "How many plums?", "answer": "3"}]})
    t = ScriptedTransport(overrides={"pivots": [few]})
    cfg = _cfg(depth=1, size=12, pivots=4, pivots_per_call=4)
    events: list[ev.Event] = []
    run = Run.create(cfg, tmp_path / "r", transport=t)
    fin = asyncio.run(run.execute(events.append))
    assert fin.status == "complete" and fin.rows == 12
    assert t.calls["pivots"] == 2
    root = next(e for e in events if isinstance(e, ev.NodeExpanded) and e.node_id == "0")
    assert len(root.children) >= 2
    warned = [e.message for e in events if isinstance(e, ev.RunWarning) and e.node_id == "0"]
    assert any("only 3 distinct pivot(s) of 4, too few to split; asking for 1 more" in m for m in warned), warned
    # a resumed run asks nothing again: the second round's slot is in the cache like the first's
    t2 = ScriptedTransport()
    fin2, _ = _run(cfg, tmp_path / "r", t2, resume=True)
    assert fin2.status == "complete" and t2.calls["pivots"] == 0


def test_an_assignment_that_puts_every_pivot_under_one_value_is_resampled(tmp_path):
    one = json.dumps({str(i): "d0 value 0" for i in range(1, 7)})
    t = ScriptedTransport(overrides={"assign": [one]})
    fin, events = _run(_cfg(depth=1, size=12), tmp_path / "r", t)
    root = next(e for e in events if isinstance(e, ev.NodeExpanded) and e.node_id == "0")
    assert not root.data_driven and root.dimension == "setting 0"
    assert t.calls["assign"] == 2 and t.calls["criterion"] == 2
    assert any(isinstance(e, ev.RunWarning) and "one value" in e.message for e in events)


def test_retry_then_valid_split_is_used(tmp_path):
    bad = json.dumps({"dimension": "topic", "values": ["Other", "misc"]})
    t = ScriptedTransport(overrides={"criterion": [bad]})
    fin, events = _run(_cfg(depth=1, size=12), tmp_path / "r", t)
    assert any(isinstance(e, ev.NodeExpanded) and e.node_id == "0" for e in events)
    assert any(isinstance(e, ev.RunWarning) and "catch-all" in e.message for e in events)


def test_open_ended_dimension_becomes_one_sampled_child(tmp_path):
    many = json.dumps({"status": "open_ended", "values": [f"city {i}" for i in range(9)]})
    t = ScriptedTransport(overrides={"supplement": [many]})
    out = tmp_path / "r"
    fin, _ = _run(_cfg(depth=2, size=30, max_values=12, open_ended_threshold=6), out, t)
    assert fin.rows == 30
    tree = {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}
    assert tree["0"]["children"] == ["0.0"]
    child = tree["0.0"]
    assert child["source"] == "open_ended" and len(child["values"]) == 12 and child["status"] == "leaf"
    rows = read_jsonl(out / "dataset.jsonl")
    sampled = {r["path"][0]["value"] for r in rows}
    assert len(sampled) > 1 and sampled <= set(child["values"])


def test_duplicates_are_replaced_and_size_is_exact(tmp_path):
    out = tmp_path / "r"
    fin, _ = _run(_cfg(depth=1, size=25, samples_per_call=5), out, ScriptedTransport(duplicate_every=3))
    rows = read_jsonl(out / "dataset.jsonl")
    assert fin.status == "complete" and len(rows) == 25
    assert len({(r["question"].lower(), r["answer"].lower()) for r in rows}) == 25


def test_budget_stops_cleanly_and_resume_with_higher_budget_finishes(tmp_path):
    out = tmp_path / "r"
    t = ScriptedTransport(cost=0.01)
    fin, _ = _run(_cfg(depth=1, size=50, samples_per_call=2, budget=0.1, concurrency=1), out, t)
    assert fin.status == "budget"
    assert 0.1 <= fin.cost_usd <= 0.1 + 0.01 + 1e-9  # at most the in-flight call past it
    assert not (out / "dataset.jsonl").exists()
    fin2, events = _run(None, out, ScriptedTransport(cost=0.01), resume=True, budget=10.0)
    assert fin2.status == "complete" and fin2.rows == 50
    # the display starts from the tree as it stands, not from "nodes 0/1" (the tree was grown before)
    from treesynth.core.progress import Progress

    p = Progress()
    p.apply(events[0])
    assert isinstance(events[0], ev.RunStarted) and events[0].resumed
    assert (p.nodes_expanded, p.nodes_total) == (1, len(json.loads((out / "tree.json").read_text())["nodes"])) and p.nodes_total > 1
    assert len(read_jsonl(out / "dataset.jsonl")) == 50


def test_resume_refuses_to_change_the_dataset_definition(tmp_path):
    out = tmp_path / "r"
    _run(_cfg(depth=1, size=5), out, ScriptedTransport())
    import pytest

    from treesynth.core.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot change size"):
        Run.resume(out, overrides={"size": 10}, transport=ScriptedTransport())
    # and the failed attempt released the run directory
    fin, _ = _run(None, out, ScriptedTransport(), resume=True)
    assert fin.status == "complete"


def test_leaf_jobs_are_self_contained_and_ids_deterministic(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(_cfg(depth=2, size=30, seed=7), a, ScriptedTransport())
    _run(_cfg(depth=2, size=30, seed=7), b, ScriptedTransport())
    ra = sorted((r["id"], r["leaf_id"]) for r in read_jsonl(a / "dataset.jsonl"))
    rb = sorted((r["id"], r["leaf_id"]) for r in read_jsonl(b / "dataset.jsonl"))
    assert ra == rb


def test_shared_cache_makes_a_rerun_free(tmp_path):
    cache = tmp_path / "cache.sqlite"
    t1 = ScriptedTransport()
    _run(_cfg(depth=2, size=30, cache_path=str(cache)), tmp_path / "a", t1)
    t2 = ScriptedTransport()
    fin, _ = _run(_cfg(depth=2, size=30, cache_path=str(cache)), tmp_path / "b", t2)
    assert fin.rows == 30 and sum(t2.calls.values()) == 0 and sum(t1.calls.values()) > 0


def test_unpriced_model_counts_tokens_and_reports_unknown_cost(tmp_path):
    fin, events = _run(_cfg(depth=1, size=6, budget=1.0), tmp_path / "r", ScriptedTransport(cost=None))
    assert fin.status == "complete" and fin.cost_usd is None
    usage = [e for e in events if isinstance(e, ev.Usage)][-1]
    assert usage.cost_usd is None and usage.tokens_in > 0 and usage.tokens_out > 0
    assert sum(1 for e in events if isinstance(e, ev.RunWarning) and "budget cannot be enforced" in e.message) == 1


class _CutOff(ScriptedTransport):
    """Generation answers cut off by the token limit after two whole samples."""

    async def __call__(self, req):
        c = await ScriptedTransport.__call__(self, req)
        if req.slot.split(":")[1] == "gen":
            import dataclasses

            obj = json.loads(c.text)
            whole = json.dumps({"samples": obj["samples"][:2]})
            return dataclasses.replace(c, text=whole[:-2] + ', {"question": "cut of', finish_reason="length")
        return c


def test_an_answer_cut_off_by_the_token_limit_keeps_the_samples_it_finished(tmp_path):
    out = tmp_path / "r"
    fin, events = _run(_cfg(depth=1, size=12, samples_per_call=3), out, _CutOff())
    assert fin.status == "complete" and fin.rows == 12
    rows = read_jsonl(out / "dataset.jsonl")
    assert all("cut of" not in r["question"] for r in rows)
    assert {r["id"].rsplit("/", 1)[1] for r in rows} <= {"0", "1"}  # only the two whole samples of each call


class _SameQuestionTransport(ScriptedTransport):
    """Every third generated row repeats one question, each time with a new answer."""

    async def __call__(self, req):
        c = await ScriptedTransport.__call__(self, req)
        if ":gen:" not in req.slot:
            return c
        obj = json.loads(c.text)
        for s in obj["samples"]:
            if s["question"] == "duplicate question":
                self.calls["same_question"] += 1
                s["answer"] = f"answer number {self.calls['same_question']}"
        return dataclasses.replace(c, text=json.dumps(obj))


def test_a_repeated_question_with_another_answer_is_a_duplicate_when_the_prompt_fields_are_declared(tmp_path):
    t = _SameQuestionTransport(duplicate_every=3)
    fin, _ = _run(_cfg(depth=1, size=25, samples_per_call=5, prompt_fields=("question",)), tmp_path / "r", t)
    rows = read_jsonl(tmp_path / "r" / "dataset.jsonl")
    assert fin.status == "complete" and len(rows) == 25
    assert t.calls["same_question"] > 1  # the repeat was offered again and again
    assert len({r["question"] for r in rows}) == 25  # and kept once
    # without prompt fields a row is its whole text: the same question with other answers stays
    t2 = _SameQuestionTransport(duplicate_every=3)
    _run(_cfg(depth=1, size=25, samples_per_call=5), tmp_path / "r2", t2)
    rows2 = read_jsonl(tmp_path / "r2" / "dataset.jsonl")
    assert sum(r["question"] == "duplicate question" for r in rows2) > 1
