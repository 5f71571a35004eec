"""TreeSynth against its plain-sampling baseline in the report: intervals, direction, the sentence, the page."""

from __future__ import annotations

import asyncio
import json
import zlib
from pathlib import Path

import markupsafe
import numpy as np
import pytest

from tests.fakes import ScriptedTransport, hash_embedder
from tests.test_report_quality import XSS, HashEmbedder, chromium, fast_report  # noqa: F401 - fixtures
from treesynth.analytics import ab as AB
from treesynth.analytics import metrics as M
from treesynth.core.baseline import baseline_config, baseline_dir
from treesynth.core.config import build_config
from treesynth.core.run import Run


def _unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def test_row_mean_cosines_average_to_the_mean_pairwise_cosine():
    X = _unit(np.random.default_rng(0).standard_normal((50, 16)))
    assert AB.row_mean_cosines(X).mean() == pytest.approx(M.mean_pairwise_cosine(X), abs=1e-9)


def test_vendi_at_k_subsamples_when_there_are_more_rows_than_k():
    rng = np.random.default_rng(3)
    Xa, Xb = _unit(rng.standard_normal((60, 8))), _unit(rng.standard_normal((50, 8)))
    va, vb, point, lo, hi = AB.vendi_k_diff(Xa, Xb, np.random.default_rng(0), draws=20, k=30)
    assert lo <= point <= hi and lo < hi and va > 1 and vb > 1


def test_bootstrap_is_deterministic_under_a_seed_and_holds_its_point():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.3, 0.1, 200), rng.normal(0.35, 0.1, 150)
    one = AB.bootstrap_mean_diff(a, b, np.random.default_rng(7))
    two = AB.bootstrap_mean_diff(a, b, np.random.default_rng(7))
    assert one == two
    point, lo, hi = one
    assert point == pytest.approx(a.mean() - b.mean()) and lo <= point <= hi and hi - lo < 0.1
    assert AB.bootstrap_mean_diff(a, b, np.random.default_rng(8)) != one
    same = AB.bootstrap_mean_diff(np.full(20, 0.5), np.full(20, 0.5), np.random.default_rng(0))
    assert same == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(("better", "lo", "hi", "winner"), [
    ("lower", -0.2, -0.1, "tree"), ("lower", 0.1, 0.2, "baseline"), ("lower", -0.1, 0.1, "neither"),
    ("higher", 0.1, 0.2, "tree"), ("higher", -0.2, -0.1, "baseline"), ("higher", 0.0, 0.3, "neither"),
])
def test_the_winner_follows_the_better_direction(better, lo, hi, winner):
    assert AB.Row("m", "m", better, 1.0, 1.0, (lo + hi) / 2, lo, hi).winner == winner


@pytest.mark.parametrize(("diff", "lo", "hi", "says"), [
    (-0.05, -0.07, -0.03, "TreeSynth's rows are more diverse than plain sampling's."),
    (0.05, 0.03, 0.07, "TreeSynth's rows are LESS diverse than plain sampling's here."),
    (0.01, -0.01, 0.03, "The interval holds 0: no clear difference at this size."),
])
def test_the_sentence_says_which_way_it_went_even_when_treesynth_loses(diff, lo, hi, says):
    rows = [AB.Row("mean_cosine_similarity", "x", "lower", 0.30 + diff, 0.30, diff, lo, hi)]
    s = AB.sentence(rows, 200, 200)
    assert s.endswith(says) and f"{diff:+.3f}" in s and f"{lo:+.3f} to {hi:+.3f}" in s and "200 rows" in s


# ---------------------------------------------------------------------------
# a run and its baseline, made by the engine (scripted model)


TOPICS = ["apples pears orchard", "trains tracks station", "money coins bank", "clocks hours minutes", "cats dogs pets",
          "boats river harbour", "cakes flour oven", "books shelves library", "paint walls brushes", "seeds garden soil"]


class TreeAware(ScriptedTransport):
    """Rows carry their leaf's own words, so a tree's rows differ more than the root's, which all share
    one topic (a fake, but one where the A/B has a direction to find)."""

    async def __call__(self, req):
        c = await ScriptedTransport.__call__(self, req)
        node, step, idx = req.slot.split(":")
        if step == "gen":
            obj = json.loads(c.text)
            topic = TOPICS[zlib.crc32(node.encode()) % len(TOPICS)] if node != "0" else TOPICS[0]
            for i, s in enumerate(obj["samples"]):
                s["question"] = f"{topic} problem {idx} {i}"
            c = c.__class__(json.dumps(obj), c.finish_reason, c.tokens_in, c.tokens_out, c.cost)
        return c


def run_and_baseline(root: Path, size: int = 40) -> Path:
    cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "depth": 2, "size": size, "pivots": 6})
    run = Run.create(cfg, root, transport=TreeAware(), embed=hash_embedder)
    assert asyncio.run(run.execute(lambda e: None)).status == "complete"
    bcfg = baseline_config(json.loads((root / "config.json").read_text())["config"], size)
    base = Run.create(bcfg, baseline_dir(root), transport=TreeAware(), embed=hash_embedder)
    assert asyncio.run(base.execute(lambda e: None)).status == "complete"
    return root


@pytest.mark.slow
def test_the_report_puts_the_run_beside_its_baseline(tmp_path, fast_report):  # noqa: F811
    run = run_and_baseline(tmp_path / "run")
    html, doc = fast_report([run], tmp_path / "r.html")
    names = [d["name"] for d in doc["datasets"]]
    assert names == ["run", "baseline (no tree)"] and doc["datasets"][1]["n"] == doc["datasets"][0]["n"] == 40
    ab = doc["ab"]
    rows = {r["key"]: r for r in ab["rows"]}
    assert set(rows) == {"mean_cosine_similarity", "vendi_at_k", "vendi_score", "mean_nn_distance", "near_duplicate_rate", "distinct_2"}
    mc = rows["mean_cosine_similarity"]
    assert mc["treesynth"] == pytest.approx(doc["datasets"][0]["metrics"]["mean_cosine_similarity"]["value"], abs=1e-6)
    assert mc["baseline"] == pytest.approx(doc["datasets"][1]["metrics"]["mean_cosine_similarity"]["value"], abs=1e-6)
    assert mc["ci95"][0] <= mc["difference"] <= mc["ci95"][1]
    assert mc["winner"] == "tree"  # the fake's tree rows differ by their paths; the root's only by numbers
    vk = rows["vendi_at_k"]  # k covers every row of both: one value each, so no interval and no winner
    assert vk["ci95"] is None and vk["winner"] is None and vk["label"] == "Vendi score at k = 40"
    assert str(markupsafe.escape(ab["sentence"])) in html and "TreeSynth against plain sampling" in html
    assert "↓ lower" in html and "↑ higher" in html and "TreeSynth more diverse" in html
    cost = {c["key"]: c for c in ab["cost"]}
    assert cost["requests"]["treesynth"] > cost["requests"]["baseline"] > 0  # the tree's calls are counted, not assumed equal
    # deterministic under the seed: the same report twice gives the same intervals
    _, again = fast_report([run], tmp_path / "r2.html")
    assert again["ab"]["rows"] == ab["rows"]
    # a run without a baseline has no A/B
    (tmp_path / "solo").mkdir()
    _, solo = fast_report([run / "baseline"], tmp_path / "solo" / "r.html")
    assert "ab" not in solo


@pytest.mark.slow
def test_the_ab_report_in_chromium_with_both_datasets_in_the_maps(tmp_path, chromium, monkeypatch):  # noqa: F811
    from tests.test_report import open_in_chromium
    from treesynth.analytics import report as R

    monkeypatch.setattr(R, "_embedder", lambda opts, log: HashEmbedder())
    run = run_and_baseline(tmp_path / "run")
    out = tmp_path / "r.html"
    R.build_report([str(run)], out=out, log=None, map_points=80)
    shot = tmp_path / "ab.png"
    dom, errors = open_in_chromium(chromium, out, """({
      sentence: document.querySelector('.ab-sentence') && document.querySelector('.ab-sentence').innerText,
      rows: [...document.querySelectorAll('#ab-table tbody tr')].map(r => r.dataset.key),
      visible: document.querySelector('#ab-table').offsetHeight > 0,
      legends: [...document.querySelectorAll('.legendtext')].map(e => e.textContent),
    })""", screenshot=shot)
    assert errors == []
    assert dom["visible"] and dom["sentence"].startswith("By mean cosine similarity")
    assert dom["rows"][:6] == ["mean_cosine_similarity", "vendi_at_k", "vendi_score", "mean_nn_distance", "near_duplicate_rate", "distinct_2"]
    assert "run" in dom["legends"] and "baseline (no tree)" in dom["legends"]
    assert shot.stat().st_size > 10_000
