"""The TUI's pure parts: the event-to-view model, the bridge's coalescing, and the text it shows."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console

from tests.fakes import ScriptedTransport
from tests.test_tui_support import cfg
from treesynth.core import events as ev
from treesynth.core.progress import Progress, closing_rows
from treesynth.core.run import Run
from treesynth.core.tree import Node, Tree
from treesynth.tui.bridge import EngineEvents, EventBridge, UsageUpdated
from treesynth.tui.format import compact, detail_renderable, eta_seconds, stats_progress_line, stats_usage_line, summary_renderable
from treesynth.tui.model import CLASSIFY, DONE, PIVOTS, PRUNED_S, QUEUED, SPLIT, SUPPLEMENT, SYNTH, RunModel


def _expanded(node_id, children, dim="topic", again_total=0):
    return ev.NodeExpanded(
        node_id=node_id, dimension=dim, coverage="complete",
        children=tuple(ev.ChildInfo(node_id=f"{node_id}.{i}", value=v, source=s, target=t) for i, (v, s, t) in enumerate(children)),
        nodes_total=again_total, nodes_expanded=1,
    )


def _plain(renderable, width=100) -> str:
    c = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    c.print(renderable)
    return c.export_text()


def test_events_grow_the_model_and_samples_roll_up():
    m = RunModel(size=10)
    ch = m.apply([
        ev.NodeStarted(node_id="0", parent_id=None, depth=0, stage="pivots"),
    ])
    assert m.nodes["0"].state == PIVOTS and ch.dirty == {"0"}
    m.apply([ev.NodeStarted(node_id="0", parent_id=None, depth=0, stage="classify")])
    assert m.nodes["0"].state == CLASSIFY
    m.apply([ev.NodeStarted(node_id="0", parent_id=None, depth=0, stage="supplement")])
    assert m.nodes["0"].state == SUPPLEMENT
    ch = m.apply([_expanded("0", [("algebra", "pivots", 6), ("geometry", "coverage", 4)])])
    assert ch.added == [("0", ["0.0", "0.1"])] and m.nodes["0"].state == SPLIT
    assert m.nodes["0.0"].text == "topic = algebra" and m.nodes["0.0"].counts == "0/6"
    ch = m.apply([
        ev.NodeLeaf(node_id="0.0", target=6),
        ev.NodeLeaf(node_id="0.1", target=4),
        ev.NodeStarted(node_id="0.0", parent_id="0", depth=1, stage="synthesis"),
        ev.LeafProgress(node_id="0.0", done=5, target=6, samples_done=5, samples_target=10, preview=("a", "b")),
    ])
    assert m.nodes["0.0"].state == SYNTH and m.nodes["0.1"].state == QUEUED
    assert m.nodes["0"].done == 5 and m.nodes["0"].counts == "5/10"
    m.apply([
        ev.LeafProgress(node_id="0.0", done=6, target=6, samples_done=6, samples_target=10, preview=("c",)),
        ev.LeafProgress(node_id="0.1", done=4, target=4, samples_done=10, samples_target=10),
    ])
    assert m.nodes["0.0"].state == DONE and m.nodes["0.0"].preview == ["a", "b", "c"]
    assert m.nodes["0"].done == 10 and m.nodes["0"].state == DONE
    assert [v.id for v in m.walk()] == ["0", "0.0", "0.1"]


def test_steering_events_prune_reset_and_reconcile_children():
    m = RunModel(size=12)
    m.apply([_expanded("0", [("a", "pivots", 4), ("b", "pivots", 4), ("c", "coverage", 4)])])
    m.apply([_expanded("0.0", [("x", "pivots", 2), ("y", "pivots", 2)], dim="size")])
    # prune greys out the whole subtree
    ch = m.apply([ev.NodePruned(node_id="0.0", reason="pruned by user")])
    assert {m.nodes[i].state for i in ("0.0", "0.0.0", "0.0.1")} == {PRUNED_S}
    assert ch.steering and any("pruned" in line for _lvl, line in ch.log)
    # a value removed (pruned) then the parent re-emitted without it: kept, greyed; a rename updates the label;
    # an added value appears in order
    m.apply([ev.NodePruned(node_id="0.2", reason="value removed by user")])
    ch = m.apply([
        ev.NodeExpanded(node_id="0", dimension="topic", coverage="complete", nodes_total=0, nodes_expanded=1, children=(
            ev.ChildInfo(node_id="0.1", value="B renamed", source="pivots", target=6),
            ev.ChildInfo(node_id="0.3", value="d", source="user", target=6),
        )),
    ])
    assert m.nodes["0"].children == ["0.0", "0.1", "0.2", "0.3"]
    assert m.nodes["0.1"].value == "B renamed" and m.nodes["0.3"].source == "user"
    assert m.nodes["0.2"].state == PRUNED_S and m.nodes["0.2"].value == "c"
    assert {"0", "0.1", "0.3"} <= ch.dirty and "0" in ch.restructured and ch.steering
    # a reset drops the node's children
    m.apply([_expanded("0.1", [("p", "pivots", 3), ("q", "pivots", 3)], dim="size")])
    ch = m.apply([ev.NodeReset(node_id="0.1")])
    assert m.nodes["0.1"].children == [] and "0.1.0" not in m.nodes and {"0.1.0", "0.1.1"} <= ch.removed
    assert "0.1" in ch.restructured and m.nodes["0.1"].state == QUEUED


def test_seed_from_a_saved_tree_and_sync_targets():
    t = Tree.new(10)
    root = t.root
    root.status, root.children, root.split_dimension = "expanded", ["0.0", "0.1"], "topic"
    t.upsert(Node(id="0.0", parent="0", depth=1, dimension="topic", value="a", target=6, status="leaf"))
    t.upsert(Node(id="0.1", parent="0", depth=1, dimension="topic", value="b", target=4, status="pruned"))
    m = RunModel()
    m.seed_from_tree(t, {"0.0": 6})
    assert m.nodes["0.0"].state == DONE and m.nodes["0.1"].state == PRUNED_S
    assert m.nodes["0"].done == 6 and m.nodes["0"].state == SPLIT
    t.get("0.0").target = 9
    assert m.sync_from_tree(t) == {"0.0"} and m.nodes["0.0"].state == QUEUED and m.nodes["0.0"].counts == "6/9"


def test_the_model_mirrors_a_whole_engine_run(tmp_path):
    events: list[ev.Event] = []
    run = Run.create(cfg(depth=3, size=90), tmp_path / "r", transport=ScriptedTransport())
    asyncio.run(run.execute(events.append))
    m = RunModel(size=90)
    m.apply(events)
    tree = run.recovered.tree
    assert set(m.nodes) == set(tree.nodes)
    for n in tree:
        vn = m.nodes[n.id]
        assert vn.children == n.children and vn.target == n.target
        assert vn.state == DONE, (n.id, vn.state)
    assert m.nodes["0"].done == 90


class _Sink:
    def __init__(self):
        self.messages = []

    def post_message(self, message):
        self.messages.append(message)
        return True


def test_bridge_coalesces_usage_and_never_drops_tree_events():
    sink = _Sink()
    b = EventBridge(sink)
    u = [ev.Usage(requests=i, cache_hits=0, tokens_in=i, tokens_out=i, cost_usd=0.0, retries=0, errors=0, invalid=0, elapsed_s=i)
         for i in range(3)]
    tree_events = [ev.NodeLeaf(node_id=f"0.{i}", target=1) for i in range(100)]
    b(u[0])
    for e in tree_events[:50]:
        b(e)
    b(u[1])
    b(u[2])
    for e in tree_events[50:]:
        b(e)
    kinds = [type(m) for m in sink.messages]
    assert kinds.count(EngineEvents) == 1  # one signal for any number of queued events
    assert [e for e, _t in b.queue] == tree_events  # all of them, in order
    usage_msgs = [m for m in sink.messages if isinstance(m, UsageUpdated)]
    assert usage_msgs[1].can_replace(usage_msgs[2]) and not usage_msgs[0].can_replace(EngineEvents())
    assert EngineEvents().can_replace(EngineEvents())
    b.signalled = False
    b(ev.NodeLeaf(node_id="0.x", target=1))
    assert [type(m) for m in sink.messages].count(EngineEvents) == 2


def test_stats_and_summary_text():
    p = Progress(size=1000, budget=5.0, samples_done=250, samples_at_start=50)
    p.apply(ev.Usage(requests=120, cache_hits=3, tokens_in=123456, tokens_out=7890, cost_usd=1.25, retries=4, errors=2,
                     invalid=1, elapsed_s=1))
    line = stats_usage_line(p, elapsed=60.0, requests_at_start=0).plain
    assert "$1.2500 of $5" in line and "123k in / 7.89k out" in line and "120 (2.0/s)" in line
    assert "retries 4" in line and "errors 2" in line and "invalid 1" in line
    assert eta_seconds(p, 60.0) == 60.0 / 200 * 750
    prog = stats_progress_line(p, 60.0, "paused").plain
    assert "250/1,000 samples" in prog and "elapsed 01:00" in prog and "ETA 03:45" in prog and "paused" in prog
    p.batches = ev.Batches(submitted=3, running=1, finished=2, requests=30, answered=20, resubmitted=2,
                           last_status="msgbatch_01: in_progress (processing 10, succeeded 20)")
    prog = stats_progress_line(p, 60.0, "running").plain
    assert "batches 1 running, 2 done" in prog and "batched 20/30" in prog and "sent again 2" in prog
    assert "provider in_progress (processing 10, succeeded 20)" in prog and "msgbatch_01" not in prog
    assert compact(999) == "999" and compact(1500) == "1.5k" and compact(2_500_000) == "2.5M"
    fin = ev.RunFinished(status="stopped", run_dir="runs/x", rows=10, size=20, leaves=4, nodes=5, dataset=None,
                         cost_usd=None, requests=9, message="stopped on request")
    s = _plain(summary_renderable(closing_rows(fin), ok=False))
    assert "stopped (stopped on request)" in s and "treesynth run --resume runs/x" in s and "unknown over 9 requests" in s


def test_detail_pane_shows_sources_pivots_open_ended_and_reason():
    t = Tree.new(10)
    root = t.root
    root.status, root.split_dimension, root.coverage = "expanded", "topic", "open_ended"
    root.children = ["0.0"]
    root.pivots = [{"question": "What is 2+2?", "answer": "4"}]
    root.split_values = [{"value": "sums", "source": "pivots", "pivots": [0]}, {"value": "ratios", "source": "coverage", "pivots": []},
                         {"value": "money", "source": "user", "pivots": []}]
    t.upsert(Node(id="0.0", parent="0", depth=1, dimension="topic", value="one of 9 topic values", source="open_ended",
                  values=[f"v{i}" for i in range(9)], target=10, status="leaf", reason="open-ended value list"))
    m = RunModel()
    m.seed_from_tree(t, {})
    text = _plain(detail_renderable(m.nodes["0"], t.get("0"), m.path("0")))
    assert "sums  [pivots: 1]" in text and "ratios  [coverage]" in text and "money  [user]" in text
    assert "open-ended" in text and "What is 2+2?" in text
    leaf = _plain(detail_renderable(m.nodes["0.0"], t.get("0.0"), m.path("0.0")))
    assert "topic = one of 9 topic values" in leaf and "9 values" in leaf and "open-ended value list" in leaf


def test_the_stats_line_shows_rows_waiting_in_the_gates():
    p = Progress(size=1000)
    p.apply(ev.Quality(generated=1300, in_gates=256))
    assert "in gates 256" in " ".join(stats_progress_line(p, 5.0, "running").plain.split())
    p.apply(ev.Quality(generated=1300, in_gates=0))
    assert "in gates 0" in " ".join(stats_progress_line(p, 5.0, "running").plain.split())
    p2 = Progress(size=1000)
    p2.apply(ev.Quality())
    assert "in gates" not in stats_progress_line(p2, 5.0, "running").plain  # no dedup: nothing to show
