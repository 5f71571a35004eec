"""Reports of large datasets: the embedding sample (``--embed-sample``, ``settings.EMBED_LIMIT``), the
counts that stay exact over every row, the page saying which is which, the lean per-row storage of a
run's rows, and the progress the long stages report (a live bar on a terminal, plain lines otherwise).

Runs are written directly (tests.test_report_quality's tree of 6 leaves) and reports are built with a
hashing embedder and, where the maps do not matter, without them: these tests are about which rows each
number is computed on, not about the embeddings (tests/test_report.py does those)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from tests.test_report_quality import write_run
from treesynth.analytics import metrics as M
from treesynth.analytics import progress as P
from treesynth.analytics.analysis import distinct_texts, pairs_for_all_rows
from treesynth.analytics.dataset import shared_path, uniform_sample
from treesynth.cli.main import main as cli_main

PER_LEAF = 60  # 6 leaves: 360 rows
DUP_EVERY = 10  # every 10th row of a leaf repeats one text (in another case and spacing)


def big_run(root: Path, per_leaf: int = PER_LEAF) -> list[dict]:
    """A complete run of ``per_leaf`` rows in each of 6 leaves (topic × difficulty), every
    ``DUP_EVERY``-th row of a leaf the same question; returns its rows."""
    rows = write_run(root, per_leaf)
    for r in rows:
        k = r["slot"]
        if k % DUP_EVERY == 0:
            r["question"] = "How  many apples are LEFT? " if k % 20 else "how many apples are left?"
    (root / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


class HashEmbedder:
    """The report's embedder interface over tests.fakes.hash_embedder; remembers what it embedded."""

    label = "hash-64"

    def __init__(self) -> None:
        self.stats: list[dict] = []
        self.calls: list[int] = []

    def embed(self, texts, progress=None):
        from tests.fakes import hash_embedder

        texts = list(texts)
        self.calls.append(len(texts))
        for done in range(0, len(texts), 20):  # progress as the real embedder reports it: per chunk
            if progress is not None and done:
                progress(done, len(texts))
        if progress is not None:
            progress(len(texts), len(texts))
        return hash_embedder(texts).astype(np.float32)

    def describe(self) -> dict:
        return {"model": "hash-64", "precision": "fp32", "dim": 64}


@pytest.fixture
def fake_report(monkeypatch):
    """``treesynth.analytics.report`` with the hashing embedder (``.embedder_used``) and maps that are
    not fitted (every point at 0, 0) but drawn from the rows the real ``build_maps`` picks."""
    from treesynth.analytics import project as PR
    from treesynth.analytics import report as R

    emb = HashEmbedder()
    monkeypatch.setattr(R, "_embedder", lambda opts, log: emb)
    monkeypatch.setattr(R, "embedder_used", emb, raising=False)  # for the tests' eyes only

    def no_fit(X, seed, log=None, methods=("umap", "tsne"), meters=None):
        return {"umap": (np.zeros((len(X), 2), np.float32), {"method": "stub", "points": len(X)})}

    monkeypatch.setattr(PR, "project", no_fit)
    return R


def _doc(res) -> dict:
    return json.loads(Path(res.metrics_path).read_text())


# ---------------------------------------------------------------------------
# the sample and what is exact


def test_embedding_metrics_on_the_sample_and_counts_over_every_row(tmp_path, fake_report):
    rows = big_run(tmp_path / "run")
    n = len(rows)
    res = fake_report.build_report([str(tmp_path / "run")], out=tmp_path / "r.html", log=None, embed_sample=50)
    doc = _doc(res)
    d = doc["datasets"][0]
    m = d["metrics"]
    assert fake_report.embedder_used.calls == [50]  # only the sample was embedded
    assert doc["settings"]["embed_limit"] == 50
    assert d["n"] == n and d["embedded"] == {"rows": 50, "of": n, "sampled": True, "seed": 0}
    # exact over all rows
    assert m["rows"]["value"] == m["rows"]["n"] == n
    dups = 6 * (PER_LEAF // DUP_EVERY) - 1  # one text repeated across all leaves: all but one copy are duplicates
    assert m["exact_duplicate_rate"]["n"] == n and m["exact_duplicate_rate"]["value"] == pytest.approx(dups / n)
    assert m["mean_chars"]["n"] == n
    assert m["mean_chars"]["value"] == pytest.approx(np.mean([len(r["question"]) for r in rows]))
    for key in ("leaves", "empty_leaves", "thin_leaves", "occupancy_entropy", "leaf_gini"):
        assert m[key]["n"] == n, key
    assert d["leaf_sizes"] == [PER_LEAF] * 6 and d["coverage"]["rows_in_leaves"] == n
    assert m["occupancy_entropy"]["value"] == pytest.approx(1.0) and m["leaf_gini"]["value"] == pytest.approx(0.0)
    assert [b["samples"] for b in d["branches"]] == [3 * PER_LEAF] * 2 and sum(b["n"] for b in d["branches"]) == 50
    # on the sample, and saying so
    for key in ("mean_cosine_similarity", "vendi_score", "mean_nn_distance", "near_duplicate_rate", "near_duplicate_pairs"):
        assert m[key]["n"] == 50 and m[key]["sample_of"] == n, key
    for key in ("within_leaf_similarity", "between_leaf_similarity", "leaf_separation"):
        assert m[key]["n"] == 50 and m[key]["sample_of"] == n, key
    assert m["embedded_rows"]["value"] == 50 and m["embedded_rows"]["of"] == n
    assert m["vendi_at_k"]["n"] == 50  # k = 1000 > 50: the whole sample
    pairs = m["near_duplicate_pairs"]
    assert pairs["all_rows_estimate"] == pytest.approx(pairs["value"] * n * (n - 1) / (50 * 49))
    assert d["coverage"]["similarity_rows"] == 50
    # the most similar pairs name dataset rows, and their texts are those rows' texts
    texts = [r["question"] for r in rows]
    for p in d["most_similar_pairs"]:
        assert texts[p["a"]] == p["text_a"] and texts[p["b"]] == p["text_b"]
    # the maps drew embedded rows only, and say of how many rows
    assert doc["maps"]["points"] == 50 and doc["maps"]["rows_per_dataset"] == [n]
    html = Path(res.html_path).read_text()
    assert f"embedding metrics on a uniform random sample of 50 of {n:,} rows (seed 0); counts, duplicates and coverage over all rows" in html
    assert "Samples embedded" in html and f"fitted and drawn on a uniform random sample of 50 of {n:,} rows" in html
    assert "over the 50 embedded rows in leaves" in html


def test_the_maps_use_only_embedded_rows(tmp_path, fake_report, monkeypatch):
    from treesynth.analytics import project as PR

    big_run(tmp_path / "run")
    seen = {}

    def build(analyses, seed, points, log, meters=None):
        seen["maps"] = PR.build_maps(analyses, seed, points, log, meters)
        seen["analyses"] = analyses
        return seen["maps"]

    monkeypatch.setattr(fake_report, "build_maps", build)
    fake_report.build_report([str(tmp_path / "run")], out=tmp_path / "r.html", log=None, embed_sample=80, map_points=30)
    a, maps = seen["analyses"][0], seen["maps"]
    assert len(maps.rows) == 30 and {r for _, r in maps.rows} <= set(a.embedded.tolist())


def test_embed_sample_zero_embeds_every_row(tmp_path, fake_report):
    rows = big_run(tmp_path / "run")
    res = fake_report.build_report([str(tmp_path / "run")], out=tmp_path / "r.html", log=None, embed_sample=0)
    doc = _doc(res)
    d = doc["datasets"][0]
    assert fake_report.embedder_used.calls == [len(rows)] and doc["settings"]["embed_limit"] == 0
    assert d["embedded"]["sampled"] is False and d["metrics"]["mean_cosine_similarity"]["n"] == len(rows)
    assert "sample_of" not in d["metrics"]["mean_cosine_similarity"] and "similarity_rows" not in d["coverage"]
    html = Path(res.html_path).read_text()
    assert 'id="embed-sample"' not in html and "Samples embedded" not in html


def test_the_default_limit_applies_and_sample_alone_embeds_all_it_keeps(tmp_path, fake_report, monkeypatch):
    rows = big_run(tmp_path / "run")
    monkeypatch.setattr(fake_report, "EMBED_LIMIT", 100)
    doc = _doc(fake_report.build_report([str(tmp_path / "run")], out=tmp_path / "a.html", log=None))
    assert doc["settings"]["embed_limit"] == 100 and doc["datasets"][0]["embedded"]["rows"] == 100
    # --sample works as it did: every metric on the sample, every sampled row embedded
    doc = _doc(fake_report.build_report([str(tmp_path / "run")], out=tmp_path / "b.html", log=None, sample=150))
    d = doc["datasets"][0]
    assert d["n"] == 150 and d["embedded"] == {"rows": 150, "of": 150, "sampled": False, "seed": 0}
    assert d["metrics"]["rows"]["rows_before_sample"] == len(rows) and doc["settings"]["embed_limit"] == 0
    # both: the sample first, then at most --embed-sample of it embedded
    doc = _doc(fake_report.build_report([str(tmp_path / "run")], out=tmp_path / "c.html", log=None, sample=150, embed_sample=40))
    assert doc["datasets"][0]["embedded"] == {"rows": 40, "of": 150, "sampled": True, "seed": 0}


def test_a_comparison_samples_each_dataset_on_its_own(tmp_path, fake_report):
    rows = big_run(tmp_path / "run")
    other = tmp_path / "other.jsonl"
    other.write_text("".join(json.dumps({"question": f"Question {i}: how many pears are in {i} baskets?"}) + "\n" for i in range(30)))
    doc = _doc(fake_report.build_report([str(tmp_path / "run"), str(other)], out=tmp_path / "r.html", log=None, embed_sample=50))
    run, small = doc["datasets"]
    assert run["embedded"] == {"rows": 50, "of": len(rows), "sampled": True, "seed": 0}
    assert small["embedded"] == {"rows": 30, "of": 30, "sampled": False, "seed": 0}  # fewer rows than the limit: all embedded
    assert small["metrics"]["mean_cosine_similarity"]["n"] == 30 and "sample_of" not in small["metrics"]["mean_cosine_similarity"]


def test_the_ab_comparison_on_samples_of_both_sides(tmp_path, monkeypatch):
    """A run and its baseline (40 rows each, made by the engine), each embedded on a sample of 20."""
    from tests.test_ab import run_and_baseline
    from treesynth.analytics import report as R

    monkeypatch.setattr(R, "_embedder", lambda opts, log: HashEmbedder())
    monkeypatch.setattr(R, "build_maps", lambda analyses, seed, points, log, meters=None: _no_maps(analyses))
    run = run_and_baseline(tmp_path / "run")
    doc = _doc(R.build_report([str(run)], out=tmp_path / "r.html", log=None, embed_sample=20))
    tree, base = doc["datasets"]
    assert tree["embedded"]["rows"] == base["embedded"]["rows"] == 20 and tree["n"] == base["n"] == 40
    ab = doc["ab"]
    mc = {r["key"]: r for r in ab["rows"]}["mean_cosine_similarity"]
    assert mc["treesynth"] == pytest.approx(tree["metrics"]["mean_cosine_similarity"]["value"], abs=1e-6)
    assert "TreeSynth's 20 rows (a uniform random sample of 40)" in ab["sentence"]
    assert "the baseline's 20 rows (a uniform random sample of 40)" in ab["sentence"]


def _no_maps(analyses):
    from treesynth.analytics.results import Maps

    return Maps(rows=[], coords={}, info={}, sizes=[0] * len(analyses), totals=[a.ds.n for a in analyses])


# ---------------------------------------------------------------------------
# the CLI, stage times and progress


def test_cli_embed_sample_with_progress_lines_when_stderr_is_not_a_terminal(tmp_path, fake_report, capsys):
    rows = big_run(tmp_path / "run")
    out = tmp_path / "cli.html"
    rc = cli_main(["report", str(tmp_path / "run"), "--embed-sample", "50", "--out", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert cap.out.strip() == str(out)
    doc = json.loads((tmp_path / "cli.metrics.json").read_text())
    assert doc["datasets"][0]["metrics"]["mean_cosine_similarity"]["n"] == 50 and doc["datasets"][0]["n"] == len(rows)
    err = cap.err
    assert f"embedding a uniform random sample of 50 of {len(rows):,} texts of run (seed 0)" in err
    assert "  embedding: 50/50 texts (100%) in 0:00" in err  # the plain line at the end of the stage
    for stage in ("load", "embed", "metrics", "maps", "html"):
        assert f"{stage} done in " in err, stage
    assert "stage times: load " in err and "\r" not in err  # no live bar in a pipe
    assert set(doc["timings_s"]) == {"load", "embed", "metrics", "maps", "html", "total"}


def test_live_bar_when_asked(tmp_path, fake_report, capsys):
    big_run(tmp_path / "run")
    fake_report.build_report([str(tmp_path / "run")], out=tmp_path / "r.html", embed_sample=50, progress_bar=True)
    err = capsys.readouterr().err
    assert "\r[" in err and "embedding: 50/50 texts (100%)" in err and "\x1b[K\n" in err


def test_cli_rejects_a_negative_embed_sample(tmp_path, capsys):
    big_run(tmp_path / "run")
    rc = cli_main(["report", str(tmp_path / "run"), "--embed-sample", "-1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("treesynth: error:") and "--embed-sample" in err and "\n" not in err


def test_cli_help_states_the_default_limit():
    from treesynth.analytics.settings import EMBED_LIMIT
    from treesynth.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.choices and "report" in a.choices).choices["report"]
    embed = next(a for a in sub._actions if "--embed-sample" in a.option_strings)
    assert f"default {EMBED_LIMIT}" in embed.help


# ---------------------------------------------------------------------------
# loading a run lean


def test_a_runs_rows_share_their_paths_and_leaf_ids(tmp_path):
    from treesynth.analytics.data import load_dataset

    rows = big_run(tmp_path / "run")
    calls = []
    ds = load_dataset(tmp_path / "run", progress=lambda done, total: calls.append((done, total)))
    assert ds.n == len(rows) and ds.texts == [r["question"] for r in rows]
    assert len({id(p) for p in ds.paths}) == 6 and len({id(x) for x in ds.leaf_ids}) == 6
    assert ds.paths[0] == [("topic", "money"), ("difficulty", "easy")]
    assert calls == []  # small files report no progress


def test_reading_a_large_run_reports_progress(tmp_path, monkeypatch):
    from treesynth.analytics import run_data
    from treesynth.analytics.data import load_dataset

    rows = big_run(tmp_path / "run")
    monkeypatch.setattr(run_data, "PROGRESS_ROWS", 100)
    monkeypatch.setattr(run_data, "HEAD_ROWS", 7)  # the field is chosen from the first rows, then rows stream
    calls = []
    ds = load_dataset(tmp_path / "run", progress=lambda done, total: calls.append((done, total)))
    assert ds.n == len(rows) and ds.field == "question"
    assert [c[0] for c in calls] == [100, 200, 300, len(rows)] and calls[-1] == (len(rows), len(rows))


# ---------------------------------------------------------------------------
# pure helpers


def test_uniform_sample_is_the_sample_that_sample_draws():
    assert uniform_sample(10, 10, 0) is None and uniform_sample(10, 99, 0) is None
    a = uniform_sample(1000, 50, 3)
    assert a is not None and len(a) == 50 and len(set(a.tolist())) == 50 and (np.diff(a) > 0).all()
    assert np.array_equal(a, uniform_sample(1000, 50, 3)) and not np.array_equal(a, uniform_sample(1000, 50, 4))
    assert np.array_equal(a, np.sort(np.random.default_rng(3).choice(1000, size=50, replace=False)))


def test_pairs_scaled_to_all_rows():
    assert pairs_for_all_rows(3, 100, 100) == 3
    assert pairs_for_all_rows(2, 10, 100) == pytest.approx(2 * 100 * 99 / (10 * 9))
    assert pairs_for_all_rows(5, 1, 100) is None
    # unbiased: the mean over many samples of the scaled count is the full count
    rng = np.random.default_rng(0)
    n, m = 60, 20
    dup_pairs = {(i, i + 1) for i in range(0, n, 2)}  # 30 pairs
    est = []
    for _ in range(4000):
        s = set(rng.choice(n, m, replace=False).tolist())
        est.append(pairs_for_all_rows(sum(1 for i, j in dup_pairs if i in s and j in s), m, n))
    assert np.mean(est) == pytest.approx(30, rel=0.05)


def test_distinct_texts_ignores_case_and_spacing():
    assert distinct_texts(["A b", "a  B", " a b ", "a\tb\n", "ab"]) == 2
    assert distinct_texts([]) == 0


def test_occupancy_from_counts_equals_the_coverage_metrics():
    rng = np.random.default_rng(1)
    X = M.normalize_rows(rng.normal(size=(200, 8)))
    leaf = rng.integers(-1, 7, size=200)
    full = M.coverage_metrics(X, leaf, 7, targets=[30] * 7)
    cnt = M.leaf_counts(leaf, 7)
    assert cnt.tolist() == full["leaf_sizes"]
    occ = M.occupancy_metrics(cnt, [30] * 7)
    assert occ == {k: full[k] for k in occ}
    sim = M.leaf_similarity(X, leaf, 7)
    assert sim == {k: full[k] for k in sim}


def test_shared_path_keeps_one_list_per_distinct_path():
    pool: dict = {}
    a = shared_path([{"dimension": "topic", "value": "money"}], pool)
    b = shared_path([{"dimension": "topic", "value": "money"}], pool)
    c = shared_path([{"dimension": "topic", "value": "time"}], pool)
    assert a is b and a == [("topic", "money")] and c is not a and len(pool) == 2
    assert shared_path("junk", pool) == [] and shared_path(None, pool) is shared_path([], pool)


def test_duration_bar_and_progress_line():
    assert P.duration(0) == "0:00" and P.duration(59.6) == "1:00" and P.duration(3725) == "1:02:05" and P.duration(float("nan")) == "0:00"
    assert P.bar(0, 10, 10) == "[----------]" and P.bar(5, 10, 10) == "[#####-----]" and P.bar(12, 10, 10) == "[##########]"
    assert P.bar(0, 0, 4) == "[####]"
    assert P.progress_line("embedding", 0, 100, "texts", 0.0) == "embedding: 0/100 texts (0%)"
    assert P.progress_line("embedding", 1_000, 20_000, "texts", 2.0) == "embedding: 1,000/20,000 texts (5%), 500 texts/s, 0:38 left"
    assert P.progress_line("embedding", 20_000, 20_000, "texts", 44.0) == "embedding: 20,000/20,000 texts (100%) in 0:44, 455 texts/s"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_meter_writes_a_plain_line_every_few_seconds_and_at_the_end():
    clock, lines = Clock(), []
    m = P.Meter("embedding", "texts", lines.append, live=False, every=5.0, clock=clock)
    for done in range(100, 1001, 100):
        clock.t += 1.5  # 100 texts per 1.5 s
        m(done, 1000)
    assert lines == [
        "  embedding: 400/1,000 texts (40%), 67 texts/s, 0:09 left",  # 6 s in
        "  embedding: 800/1,000 texts (80%), 67 texts/s, 0:03 left",  # 12 s in
        "  embedding: 1,000/1,000 texts (100%) in 0:15, 67 texts/s",
    ]
    m(1000, 1000)
    m.close()
    assert len(lines) == 3  # done once


def test_meter_redraws_one_line_on_a_terminal():
    clock, lines, screen = Clock(), [], io.StringIO()
    m = P.Meter("t-SNE", "iterations", lines.append, live=True, stream=screen, clock=clock)
    m(50, 750)
    clock.t += 0.01
    m(100, 750)  # too soon to redraw
    clock.t += 1.0
    m(750, 750)
    out = screen.getvalue()
    assert lines == [] and out.count("\r") == 2 and out.endswith("\x1b[K\n")
    assert "[#-----------------------] t-SNE: 50/750 iterations (7%)" in out and "t-SNE: 750/750 iterations (100%) in 0:01" in out
    m2 = P.Meter("x", "rows", lines.append, live=True, stream=io.StringIO(), clock=clock)
    m2.close()  # nothing drawn: nothing to end
    assert m2.stream.getvalue() == ""


def test_meter_counts_rates_from_a_first_call_at_zero():
    clock, lines = Clock(), []
    m = P.Meter("embedding", "texts", lines.append, clock=clock)
    clock.t = 30.0  # a model loading: not part of the rate
    m(0, 100)
    clock.t = 40.0
    m(100, 100)
    assert lines == ["  embedding: 100/100 texts (100%) in 0:10, 10 texts/s"]


def test_the_embedder_reports_progress_per_chunk_of_distinct_texts():
    from treesynth.core import embeddings as E

    class Model:
        def encode(self, texts, **kw):
            return np.ones((len(texts), 4), np.float32) / 2

    e = E.Embedder(cache=False)
    e._model, e.dim = Model(), 4
    calls: list[tuple[int, int]] = []
    X = e.embed([f"text {i % 2500}" for i in range(3000)], progress=lambda d, t: calls.append((d, t)))
    assert X.shape == (3000, 4)
    assert calls == [(0, 2500), (1024, 2500), (2048, 2500), (2500, 2500)]
    logged: list[str] = []
    e.log = logged.append
    e.encode([f"t {i}" for i in range(10)])  # without a callback: the log line as before
    assert logged and logged[-1].startswith("  embedded 10/10 (")


def test_the_dataset_card_says_the_embedding_metrics_were_on_a_sample():
    from treesynth.core.card import CardFacts, dataset_card

    def card(metrics):
        return dataset_card(CardFacts(task="math", model="m", created="2026-12-02", rows=1_000_000, fields=("question", "answer"),
                                      prompt_fields=("question",), response_fields=("answer",), leaves=4, depth=1, branches=(),
                                      metrics=metrics, quality={}, preset=None, version="0"))

    sampled = card({"mean_cosine_similarity": {"value": 0.3, "n": 20_000, "sample_of": 1_000_000}})
    assert "a uniform random sample of 20,000 of the 1,000,000 rows" in sampled
    assert "uniform random sample" not in card({"mean_cosine_similarity": {"value": 0.3, "n": 500}})


def test_the_summary_cells_say_the_sample_and_the_all_rows_estimate(tmp_path, fake_report):
    import html as H

    rows = big_run(tmp_path / "run")
    res = fake_report.build_report([str(tmp_path / "run")], out=tmp_path / "r.html", log=None, embed_sample=50)
    page = H.unescape(Path(res.html_path).read_text())
    est = _doc(res)["datasets"][0]["metrics"]["near_duplicate_pairs"]["all_rows_estimate"]
    assert f"n = 50 (a uniform random sample of {len(rows):,} rows)" in page
    assert f"about {est:,.0f} among all {len(rows):,} rows (scaled from the sample)" in page
    assert "Nearest neighbours are looked for within the sample" in page


def test_bootstrap_means_drawn_in_blocks_equal_one_draw():
    from treesynth.analytics import ab as AB

    x = np.random.default_rng(1).normal(size=333)
    one = np.random.default_rng(7)
    want = x[one.integers(0, len(x), size=(50, len(x)))].mean(axis=1)
    assert np.array_equal(AB.resampled_means(x, 50, np.random.default_rng(7), cells=1000), want)  # blocks of 3 resamples
