"""treesynth balance with the scripted provider (and a hashing embedder where real embeddings are not the point)."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import call_cli, cli_env, gsm8k_file, read_jsonl, run_cli
from tests.fakes import ScriptedTransport, hash_embedder
from treesynth.core.balance import create_balance_run, farthest_point_keep, leaf_targets, load_data, validate_route
from treesynth.core.errors import ConfigError
from treesynth.core.partition import PartitionError
from treesynth.core.run import Run
from treesynth.core.tree import Node


def _data_file(tmp_path, n=80):
    rows = [{"question": f"Problem {i}: {'apples' if i % 3 else 'trains'} and {'money' if i % 5 else 'time'} number {i}", "answer": f"#### {i}", "extra": i}
            for i in range(n)]
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p, rows


def _balance(data_path, out, route="llm", target_per_leaf=None, size=None, transport=None):
    data = load_data(data_path, "question", ("question", "answer"))
    spec = {"data": str(data_path), "field": "question", "fields": ["question", "answer"], "route": route, "route_batch": 10,
            "target_per_leaf": target_per_leaf, "size": size, "embedder": None}
    run = create_balance_run(data, spec, {"task": "math word problems", "depth": 2, "pivots": 6, "samples_per_call": 3}, out,
                            transport=transport or ScriptedTransport(fields=("question", "answer")), embed=hash_embedder)
    fin = asyncio.run(run.execute())
    return fin, run


def _table(out):
    with open(out / "before_after.csv") as f:
        return list(csv.DictReader(f))


def test_balance_routes_every_row_once_and_meets_targets(tmp_path):
    data_path, rows = _data_file(tmp_path)
    out = tmp_path / "b"
    fin, run = _balance(data_path, out, target_per_leaf=7)
    assert fin.status == "complete", fin
    routes = [json.loads(line) for line in (out / "routes.jsonl").read_text().splitlines()]
    tree = {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}
    leaves = [i for i, n in tree.items() if n["status"] == "leaf"]
    placed = {}
    for rec in routes:
        for cid, idx in rec["children"].items():
            if cid in leaves:
                for i in idx:
                    assert i not in placed, "a row was routed to two leaves"
                    placed[i] = cid
    assert sorted(placed) == list(range(len(rows))), "every row reaches exactly one leaf"
    table = _table(out)
    assert len(table) == len(leaves)
    assert all(int(t["after"]) == 7 for t in table)
    assert sum(int(t["before"]) for t in table) == len(rows)
    balanced = read_jsonl(out / "balanced.jsonl")
    assert len(balanced) == 7 * len(leaves)
    dropped = (out / "dropped_ids.txt").read_text().split()
    originals = [r for r in balanced if r["provenance"] == "original"]
    assert len(originals) + len(dropped) == len(rows)
    by_id = {f"row-{i}": r for i, r in enumerate(rows)}
    for r in originals:
        src = by_id[r["id"]]
        assert {k: r[k] for k in src} == src, "an original row was altered"
        assert r["leaf_id"] == placed[int(r["id"].split("-")[1])]
    synth = [r for r in balanced if r["provenance"] == "synthesised"]
    assert synth, "sparse leaves got no new rows"
    for r in synth:
        assert r["path"] == run.steering.tree.path(r["leaf_id"]) and r["question"]
    summary = json.loads((out / "balance_summary.json").read_text())
    assert summary["after"]["gini"] <= summary["before"]["gini"]
    assert summary["llm_route_calls"] > 0


def test_balance_to_a_size(tmp_path):
    data_path, rows = _data_file(tmp_path, n=50)
    out = tmp_path / "b"
    fin, _ = _balance(data_path, out, size=40, route="embed")
    assert fin.status == "complete"
    assert len(read_jsonl(out / "balanced.jsonl")) == 40
    table = _table(out)
    afters = [int(t["after"]) for t in table]
    assert sum(afters) == 40 and max(afters) - min(afters) <= 1


def test_pure_pieces():
    emb = hash_embedder([f"text {i} {'x' * (i % 4)}" for i in range(30)])
    keep = farthest_point_keep(emb, 10, seed=1)
    assert len(keep) == 10 and len(set(keep)) == 10 and keep == sorted(keep)
    assert farthest_point_keep(emb, 50, seed=1) == list(range(30))
    # three tight clusters: keeping 3 rows keeps one of each (uniform sampling often would not)
    rng = np.random.default_rng(0)
    centres = np.eye(3, 8, dtype=np.float32)
    pts = np.concatenate([c + 0.05 * rng.standard_normal((10, 8)).astype(np.float32) for c in centres])
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    for seed in range(5):
        kept = farthest_point_keep(pts, 3, seed=seed)
        assert sorted(i // 10 for i in kept) == [0, 1, 2]
    leaves = [Node(id=f"0.{i}", parent="0", depth=1) for i in range(3)] + [Node(id="0.3", parent="0", depth=1, values=["a", "b"])]
    assert leaf_targets(leaves, 5, None) == {"0.0": 5, "0.1": 5, "0.2": 5, "0.3": 10}
    assert sum(leaf_targets(leaves, None, 11).values()) == 11
    assert validate_route({"labels": [1, "2", 3]}, 3, 3) == [0, 1, 2]
    for bad in ({"labels": [1, 2]}, {"labels": [0, 1, 1]}, {"labels": [1, 2, 9]}, {"nope": 1}, [1, 2, 3]):
        with pytest.raises(PartitionError):
            validate_route(bad, 3, 3)


def test_bad_inputs_give_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    nums = tmp_path / "nums.csv"
    nums.write_text("question,score\n1,2\n3,4\n")
    clash = tmp_path / "clash.jsonl"
    clash.write_text(json.dumps({"question": "q", "path": "x"}) + "\n")
    cases = [
        (["balance", str(tmp_path / "missing.jsonl"), "--no-ui", "--task", "t"], "does not exist"),
        (["balance", str(empty), "--no-ui", "--task", "t"], "is empty"),
        (["balance", str(nums), "--no-ui", "--field", "question", "--task", "t"], "not text"),
        (["balance", str(nums), "--no-ui", "--field", "nope", "--task", "t"], "has no column 'nope'"),
        (["balance", str(clash), "--no-ui", "--task", "t"], "already has column"),
        (["balance", str(tmp_path / "x.txt"), "--no-ui", "--task", "t"], "does not exist"),
    ]
    for args, needle in cases:
        r = call_cli(*args)
        assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], (args, r.stderr)
    with pytest.raises(ConfigError, match="not both"):
        data_path, _ = _data_file(tmp_path)
        data = load_data(data_path, "question", None)
        create_balance_run(data, {"route": "embed", "target_per_leaf": 3, "size": 10}, {"task": "t"}, tmp_path / "o", embed=hash_embedder)


@pytest.mark.slow
def test_balance_resumes_after_sigkill(tmp_path):
    data_path, rows = _data_file(tmp_path, n=60)
    out = tmp_path / "b"
    env = cli_env()
    kills = 0
    for attempt in range(4):
        args = [sys.executable, "-m", "tests.balance_worker", str(data_path), str(out)] + (["--resume"] if attempt else [])
        p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 120  # a loaded machine starts Python slowly: kill only once the run exists
        while not (out / "config.json").exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.6 + 0.4 * attempt)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            kills += 1
        else:
            break
    assert kills >= 1
    r = subprocess.run([sys.executable, "-m", "tests.balance_worker", str(data_path), str(out), "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "complete", r.stderr[-2000:]
    balanced = read_jsonl(out / "balanced.jsonl")
    assert len({b["id"] for b in balanced}) == len(balanced)
    assert all(int(t["after"]) == 12 for t in _table(out))
    # the same balance without interruption gives the same rows
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, "-m", "tests.balance_worker", str(data_path), str(ref)], env=env, check=True, capture_output=True)
    assert sorted(b["id"] for b in balanced) == sorted(b["id"] for b in read_jsonl(ref / "balanced.jsonl"))


def test_estimate_covers_balance_runs():
    r = call_cli("estimate", "--balance", str(gsm8k_file("test")), "--route", "llm", "--route-batch", "20", "--depth", "2", "--model", "openai/gpt-4o-mini")
    assert r.returncode == 0, r.stderr
    assert "1,319 rows" in r.stdout and "calls:" in r.stdout and "$" in r.stdout
    e = call_cli("estimate", "--balance", str(gsm8k_file("test")), "--route", "embed", "--depth", "2")
    assert e.returncode == 0
    calls = lambda out: int(out.split("calls:")[1].split()[0].lstrip("~").replace(",", ""))  # noqa: E731
    assert calls(e.stdout) < calls(r.stdout), "embedding routing makes no routing calls"


@pytest.mark.slow
def test_balance_real_gsm8k_with_embedding_routing(stub, tmp_path):
    out = tmp_path / "b"
    r = call_cli("balance", str(gsm8k_file("test")), "--field", "question", "--fields", "question,answer", "--task", "GSM8K-style math word problems",
                 "--model", "openai/stub", "--api-base", stub.url, "--depth", "2", "--route", "embed", "--no-ui", "--out", str(out),
                 "--no-dedup",  # the stub server's rows are templates of each other: semantic dedup would turn them all away
                 env=cli_env(TREESYNTH_CACHE_DIR=str(tmp_path / "cache")))
    assert r.returncode == 0, r.stderr[-3000:]
    n_input = sum(1 for _ in open(gsm8k_file("test")))
    table = _table(out)
    assert sum(int(t["before"]) for t in table) == n_input
    assert sum(int(t["after"]) for t in table) == n_input  # --size defaults to the input's size
    assert all(int(t["after"]) == int(t["kept"]) + int(t["synthesised"]) for t in table)
    assert abs(sum(float(t["share_after"]) for t in table) - 1) < 1e-3
    balanced = read_jsonl(out / "balanced.jsonl")
    dropped = (out / "dropped_ids.txt").read_text().split()
    assert len(balanced) == n_input and len([b for b in balanced if b["provenance"] == "original"]) + len(dropped) == n_input
    summary = json.loads((out / "balance_summary.json").read_text())
    assert summary["after"]["entropy"] > summary["before"]["entropy"]
    assert summary["llm_route_calls"] == 0
    assert "balance:" in r.stderr and "entropy" in r.stderr


@pytest.mark.slow
def test_balance_tiny_run_with_the_embedded_model(tmp_path):
    data = tmp_path / "tiny.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in [
        ("Tom has 3 apples and buys 2 more. How many apples does he have?", "5"),
        ("A bus carries 20 people and 5 get off. How many are left?", "15"),
        ("Sara reads 4 pages a day for 3 days. How many pages?", "12"),
        ("A pen costs 2 dollars. How much do 6 pens cost?", "12"),
    ]))
    out = tmp_path / "b"
    r = run_cli("balance", str(data), "--fields", "question,answer", "--task", "Short math word problems", "--depth", "1",
                "--pivots", "3", "--target-per-leaf", "6", "--samples-per-call", "2", "--concurrency", "1", "--no-ui", "--out", str(out),
                env=cli_env(TREESYNTH_CACHE_DIR=str(tmp_path / "cache")), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    balanced = read_jsonl(out / "balanced.jsonl")
    table = _table(out)
    assert len(balanced) == sum(int(t["after"]) for t in table) == 6 * len(table)
    assert [b for b in balanced if b["provenance"] == "synthesised"]


class _CannotClassify(ScriptedTransport):
    """A model too weak to classify (like the embedded one): every classification leaves pivots out."""

    async def __call__(self, req):
        from treesynth.core.llm import Completion

        if req.slot.split(":")[1] == "criterion":
            self.calls["classify"] = self.calls.get("classify", 0) + 1
            return Completion('{"dimension": "dimension_1", "values": ["value", "value"]}', "stop", 50, 20, 0.0)
        return await super().__call__(req)


def test_a_model_that_cannot_classify_gets_an_embedding_cluster_split(tmp_path):
    """Balance must still partition the data when the model gives no valid split: the node's rows are
    clustered by embedding, each cluster named by its distinctive words, and routed by centroid."""
    from tests.fakes import hash_embedder
    from treesynth.core.clusters import is_fallback_dimension

    rows = [{"question": f"{topic} problem {i}: {words}", "answer": str(i)}
            for i in range(120)
            for topic, words in [(("Money", "dollars cost price pay"), ("Time", "hours minutes clock late"),
                                  ("Weight", "pounds ounces heavy scale"))[i % 3]]]
    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_data(p, "question", ("question", "answer"))
    spec = {"data": str(p), "field": "question", "fields": ["question", "answer"], "route": "embed", "route_batch": 10,
            "target_per_leaf": 10, "size": None, "embedder": None}
    out = tmp_path / "b"
    t = _CannotClassify(fields=("question", "answer"))
    run = create_balance_run(data, spec, {"task": "math word problems", "depth": 1, "pivots": 6, "samples_per_call": 3}, out,
                            transport=t, embed=hash_embedder)
    fin = asyncio.run(run.execute())
    assert fin.status == "complete" and t.calls["classify"] >= 1
    tree = {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}
    root = tree["0"]
    assert root["status"] == "expanded" and is_fallback_dimension(root["split_dimension"])
    leaves = [n for n in tree.values() if n["status"] == "leaf"]
    assert len(leaves) >= 2 and all(n["value"].startswith("about: ") for n in leaves)
    assert len({n["value"] for n in leaves}) == len(leaves)
    table = _table(out)
    assert sum(int(r["before"]) for r in table) == len(rows)  # every row in exactly one leaf
    assert all(int(r["after"]) == 10 for r in table)
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert any("split by embedding clusters" in e.get("message", "") for e in events if e["event"] == "warning")


def test_kmeans_and_cluster_names_are_deterministic_pure_functions():
    from treesynth.core.clusters import distinctive_words, fallback_k, kmeans, unique_names

    rng = np.random.default_rng(0)
    centres = np.eye(4, 16)
    X = np.concatenate([c + 0.05 * rng.normal(size=(30, 16)) for c in centres[:3]])
    C1, L1 = kmeans(X, 3, seed=7)
    C2, L2 = kmeans(X, 3, seed=7)
    assert (L1 == L2).all() and np.allclose(C1, C2)
    assert sorted(np.bincount(L1).tolist()) == [30, 30, 30]  # three clean groups found
    assert np.allclose(np.linalg.norm(C1, axis=1), 1.0)
    texts = ["apples and pears cost money"] * 3 + ["trains leave hours late"] * 3
    words = distinctive_words(texts, [0, 0, 0, 1, 1, 1], 2)
    assert len(words[0]) == len(words[1]) == 3
    assert set(words[0]) <= {"apples", "pears", "cost", "money"} and set(words[1]) <= {"trains", "leave", "hours", "late"}
    assert unique_names(["a", "b", "a"]) == ["a", "b", "a (2)"]
    assert fallback_k(5, 10) == 0 and fallback_k(50, 10) == 2 and fallback_k(10_000, 10) == 6 and fallback_k(10_000, 3) == 3


def test_tree_command_counts_a_balance_runs_rows_per_leaf(tmp_path):
    """`treesynth tree` on a balance run: each leaf's kept originals plus its synthesised rows, out of
    its balanced target (samples.jsonl alone holds only the synthesised rows)."""
    data_path, rows = _data_file(tmp_path)
    out = tmp_path / "b"
    fin, _ = _balance(data_path, out, target_per_leaf=7)
    assert fin.status == "complete"
    r = call_cli("tree", str(out))
    assert r.returncode == 0, r.stderr
    table = {t["leaf_id"]: t for t in _table(out)}
    tree = {n["id"]: n for n in json.loads((out / "tree.json").read_text())["nodes"]}
    labels = {}
    for lid in table:
        n = tree[lid]
        labels[lid] = f"{n['dimension']} = {n['value']}"
    lines = r.stdout.splitlines()
    for lid, label in labels.items():
        line = next(line for line in lines if line.split("── ", 1)[-1].startswith(label + "  "))
        assert line.rstrip().endswith(f"  {table[lid]['after']}/7"), line
    assert lines[0].startswith("(root)  ") and f"  {7 * len(table)}/{7 * len(table)}" in lines[0], lines[0]
    assert lines[-1].endswith(f"{7 * len(table)} samples"), lines[-1]


def _progress_of(events):
    from treesynth.core.progress import Progress

    p = Progress()
    for e in events:
        p.apply(e)
    return p


@pytest.mark.parametrize("size, target_per_leaf", [(30, None), (None, 7)])
def test_balance_progress_counts_towards_the_balanced_size(tmp_path, size, target_per_leaf):
    from treesynth.core import events as ev

    data_path, rows = _data_file(tmp_path)
    data = load_data(data_path, "question", ("question", "answer"))
    spec = {"data": str(data_path), "field": "question", "fields": ["question", "answer"], "route": "embed", "route_batch": 10,
            "target_per_leaf": target_per_leaf, "size": size, "embedder": None}
    run = create_balance_run(data, spec, {"task": "math word problems", "depth": 2, "pivots": 6, "samples_per_call": 3}, tmp_path / "b",
                            transport=ScriptedTransport(fields=("question", "answer")), embed=hash_embedder)
    events = []
    fin = asyncio.run(run.execute(events.append))
    assert fin.status == "complete"
    total = len(read_jsonl(tmp_path / "b" / "balanced.jsonl"))
    assert total == (size or 7 * len(_table(tmp_path / "b")))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    if size is not None:
        assert started.size == size, "the target size is known from the start"
    assert all(e.samples_target == total for e in events if isinstance(e, ev.LeafProgress))
    p = _progress_of(events)
    assert (p.samples_done, p.size) == (total, total), "progress ends at the balanced size, not at the input's"


def test_balance_progress_after_resume_counts_the_kept_rows(tmp_path):
    from treesynth.core import events as ev

    data_path, rows = _data_file(tmp_path)
    out = tmp_path / "b"
    fin, _ = _balance(data_path, out, size=30, route="embed")
    assert fin.status == "complete"
    events = []
    run = Run.resume(out, transport=ScriptedTransport(fields=("question", "answer")), embed=hash_embedder)
    asyncio.run(run.execute(events.append))
    started = next(e for e in events if isinstance(e, ev.RunStarted))
    assert (started.samples_done, started.size) == (30, 30)


class _InferOnly(ScriptedTransport):
    def __init__(self, answers, **kw):
        super().__init__(**kw)
        self.answers = list(answers)

    async def __call__(self, req):
        from treesynth.core.llm import Completion

        self.calls["infer"] += 1
        return Completion(json.dumps({"task": self.answers.pop(0) if self.answers else "question (JSON data)"}), "stop", 10, 10, 0.0)


@pytest.mark.parametrize("answers, expected", [
    # only the data's format (what the embedded model answers): asked again, then the default
    (["question (JSON data)"] * 3, "Rows like those in the 'question' column of this dataset"),
    (["JSON data with question and answer fields", "Rows of JSON data.", "A dataset of question records in JSON format"],
     "Rows like those in the 'question' column of this dataset"),
    # a format note after a real description is dropped
    (["Math word problems with worked answers (JSON data)"], "Math word problems with worked answers"),
    # a bad first answer, a good second one
    (["question (JSON data)", "Short arithmetic word problems about apples and trains"],
     "Short arithmetic word problems about apples and trains"),
])
def test_inferred_task_that_only_describes_the_format_is_repaired_or_replaced(tmp_path, answers, expected):
    from treesynth.core.balance import fallback_task, infer_task

    data_path, _ = _data_file(tmp_path)
    data = load_data(data_path, "question", ("question", "answer"))
    t = _InferOnly(answers)
    task = asyncio.run(infer_task(data, {"model": "fake/scripted"}, transport=t))
    assert task == expected
    assert "JSON" not in task
    if expected == fallback_task(data):
        assert t.calls["infer"] == 3
