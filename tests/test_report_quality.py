"""The report's quality section: the judge's pass rates (overall, per leaf, per top-level branch), the
constraints it found broken, what each gate turned away, escaped examples of rejected rows, the caveat
beside the diversity numbers of a dataset whose rows mostly failed, and the same numbers in
metrics.json under "quality".

Run directories are written directly (config, state, tree, dataset, verdicts, rejected rows), not made
by the engine, and the report is built with a hashing embedder and no maps: these tests check the
quality numbers and the page, not the embeddings (tests/test_report.py does those)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.fakes import hash_embedder
from treesynth.analytics import quality as Q
from treesynth.core.rundir import REJECTED, VERDICTS
from treesynth.core.tree import EXPANDED, LEAF, Node, Tree

TOPICS = ["money", "time"]
LEVELS = ["easy", "medium", "hard"]
XSS = "<script>alert(1)</script>"


def _leaves() -> list[tuple[str, list[dict[str, str]]]]:
    return [(f"0.{t}.{d}", [{"dimension": "topic", "value": tv}, {"dimension": "difficulty", "value": dv}])
            for t, tv in enumerate(TOPICS) for d, dv in enumerate(LEVELS)]


def _tree(per_leaf: int) -> Tree:
    tree = Tree.new(per_leaf * len(TOPICS) * len(LEVELS))
    root = tree.root
    root.status, root.split_dimension = EXPANDED, "topic"
    for t, tv in enumerate(TOPICS):
        bid = f"0.{t}"
        root.children.append(bid)
        b = Node(id=bid, parent="0", depth=1, dimension="topic", value=tv, source="pivots", target=per_leaf * len(LEVELS),
                 status=EXPANDED, split_dimension="difficulty")
        for d, dv in enumerate(LEVELS):
            lid = f"{bid}.{d}"
            b.children.append(lid)
            tree.upsert(Node(id=lid, parent=bid, depth=2, dimension="difficulty", value=dv, source="pivots", target=per_leaf, status=LEAF))
        tree.upsert(b)
    return tree


def _question(leaf: str, k: int, extra: str = "") -> str:
    n = int(leaf.replace(".", "")) + k
    return f"Leaf {leaf} case {k}: Ann has {n * 3} apples, sells {k} at ${n} each and buys {n % 7} pears{extra}. How many are left?"


def write_run(root: Path, per_leaf: int = 4, config: dict | None = None) -> list[dict]:
    """A complete run directory (config, state, tree, dataset.jsonl) with ``per_leaf`` rows in each of 6
    leaves (topic × difficulty); returns its rows."""
    root.mkdir(parents=True)
    cfg = {"task": "math word problems", "fields": ["question", "answer"], "depth": 2, "size": per_leaf * 6, **(config or {})}
    (root / "config.json").write_text(json.dumps({"format": "treesynth.run/1", "config": cfg}))
    (root / "state.json").write_text(json.dumps({"status": "complete"}))
    (root / "tree.json").write_text(json.dumps(_tree(per_leaf).to_dict(seq=1)))
    rows = []
    for leaf, path in _leaves():
        for k in range(per_leaf):
            row = {"id": f"{leaf}/{k}/0", "leaf_id": leaf, "path": path, "slot": k, "question": _question(leaf, k), "answer": f"#### {k}"}
            if cfg.get("judge"):
                row["judge"] = {"pass": True, "judge": "judge-model"}
            rows.append(row)
    (root / "dataset.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def verdict(rid: str, leaf: str, path: list[dict], ok: bool = True, broken: tuple[str, ...] = (), fits: bool = True,
            complete: bool = True, reason: str = "") -> dict:
    return {"id": rid, "leaf_id": leaf, "pass": ok,
            "constraints": [{**s, "ok": s["dimension"] not in broken} for s in path],
            "fits_task": fits, "complete": complete, "reason": reason if not ok else "", "judge": "judge-model"}


def jsonl(path: Path, records: list[dict], torn: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + torn)


PATHS = dict(_leaves())


def judged_run(root: Path, reason: str = "the answer is wrong", sample_text: str = "Bob has 3 pens.") -> list[dict]:
    """A judged, validated, de-duplicated run: 24 rows kept (all passed), 8 rows the judge failed (6 in
    money › hard breaking difficulty, one of them incomplete; 2 in time › easy off-task, breaking
    topic), one kept row re-judged (failed, then passed), 3 validator and 2 near-duplicate rejections."""
    rows = write_run(root, config={"judge": True, "judge_model": "judge-model", "dedup_threshold": 0.95,
                                   "validators": [{"field": "answer", "kind": "regex", "value": "####", "name": None},
                                                  {"field": "answer", "kind": "min_chars", "value": 3, "name": "too short"}]})
    verdicts = [verdict(rows[0]["id"], rows[0]["leaf_id"], rows[0]["path"], ok=False, broken=("topic",), reason="first look")]
    verdicts += [verdict(r["id"], r["leaf_id"], r["path"]) for r in rows]
    failed = [("0.0.2", f"0.0.2/{9 + k}/0", ("difficulty",), True, k != 0) for k in range(6)]
    failed += [("0.1.0", f"0.1.0/{9 + k}/0", ("topic",), False, True) for k in range(2)]
    rejected = []
    for leaf, rid, broken, fits, complete in failed:
        verdicts.append(verdict(rid, leaf, PATHS[leaf], ok=False, broken=broken, fits=fits, complete=complete, reason=reason))
        rejected.append({"gate": "judge", "leaf_id": leaf, "slot": int(rid.split("/")[1]), "path": PATHS[leaf],
                         "sample": {"question": sample_text, "answer": "#### 3"}, "detail": reason, "id": rid})
    rejected.append(dict(rejected[-1]))  # the same judge rejection written twice (a resumed run): one row
    rejected += [
        {"gate": "validator", "leaf_id": "0.0.0", "slot": 20, "path": PATHS["0.0.0"], "sample": {"question": "q1", "answer": "3"},
         "detail": "answer: does not match ####; answer: too short"},
        {"gate": "validator", "leaf_id": "0.0.1", "slot": 21, "path": PATHS["0.0.1"], "sample": {"question": "q2", "answer": "#"},
         "detail": "answer: too short"},
        {"gate": "validator", "leaf_id": "0.1.1", "slot": 22, "path": PATHS["0.1.1"], "sample": {"question": "q3", "answer": "x"},
         "detail": "question: is not valid JSON"},
        {"gate": "near_duplicate", "leaf_id": "0.1.2", "slot": 23, "path": PATHS["0.1.2"], "sample": {"question": "q4", "answer": "#### 1"},
         "detail": "cosine 0.973 to an accepted row"},
        {"gate": "near_duplicate", "leaf_id": "0.1.2", "slot": 24, "path": PATHS["0.1.2"], "sample": {"question": "q5", "answer": "#### 2"},
         "detail": "cosine 0.981 to an accepted row"},
    ]
    jsonl(root / VERDICTS, verdicts)
    jsonl(root / REJECTED, rejected)
    return rows


def poor_run(root: Path) -> list[dict]:
    """A judged run where the judge passed 6 of 24 rows (25%): the 18 kept rows it failed say so."""
    rows = write_run(root, config={"judge": True})
    verdicts = [verdict(r["id"], r["leaf_id"], r["path"], ok=i % 4 == 0, broken=() if i % 4 == 0 else ("difficulty",), reason="junk")
                for i, r in enumerate(rows)]
    jsonl(root / VERDICTS, verdicts)
    jsonl(root / REJECTED, [{"gate": "judge", "leaf_id": v["leaf_id"], "slot": 0, "path": PATHS[v["leaf_id"]], "sample": {"question": "junk"},
                             "detail": "junk", "id": v["id"]} for v in verdicts if not v["pass"]])
    # a judged run keeps only passed rows
    kept = {v["id"] for v in verdicts if v["pass"]}
    rows = [r for r in rows if r["id"] in kept]
    jsonl(root / "dataset.jsonl", rows)
    return rows


# ---------------------------------------------------------------------------
# the numbers (no report)


def test_judge_numbers_per_leaf_branch_and_constraint(tmp_path):
    from treesynth.analytics.data import load_dataset

    judged_run(tmp_path / "run")
    ds = load_dataset(tmp_path / "run")
    q = ds.quality
    assert q is not None and ds.n == 24
    j = q.numbers["judge"]
    assert (j["judged"], j["passed"], j["failed"]) == (32, 24, 8)  # the re-judged row counts once, as passed
    assert j["pass_rate"] == pytest.approx(0.75)
    assert j["not_fits_task"] == 2 and j["incomplete"] == 1 and j["models"] == ["judge-model"]
    leaves = j["leaves"]
    assert [lf["leaf_id"] for lf in leaves[:2]] == ["0.0.2", "0.1.0"]  # worst first
    assert leaves[0] == {"leaf_id": "0.0.2", "path": "topic = money › difficulty = hard", "judged": 10, "passed": 4, "rate": pytest.approx(0.4)}
    assert leaves[1]["rate"] == pytest.approx(4 / 6) and leaves[1]["path"] == "topic = time › difficulty = easy"
    assert all(lf["rate"] == 1.0 for lf in leaves[2:]) and len(leaves) == 6
    assert j["branches"] == [
        {"branch": "topic = money", "judged": 18, "passed": 12, "rate": pytest.approx(12 / 18)},
        {"branch": "topic = time", "judged": 14, "passed": 12, "rate": pytest.approx(12 / 14)},
    ]
    assert j["failed_constraints"] == [
        {"constraint": "difficulty = hard", "failed": 6, "judged": 14, "rate": pytest.approx(6 / 14)},
        {"constraint": "topic = time", "failed": 2, "judged": 14, "rate": pytest.approx(2 / 14)},
    ]


def test_gate_numbers_and_validator_checks(tmp_path):
    from treesynth.analytics.data import load_dataset

    judged_run(tmp_path / "run")
    g = load_dataset(tmp_path / "run").quality.numbers["gates"]
    assert g["turned_away"] == {"validator": 3, "near_duplicate": 2, "judge": 8}
    assert (g["accepted"], g["generated"], g["turned_away_total"]) == (24, 37, 13)
    assert g["turned_away_share"] == pytest.approx(13 / 37)
    assert g["share"] == {"validator": pytest.approx(3 / 37), "near_duplicate": pytest.approx(2 / 37), "judge": pytest.approx(8 / 37)}
    assert g["validator_checks"] == [
        {"check": "answer: too short", "count": 2},
        {"check": "answer: does not match ####", "count": 1},
        {"check": "question: is not valid JSON", "count": 1},
    ]
    assert g["failed_rows_in_data"] == 0


def test_settings_and_examples(tmp_path):
    from treesynth.analytics.data import load_dataset

    judged_run(tmp_path / "run")
    q = load_dataset(tmp_path / "run").quality
    assert q.numbers["settings"] == {"judge": True, "judge_model": "judge-model", "dedup_threshold": 0.95,
                                     "validators": ["answer: does not match ####", "answer: too short"]}
    ex = q.examples
    assert set(ex) == {"judge", "validator", "near_duplicate"}
    assert all(1 <= len(rows) <= Q.EXAMPLES_PER_GATE for rows in ex.values())
    assert ex["validator"][0] == {"path": "topic = money › difficulty = easy", "detail": "answer: does not match ####; answer: too short",
                                  "fields": [("question", "q1"), ("answer", "3")]}
    long = Q.rejected_examples([{"gate": "judge", "id": "a", "sample": {"q": "word " * 500}, "detail": "x" * 1000}], chars=50)
    assert len(long["judge"][0]["fields"][0][1]) == 50 and len(long["judge"][0]["detail"]) == 50


def test_last_verdict_wins_and_judge_rows_count_once():
    p = PATHS["0.0.0"]
    vs = [verdict("a", "0.0.0", p, ok=False), verdict("b", "0.0.0", p), verdict("a", "0.0.0", p)]
    rejected = [{"gate": "judge", "id": "a"}, {"gate": "judge", "id": "c"}, {"gate": "judge", "id": "c"}]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        jsonl(Path(d) / VERDICTS, vs)
        read = Q.read_verdicts(Path(d) / VERDICTS)
    assert [(v["id"], v["pass"]) for v in read] == [("a", True), ("b", True)]
    g = Q.gate_summary(rejected, read, row_ids=["a", "b"])
    assert g["turned_away"]["judge"] == 1 and g["generated"] == 3  # "a" passed on re-judging; "c" once


def test_caveat_when_most_rows_fail_and_not_otherwise():
    assert Q.caveat({"pass_rate": 0.9}, {"turned_away_share": 0.2, "generated": 50}) is None
    assert Q.caveat({"pass_rate": 0.5}, {"turned_away_share": 0.5, "generated": 50}) is None  # half is not most
    low = Q.caveat({"pass_rate": 0.23}, {"turned_away_share": 0.3, "generated": 50})
    assert low == ("Most rows failed the quality gates (judge pass rate 23%): diversity computed on them measures noise, "
                   "not useful variety.")
    gated = Q.caveat(None, {"turned_away_share": 0.6, "generated": 200})
    assert gated is not None and "the gates turned away 60% of 200 generated rows" in gated
    assert Q.caveat({"pass_rate": None}, {"turned_away_share": None, "generated": 0}) is None
    assert Q.pct(0.496) == "49.6%" and Q.pct(0.23) == "23%"


def test_torn_last_lines_are_tolerated(tmp_path):
    from treesynth.analytics.data import load_dataset

    judged_run(tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with open(tmp_path / "b" / VERDICTS, "a") as f:
        f.write('{"id": "0.0.0/99/0", "leaf_id": "0.0.0", "pass": fal')
    with open(tmp_path / "b" / REJECTED, "a") as f:
        f.write('{"gate": "validator", "leaf_id": "0.0.0", "detail": "answer: too')
    a, b = load_dataset(tmp_path / "a").quality, load_dataset(tmp_path / "b").quality
    assert a.numbers == b.numbers


def test_old_run_and_dataset_file_have_no_quality(tmp_path):
    from treesynth.analytics.data import load_dataset

    write_run(tmp_path / "old")
    assert load_dataset(tmp_path / "old").quality is None
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"question": _question("0.0.0", k)}) + "\n" for k in range(10)))
    assert load_dataset(tmp_path / "d.jsonl").quality is None


def test_configured_gates_without_files_yet(tmp_path):
    """A run whose config turns the judge on but has judged nothing yet: a quality entry with zeros, no caveat."""
    from treesynth.analytics.data import load_dataset

    write_run(tmp_path / "run", config={"judge": True})
    q = load_dataset(tmp_path / "run").quality
    assert q is not None and q.numbers["judge"] is None and q.caveat is None
    assert q.numbers["gates"]["generated"] == 24 and q.numbers["gates"]["turned_away_total"] == 0


def engine_run(out: Path) -> Path:
    """A run the engine makes with the scripted provider, a validator and a judge: the validator turns
    away every row of a leaf's second generation call (slot 1), the judge fails item 1 of every call."""
    import asyncio

    from tests.fakes import ScriptedTransport
    from treesynth.core.config import build_config
    from treesynth.core.run import Run

    cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 30, "pivots": 6,
                              "samples_per_call": 3, "judge": True,
                              "validators": [{"field": "question", "kind": "regex", "value": "slot (?!1 )", "name": "not slot 1"}]})
    run = Run.create(cfg, out, transport=ScriptedTransport(judge_fails=("item 1",)))
    assert asyncio.run(run.execute(lambda e: None)).status == "complete"
    return out


def test_a_run_the_engine_made_with_gates(tmp_path):
    """The numbers of a real judged, validated run agree with its files; the same run read while
    unfinished (samples.jsonl holds rows before their verdict) leaves the judge's failures out."""
    from treesynth.analytics.data import load_dataset

    run = engine_run(tmp_path / "run")
    rejected = [json.loads(x) for x in (run / REJECTED).read_text().splitlines()]
    by_gate = {g: sum(1 for r in rejected if r["gate"] == g) for g in ("validator", "judge")}
    assert by_gate["validator"] > 0 and by_gate["judge"] > 0
    ds = load_dataset(run)
    q = ds.quality.numbers
    assert ds.n == 30 and not any("judge failed" in n for n in ds.notes)
    assert q["settings"] == {"judge": True, "judge_model": None, "dedup_threshold": None, "validators": ["question: not slot 1"]}
    assert q["judge"]["passed"] == 30 and q["judge"]["judged"] == 30 + by_gate["judge"]
    assert q["gates"]["turned_away"] == {"validator": by_gate["validator"], "near_duplicate": 0, "judge": by_gate["judge"]}
    assert q["gates"]["validator_checks"] == [{"check": "question: not slot 1", "count": by_gate["validator"]}]
    assert q["gates"]["generated"] == 30 + by_gate["validator"] + by_gate["judge"]
    assert (q["caveat"] is not None) == (q["judge"]["pass_rate"] < 0.5 or q["gates"]["turned_away_share"] > 0.5)
    assert all(lf["path"].count(" › ") == 1 for lf in q["judge"]["leaves"])

    part = tmp_path / "partial"
    shutil.copytree(run, part, ignore=shutil.ignore_patterns("dataset.*"))
    dp = load_dataset(part)
    assert dp.n == 30 and any(f"{by_gate['judge']} row(s) in samples.jsonl that the judge failed are left out" in n for n in dp.notes)
    assert sorted(dp.texts) == sorted(ds.texts)
    assert dp.quality.numbers["gates"].pop("failed_rows_in_data") == by_gate["judge"]  # read, then left out
    assert q["gates"].pop("failed_rows_in_data") == 0
    assert dp.quality.numbers == q


# ---------------------------------------------------------------------------
# the report


class HashEmbedder:
    """The report's embedder interface over tests.fakes.hash_embedder (no model, no cache)."""

    label = "hash-64"

    def __init__(self) -> None:
        self.stats: list[dict] = []

    def embed(self, texts, progress=None):
        X = hash_embedder(list(texts)).astype(np.float32)
        if progress is not None:
            progress(len(X), len(X))
        return X

    def describe(self) -> dict:
        return {"model": "hash-64", "precision": "fp32", "dim": 64}


@pytest.fixture
def fast_report(monkeypatch):
    """``build_report`` with the hashing embedder and no maps."""
    from treesynth.analytics import report as R
    from treesynth.analytics.results import Maps

    monkeypatch.setattr(R, "_embedder", lambda opts, log: HashEmbedder())
    monkeypatch.setattr(R, "build_maps", lambda analyses, seed, points, log, meters=None: Maps(
        rows=[], coords={}, info={}, sizes=[0] * len(analyses), totals=[a.ds.n for a in analyses]))

    def build(inputs, out):
        res = R.build_report([str(p) for p in inputs], out=out, log=None)
        return res.html_path.read_text(), json.loads(res.metrics_path.read_text())

    return build


def test_report_has_the_quality_section_and_metrics(tmp_path, fast_report):
    judged_run(tmp_path / "run")
    html, doc = fast_report([tmp_path / "run"], tmp_path / "r.html")
    d = doc["datasets"][0]
    q = d["quality"]
    assert q["judge"]["pass_rate"] == pytest.approx(0.75) and q["gates"]["generated"] == 37 and q["caveat"] is None
    assert d["metrics"]["judge_pass_rate"]["value"] == pytest.approx(0.75) and d["metrics"]["judge_pass_rate"]["n"] == 32
    assert d["metrics"]["gate_rejection_rate"]["value"] == pytest.approx(13 / 37)
    for key, rec in d["metrics"].items():
        assert {"value", "n", "model", "seed"} <= set(rec), key
    assert 'id="quality-0"' in html and "Quality gates: run" in html
    assert "The judge passed <b>24</b> of 32 judged rows (<b>75%</b>)" in html
    assert "topic = money › difficulty = hard" in html and "difficulty = hard" in html
    assert "answer: too short" in html and "cosine 0.973 to an accepted row" in html
    assert "Judge pass rate" in html  # the summary table's row
    assert "Most rows failed the quality gates" not in html and "quality-caveat" not in html


def test_caveat_beside_the_diversity_numbers_of_a_poor_run(tmp_path, fast_report):
    poor_run(tmp_path / "poor")
    judged_run(tmp_path / "good")
    html, doc = fast_report([tmp_path / "poor", tmp_path / "good"], tmp_path / "r.html")
    poor, good = doc["datasets"]
    assert poor["quality"]["judge"]["pass_rate"] == pytest.approx(0.25)
    assert poor["quality"]["caveat"].startswith("Most rows failed the quality gates (judge pass rate 25%; the gates turned away 75% of 24 generated rows)")
    assert good["quality"]["caveat"] is None
    summary = html.split('id="summary"', 1)[1].split('id="summary-table"', 1)[0]
    assert "Most rows failed the quality gates (judge pass rate 25%;" in summary  # before the diversity table
    assert summary.count("quality-caveat") == 1 and "<b>poor</b>" in summary
    assert html.count("Most rows failed the quality gates") == 3  # above the table, in its header (title), in the section


def test_runs_without_gates_beside_one_with_them(tmp_path, fast_report):
    write_run(tmp_path / "old")
    html, doc = fast_report([tmp_path / "old"], tmp_path / "old.html")
    assert "quality" not in doc["datasets"][0] and "judge_pass_rate" not in doc["datasets"][0]["metrics"]
    assert "Quality gates" not in html and "quality-none" not in html
    judged_run(tmp_path / "new")
    html, doc = fast_report([tmp_path / "new", tmp_path / "old"], tmp_path / "both.html")
    assert "quality" in doc["datasets"][0] and "quality" not in doc["datasets"][1]
    assert "<b>old</b>: no quality gates ran" in html
    write_run(tmp_path / "fresh", config={"judge": True})  # the judge is on, nothing judged yet
    html, doc = fast_report([tmp_path / "fresh"], tmp_path / "fresh.html")
    assert doc["datasets"][0]["quality"]["judge"] is None
    assert "Quality gates: fresh" in html and "The gates turned away <b>0</b> of 24 generated rows" in html
    assert "The judge passed" not in html and "Judge pass rate" not in html


def test_untrusted_text_in_rejected_rows_is_escaped(tmp_path, fast_report):
    judged_run(tmp_path / "run", reason=f"bad {XSS} reason", sample_text=f"{XSS} How many pens?")
    with open(tmp_path / "run" / REJECTED, "a") as f:
        f.write(json.dumps({"gate": "validator", "leaf_id": "0.0.0", "slot": 30, "path": [{"dimension": XSS, "value": "<img src=x onerror=alert(2)>"}],
                            "sample": {XSS: XSS}, "detail": f"answer: {XSS}"}) + "\n")
    html, doc = fast_report([tmp_path / "run"], tmp_path / "r.html")
    assert XSS not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; How many pens?" in html
    assert "bad &lt;script&gt;alert(1)&lt;/script&gt; reason" in html
    assert f"answer: {XSS}" in json.dumps(doc["datasets"][0]["quality"]["gates"]["validator_checks"])  # the numbers keep the raw text


# ---------------------------------------------------------------------------
# in a browser


@pytest.fixture
def chromium():
    import os

    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (Debian: apt-get install -y chromium)")
    pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")


@pytest.mark.slow
def test_quality_section_is_visible_in_chromium(tmp_path, fast_report, chromium):
    from tests.test_report import open_in_chromium

    poor_run(tmp_path / "poor")
    judged_run(tmp_path / "good", reason=f"{XSS} wrong", sample_text=f"{XSS} How many?")
    out = tmp_path / "r.html"
    fast_report([tmp_path / "poor", tmp_path / "good"], out)
    dom, errors = open_in_chromium(chromium, out, """({
      text: document.body.innerText,
      caveat: [...document.querySelectorAll('.quality-caveat')].map(e => e.offsetHeight > 0 && e.innerText),
      leaves: document.querySelectorAll('table.quality-leaves tbody tr').length,
      visible: [...document.querySelectorAll('h2')].filter(h => h.textContent.startsWith('Quality gates') && h.offsetHeight > 0).length,
      scripts: [...document.scripts].filter(s => !s.type).length,
    })""")
    assert errors == []
    assert dom["visible"] == 2 and dom["leaves"] == 12 and dom["scripts"] == 2
    assert len(dom["caveat"]) == 1 and dom["caveat"][0].startswith("poor: Most rows failed the quality gates (judge pass rate 25%;")
    assert "The judge passed 6 of 24 judged rows (25%)" in dom["text"]
    assert f"{XSS} How many?" in dom["text"] and f"{XSS} wrong" in dom["text"]  # shown as text, not run
    assert "Constraints the judge found broken most often" in dom["text"]
