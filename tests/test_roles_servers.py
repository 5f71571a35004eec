"""Model roles against two REAL servers: llama-cpp-python's (``python -m llama_cpp.server``, the shipped
SmolLM2 GGUF), one serving the rows' model (``smollm2``), the other the tree's (``smollm2-tree``), each on one
CPU thread so the two never fight over the 2 cores. A forwarding proxy before each counts what reached it.

What must hold (issue "Trees as artifacts"): the tree's steps reach only the tree's endpoint and the rows' calls
only the rows'; the run counts and prices each role apart (its own price per model), says so in its closing
summary and its state, and a finished run re-run makes no call on either; its tree, written as YAML and given
back with --tree-from, costs no tree call, and the new run extends to a larger size.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env, read_jsonl
from tests.counting_proxy import CountingProxy
from tests.llama_server import llama_cpp_server, skip_without_server

pytestmark = pytest.mark.slow

TASK = "Short customer-support questions about a bike shop"
SIZE = 8


@pytest.fixture
def two_servers(tmp_path):
    skip_without_server()
    with contextlib.ExitStack() as stack:
        one = ("--interrupt_requests", "False")  # one thread each (tests/llama_server.py)
        _rows_proc, rows_port = stack.enter_context(llama_cpp_server(tmp_path / "rows.log", *one))
        _tree_proc, tree_port = stack.enter_context(llama_cpp_server(tmp_path / "tree.log", "--model_alias", "smollm2-tree", *one))
        rows = CountingProxy("127.0.0.1", rows_port).start()
        stack.callback(rows.stop)
        tree = CountingProxy("127.0.0.1", tree_port).start()
        stack.callback(tree.stop)
        yield rows, tree


def _cmd(rows_url: str, tree_url: str, out: Path, tmp_path: Path) -> list[str]:
    cfg = tmp_path / "roles.yaml"
    cfg.write_text("max_tokens: 448\nmax_retries: 2\n")
    return [sys.executable, "-m", "treesynth.cli", "run", TASK, "--model", "openai/smollm2", "--api-base", rows_url,
            "--tree-model", "openai/smollm2-tree", "--tree-api-base", tree_url, "--price-in", "0.1", "--price-out", "0.4",
            "--tree-price-in", "2.5", "--tree-price-out", "10", "--depth", "1", "--size", str(SIZE), "--pivots", "3",
            "--pivots-per-call", "3", "--samples-per-call", "4", "--concurrency", "2", "--fields", "question,answer",
            "--config", str(cfg), "--no-ui", "--out", str(out)]


def test_the_tree_and_the_rows_go_to_their_own_servers_priced_apart(two_servers, tmp_path):
    rows_proxy, tree_proxy = two_servers
    out = tmp_path / "run"
    cmd = _cmd(rows_proxy.url, tree_proxy.url, out, tmp_path)
    r = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = read_jsonl(out / "dataset.jsonl")
    assert len(rows) == SIZE and all(x["question"].strip() and x["answer"].strip() for x in rows)
    tree = json.loads((out / "tree.json").read_text())
    assert len(tree["nodes"]) > 1  # the root was split (by the model or, failing it, by its pivots' clusters)
    roles = json.loads((out / "state.json").read_text())["usage"]["roles"]
    # every call a server answered is one of its role's (the tree's: pivots, criterion, assignment, coverage);
    # each endpoint also refused its client's first json_schema requests (one per call in flight, --concurrency 2),
    # each asked again in json_object (negotiated per role: README, "Tested against a server we did not write")
    assert roles["tree"]["model"] == "openai/smollm2-tree" and roles["tree"]["requests"] == tree_proxy.statuses[200] >= 2
    assert roles["rows"]["model"] == "openai/smollm2" and roles["rows"]["requests"] == rows_proxy.statuses[200] >= SIZE // 4
    assert 1 <= tree_proxy.statuses[500] <= 2 and 1 <= rows_proxy.statuses[500] <= 2, (tree_proxy.statuses, rows_proxy.statuses)
    assert set(tree_proxy.statuses) == set(rows_proxy.statuses) == {200, 500}
    # priced apart: the tree at $2.5/$10 per million tokens, the rows at $0.1/$0.4
    t, w = roles["tree"], roles["rows"]
    assert t["cost"] == pytest.approx((t["tokens_in"] * 2.5 + t["tokens_out"] * 10) / 1e6, rel=1e-6)
    assert w["cost"] == pytest.approx((w["tokens_in"] * 0.1 + w["tokens_out"] * 0.4) / 1e6, rel=1e-6)
    by_role = next(line for line in r.stderr.splitlines() if line.startswith("by role:"))
    assert f"tree ${t['cost']:.4f} (openai/smollm2-tree, {t['requests']} req)" in by_role
    assert f"rows ${w['cost']:.4f} (openai/smollm2, {w['requests']} req)" in by_role
    # a finished run, run again: no call on either server
    print(r.stderr[-1500:])
    before = (tree_proxy.completions, rows_proxy.completions)
    again = subprocess.run([sys.executable, "-m", "treesynth.cli", "run", "--resume", str(out), "--no-ui"], env=cli_env(),
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert (tree_proxy.completions, rows_proxy.completions) == before
    # the tree written out, reused on the same two servers (no tree call: it is given whole), then extended
    tree_yaml = tmp_path / "tree.yaml"
    t = subprocess.run([sys.executable, "-m", "treesynth.cli", "tree", str(out), "--format", "yaml"], env=cli_env(),
                       capture_output=True, text=True, timeout=120)
    assert t.returncode == 0, t.stderr
    tree_yaml.write_text(t.stdout)
    reused = tmp_path / "reused"
    cmd2 = _cmd(rows_proxy.url, tree_proxy.url, reused, tmp_path)
    cmd2[cmd2.index(TASK):cmd2.index(TASK) + 1] = ["--tree-from", str(tree_yaml)]
    before = (tree_proxy.completions, rows_proxy.completions)
    r2 = subprocess.run(cmd2, env=cli_env(), capture_output=True, text=True, timeout=1500)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert tree_proxy.completions == before[0] and rows_proxy.completions > before[1]  # rows only: the tree was given
    first = (reused / "dataset.jsonl").read_bytes().splitlines()
    assert len(first) == SIZE
    ext = subprocess.run([sys.executable, "-m", "treesynth.cli", "extend", str(reused), "--size", str(SIZE + 4), "--no-ui"],
                         env=cli_env(), capture_output=True, text=True, timeout=1500)
    assert ext.returncode == 0, ext.stderr[-3000:]
    rows2 = read_jsonl(reused / "dataset.jsonl")
    assert len(rows2) == SIZE + 4 and len({x["id"] for x in rows2}) == SIZE + 4
    kept = {json.loads(x)["id"]: x for x in first}
    assert set(kept) <= {x["id"] for x in rows2}  # the first rows are all still there (byte for byte: tests/test_extend.py)
    assert {x["leaf_id"] for x in rows2} <= {n["id"] for n in json.loads((reused / "tree.json").read_text())["nodes"] if n["status"] == "leaf"}
