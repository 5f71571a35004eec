"""`treesynth report` end to end: a small run (scripted provider with GSM8K-like texts), a compare
with the GSM8K test set, and hostile text, each opened in real headless Chromium over the
DevTools protocol (``--remote-debugging-pipe``: no extra packages, no network, no port).

Chromium comes from Debian (``apt-get install chromium``). Without it these tests skip locally and
fail under CI (``CI`` set), so a missing install cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import fcntl
import html as html_lib
import json
import os
import queue
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import SHARED
from tests.fakes import ScriptedTransport, sentence_pools
from treesynth.cli.main import main as cli_main
from treesynth.core.config import build_config
from treesynth.core.run import Run

GSM8K_TEST = SHARED / "data" / "gsm8k" / "test.jsonl"
needs_gsm8k = pytest.mark.skipif(not GSM8K_TEST.exists(), reason="needs ../shared/data/gsm8k/test.jsonl")

# ---------------------------------------------------------------------------
# a fake provider whose samples read like GSM8K questions, one topic per top-level branch

@dataclasses.dataclass
class GsmTransport(ScriptedTransport):
    pools: list = dataclasses.field(default_factory=list)

    async def __call__(self, req):
        c = await super().__call__(req)
        node, step, idx = req.slot.split(":")
        if step != "gen":
            return c
        obj = json.loads(c.text)
        branch = int(node.split(".")[1]) if "." in node else 0
        statements, questions = self.pools[branch % len(self.pools)]
        rng = random.Random(f"{node}:{idx}")
        for i, s in enumerate(obj["samples"]):
            s["question"] = " ".join(rng.sample(statements, 2) + [rng.choice(questions)]) + f" (case {i})"
        return dataclasses.replace(c, text=json.dumps(obj))


def make_run(out: Path, transport, size: int = 120, depth: int = 2) -> Path:
    cfg = build_config(flags={"task": "GSM8K-style math word problems", "fields": "question,answer", "depth": depth,
                              "size": size, "pivots": 6, "samples_per_call": 5})
    run = Run.create(cfg, out, transport=transport)
    fin = asyncio.run(run.execute(lambda e: None))
    assert fin.status == "complete"
    return out


def _gsm_lines() -> list[str]:
    if GSM8K_TEST.exists():
        return [json.loads(x)["question"] for x in GSM8K_TEST.read_text().splitlines()]
    return [f"Ann buys {i} apples for ${i + 2}. Each costs a dollar more than a pear. How much did she pay?" for i in range(50)]


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    d = tmp_path_factory.mktemp("tscache")
    old = os.environ.get("TREESYNTH_CACHE_DIR")
    os.environ["TREESYNTH_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("TREESYNTH_CACHE_DIR", None)
    else:
        os.environ["TREESYNTH_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def gsm_run(tmp_path_factory, cache_env):
    return make_run(tmp_path_factory.mktemp("runs") / "gsm-like", GsmTransport(pools=sentence_pools(_gsm_lines())))


# ---------------------------------------------------------------------------
# headless Chromium over the DevTools protocol on a pipe

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--mute-audio",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1400,1000",
]


@pytest.fixture(scope="module")
def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (Debian: apt-get install -y chromium)")
    pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")


class Browser:
    """Chromium with --remote-debugging-pipe: commands on its fd 3, answers on its fd 4, NUL-separated JSON."""

    def __init__(self, binary: str, timeout: float = 90.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="ts-chromium-")
        to_r, self._w = os.pipe()
        self._r, from_w = os.pipe()

        def remap() -> None:
            a = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10)  # move above 4 first so neither dup2 clobbers the other
            b = fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=(3, 4), preexec_fn=remap,
        )
        os.close(to_r)
        os.close(from_w)
        self._id = 0
        self._q: queue.Queue = queue.Queue()
        self.events: list[dict] = []
        self._err: list[bytes] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self._err.extend(self.proc.stderr), daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._q.put(json.loads(msg))
        self._q.put(None)

    def _next(self, deadline: float) -> dict:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        m = self._q.get(timeout=left)
        if m is None:
            raise RuntimeError("chromium exited: " + b"".join(self._err).decode(errors="replace")[-800:])
        if "method" in m:
            self.events.append(m)
        return m

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._next(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})

    def wait_event(self, method: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == method for e in self.events):
            self._next(deadline)

    def pump(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self._next(deadline)
        except (TimeoutError, queue.Empty):
            pass

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except Exception:  # noqa: BLE001
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def open_in_chromium(binary: str, page: Path, script: str, screenshot: Path | None = None) -> tuple[object, list[str]]:
    """Load ``page``, wait until every plot is drawn, evaluate ``script`` (an expression; promises awaited).
    Returns (its value, console errors + uncaught exceptions + error log entries, CSP violations included)."""
    b = Browser(binary)
    try:
        target = next(t for t in b.send("Target.getTargets")["targetInfos"] if t["type"] == "page")
        sid = b.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            b.send(domain, session=sid)
        b.send("Page.navigate", {"url": page.resolve().as_uri()}, session=sid)
        b.wait_event("Page.loadEventFired")
        drawn = ("new Promise(r => { const t0 = Date.now(); (function poll() {"
                 " const d = [...document.querySelectorAll('.plot')];"
                 " if ((d.length && d.every(x => x.querySelector('.main-svg'))) || Date.now() - t0 > 30000) r(d.length); else setTimeout(poll, 100);"
                 " })(); })")
        b.send("Runtime.evaluate", {"expression": drawn, "awaitPromise": True, "returnByValue": True}, session=sid)
        b.pump(0.5)
        res = b.send("Runtime.evaluate", {"expression": script, "awaitPromise": True, "returnByValue": True}, session=sid)
        if screenshot is not None:
            shot = b.send("Page.captureScreenshot", {"format": "png"}, session=sid)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        b.pump(0.3)
        errors = []
        for e in b.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + p["entry"].get("text", ""))
        if "exceptionDetails" in res:
            errors.append("check script failed: " + json.dumps(res["exceptionDetails"])[:800])
        return res.get("result", {}).get("value"), errors
    finally:
        b.close()


DOM_CHECKS = """({
  plots: document.querySelectorAll('.js-plotly-plot').length,
  umap: document.querySelectorAll('#map-umap .main-svg').length,
  tsne: document.querySelectorAll('#map-tsne .main-svg').length,
  points: document.querySelectorAll('#map-umap .scatterlayer .point').length
        + document.querySelectorAll('#map-umap canvas').length,
  legend: [...document.querySelectorAll('#map-umap .legendtext')].map(e => e.textContent),
  slices: document.querySelectorAll('.slice').length,
  bars: document.querySelectorAll('[id^=fig-leaves] .bars .point').length,
  heatmap: document.querySelectorAll('[id^=fig-branches] .hm, [id^=fig-branches] image').length,
  summary_rows: document.querySelectorAll('#summary-table tbody tr').length,
  branch_rows: document.querySelectorAll('table.branches tbody tr').length,
  scripts: [...document.scripts].filter(s => !s.type).length,
  images: document.images.length,
  pwned: typeof window.__pwned,
})"""


def _plotly_bundles(html: str) -> int:
    return len(re.findall(r"\* plotly\.js v\d", html))


# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_report_for_a_run_renders_in_chromium(gsm_run, chromium, tmp_path):
    from treesynth.analytics.report import report_for_run

    path = report_for_run(gsm_run, log=None)
    assert path == gsm_run / "report.html"
    html = path.read_text()
    assert _plotly_bundles(html) == 1  # plotly.js embedded once, not per figure
    page_only = re.sub(r"<script nonce=[^>]*>/\*\*\n\* plotly\.js.*?</script>", "", html, count=1, flags=re.S)
    assert len(page_only) < len(html) - 4_000_000 and "http://" not in page_only and "https://" not in page_only
    doc = json.loads((gsm_run / "metrics.json").read_text())
    d = doc["datasets"][0]
    assert d["n"] == 120 and d["kind"] == "run" and d["field"] == "question"
    for key, rec in d["metrics"].items():
        assert {"value", "n", "model", "seed"} <= set(rec), key
    assert d["metrics"]["mean_cosine_similarity"]["model"].startswith("all-MiniLM-L6-v2")
    assert d["metrics"]["leaves"]["value"] == 16 and d["coverage"]["empty_leaves"] == 0
    assert len(d["branches"]) == 4 and sum(b["samples"] for b in d["branches"]) == 120
    assert d["metrics"]["leaf_separation"]["value"] > 0  # one topic per branch: leaves are distinct
    assert doc["maps"]["umap"]["points"] == 120 and doc["maps"]["tsne"]["points"] == 120
    # calls and cost by role, each with its model (core/llm/types.py UsageTotals.roles in state.json)
    roles = re.search(r'<table class="roles">.*?</table>', html, re.S)
    assert roles and "growing the tree" in roles.group(0) and "writing the rows" in roles.group(0)
    assert roles.group(0).count("fake/scripted") == 2
    # the tree as the taxonomy file --tree-from reads, on the page (escaped like all model text)
    from treesynth.core.treeout import tree_output

    shown = re.search(r'<pre class="taxonomy">(.*?)</pre>', html, re.S)
    assert shown and html_lib.unescape(shown.group(1)) == tree_output(gsm_run, "yaml")

    dom, errors = open_in_chromium(chromium, path, DOM_CHECKS, screenshot=tmp_path / "run.png")
    assert errors == []
    assert dom["umap"] and dom["tsne"] and dom["points"] >= 120
    assert len(dom["legend"]) == 4 and all(" = " in t for t in dom["legend"])  # coloured by top-level branch
    assert dom["slices"] >= 21 and dom["bars"] >= 1 and dom["heatmap"] >= 1
    assert dom["branch_rows"] == 4 and dom["summary_rows"] > 20
    assert dom["scripts"] == 2 and dom["images"] == 0 and dom["pwned"] == "undefined"


@needs_gsm8k
@pytest.mark.slow
def test_compare_with_gsm8k_through_the_cli(gsm_run, chromium, tmp_path, capsys):
    out = tmp_path / "compare.html"
    rc = cli_main(["report", str(gsm_run), "--compare", str(GSM8K_TEST), "--sample", "150", "--out", str(out), "--seed", "3"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.out.strip() == str(out)
    doc = json.loads((tmp_path / "compare.metrics.json").read_text())
    names = [d["name"] for d in doc["datasets"]]
    assert names == ["gsm-like", "test.jsonl"] and doc["seed"] == 3
    gsm = doc["datasets"][1]
    assert gsm["n"] == 150 and gsm["metrics"]["rows"]["rows_before_sample"] == 1319 and "coverage" not in gsm
    assert all(rec["seed"] == 3 for rec in gsm["metrics"].values())
    # real questions are far less alike than recombined sentences from four pools
    assert gsm["metrics"]["mean_cosine_similarity"]["value"] < 0.5
    dom, errors = open_in_chromium(chromium, out, DOM_CHECKS)
    assert errors == []
    assert dom["legend"] == ["gsm-like", "test.jsonl"]  # coloured by dataset when comparing
    assert dom["points"] >= 270 and dom["slices"] >= 21
    html = out.read_text()
    assert _plotly_bundles(html) == 1 and "a uniform random sample of 1,319" in html


HOSTILE = [
    "<script>window.__pwned = 'script'</script> How many apples?",
    "<img src=x onerror=\"window.__pwned = 'img'\"> How many pears?",
    "</script><script>window.__pwned = 'close'</script> How many plums?",
    "\"><svg onload=\"window.__pwned = 'svg'\"> &amp; {{7*7}} How many figs?",
]


@dataclasses.dataclass
class HostileTransport(ScriptedTransport):
    async def __call__(self, req):
        c = await super().__call__(req)
        node, step, idx = req.slot.split(":")
        if step != "gen":
            return c
        obj = json.loads(c.text)
        for i, s in enumerate(obj["samples"]):
            s["question"] = f"{HOSTILE[(i + int(idx)) % len(HOSTILE)]} leaf {node} call {idx} item {i}"
        return dataclasses.replace(c, text=json.dumps(obj))


@pytest.mark.slow
def test_hostile_text_renders_as_text_everywhere(tmp_path, chromium, cache_env, monkeypatch):
    from treesynth.analytics import report as R

    bad_dim = "<script>window.__pwned = 'dim'</script>"
    values = ["<img src=x onerror=\"window.__pwned = 'value'\">", "</script><b>bold</b>"]
    criterion = json.dumps({"dimension": bad_dim, "values": values})
    assign = json.dumps({str(i): values[0] if i <= 3 else values[1] for i in range(1, 7)})
    run = make_run(tmp_path / "x<b>run<i>&amp;", HostileTransport(overrides={"criterion": [criterion], "assign": [assign]}),
                   size=40, depth=2)
    hostile_file = tmp_path / "<img src=x onerror=alert(1)>.jsonl"
    hostile_file.write_text("".join(json.dumps({"question": h + f" #{i}"}) + "\n" for i in range(12) for h in HOSTILE))
    monkeypatch.setattr(R, "EXACT_NN_LIMIT", 30)  # also render the sampled-search (≈) path
    out = tmp_path / "hostile.html"
    R.build_report([run, hostile_file], out=out, log=None)
    html = out.read_text()
    for h in HOSTILE:
        assert h not in html  # never verbatim in the page source
    assert "<b>run<i>" not in html and "<img src=x" not in html
    check = DOM_CHECKS[:-2] + """
      title: document.title,
      body: document.body.innerText,
      hover: (() => {
        const gd = document.getElementById('map-umap');
        const c = gd.data.findIndex(t => t.hovertext.some(h => h.includes('__pwned')));
        const p = gd.data[c].hovertext.findIndex(h => h.includes('&lt;script&gt;'));
        Plotly.Fx.hover(gd, [{curveNumber: c, pointNumber: p < 0 ? 0 : p}]);
        const layer = gd.querySelector('.hoverlayer');
        return {text: layer.textContent, elements: layer.querySelectorAll('script, img, svg svg').length};
      })(),
      slice_text: [...document.querySelectorAll('.slice text')].map(t => t.textContent).join(' | '),
    })"""
    dom, errors = open_in_chromium(chromium, out, check)
    assert errors == []
    assert dom["pwned"] == "undefined" and dom["images"] == 0 and dom["scripts"] == 2
    assert dom["title"].startswith("treesynth report: x<b>run<i>&amp;")
    assert "x<b>run<i>&amp;" in dom["body"] and "<img src=x onerror=alert(1)>.jsonl" in dom["body"]
    assert f"{bad_dim} = </script><b>bold</b>" in dom["body"]  # branch table, as text
    assert "<script>window.__pwned = 'script'</script> How many apples?" in dom["body"]  # most-similar pairs
    assert "<script>window.__pwned" in dom["hover"]["text"] and dom["hover"]["elements"] == 0
    assert "<script>window.__pwned" in dom["slice_text"]
    assert "≈" in dom["body"]  # sampled nearest-neighbour search is marked


def test_cli_errors_are_one_line_and_nonzero(tmp_path, capsys, cache_env):
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "numbers.csv").write_text("a,b\n1,2\n")
    (tmp_path / "blank.jsonl").write_text('{"question": "  "}\n{"question": null}\n')
    (tmp_path / "data.txt").write_text("hello")
    cases = [
        ([str(tmp_path / "missing.jsonl")], "does not exist"),
        ([str(tmp_path / "empty.jsonl")], "has no rows"),
        ([str(tmp_path / "numbers.csv")], "no text field"),
        ([str(tmp_path / "blank.jsonl")], "no rows with text"),
        ([str(tmp_path / "data.txt")], "unsupported format"),
        ([str(tmp_path)], "not a treesynth run"),
        ([str(tmp_path / "numbers.csv"), "--field", "c"], "has no field 'c'"),
        ([str(tmp_path / "numbers.csv"), "--field", "a"], "is not text"),
        ([str(tmp_path / "blank.jsonl"), "--out", str(tmp_path / "no" / "such" / "dir.html")], "does not exist"),
        ([str(tmp_path / "blank.jsonl"), "--map-points", "1"], "--map-points"),
    ]
    for argv, msg in cases:
        rc = cli_main(["report", *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2, (argv, err)
        assert err.startswith("treesynth: error:") and msg in err and "\n" not in err, (argv, err)


@pytest.mark.slow
def test_run_with_report_flag_writes_the_report(stub, tmp_path, capsys, cache_env):
    out = tmp_path / "run"
    rc = cli_main(["run", "math word problems", "--no-ui", "--model", "openai/stub-model", "--api-base", stub.url,
                   "--size", "12", "--depth", "1", "--pivots", "4", "--out", str(out), "--report"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert (out / "report.html").is_file() and (out / "metrics.json").is_file()
    assert json.loads((out / "metrics.json").read_text())["datasets"][0]["n"] == 12


@pytest.mark.slow
def test_unfinished_run_uses_samples_so_far(gsm_run, tmp_path, cache_env):
    from treesynth.analytics.data import load_dataset

    part = tmp_path / "partial"
    shutil.copytree(gsm_run, part, ignore=shutil.ignore_patterns("dataset.*", "report.html", "metrics.json", ".lock"))
    lines = (part / "samples.jsonl").read_text().splitlines(keepends=True)
    (part / "samples.jsonl").write_text("".join(lines[:50]) + lines[50][:20])  # and a torn last line
    ds = load_dataset(part)
    assert ds.n == 50 and ds.kind == "run" and ds.tree is not None
    assert any("samples written so far" in n for n in ds.notes) and any("unreadable" in n for n in ds.notes)


@pytest.mark.slow
def test_balance_run_report_compares_before_and_after(tmp_path, cache_env, chromium):
    """A balance run's report shows the input (before) and the balanced output (after) on one tree:
    the leaf occupancy numbers equal the balance's own before/after summary."""
    from tests.fakes import hash_embedder
    from treesynth.analytics.report import report_for_run
    from treesynth.core.balance import create_balance_run, load_data

    lines = _gsm_lines()[:90]
    data_path = tmp_path / "data.jsonl"
    data_path.write_text("".join(json.dumps({"question": q, "answer": "#### 1"}) + "\n" for q in lines))
    data = load_data(data_path, "question", ("question", "answer"))
    spec = {"data": str(data_path), "field": "question", "fields": ["question", "answer"], "route": "embed", "route_batch": 10,
            "target_per_leaf": 8, "size": None, "embedder": None}
    out = tmp_path / "b"
    run = create_balance_run(data, spec, {"task": "math word problems", "depth": 2, "pivots": 6, "samples_per_call": 4}, out,
                            transport=GsmTransport(fields=("question", "answer"), pools=sentence_pools(lines)), embed=hash_embedder)
    fin = asyncio.run(run.execute())
    assert fin.status == "complete"
    html = report_for_run(out, log=None)
    doc = json.loads((out / "metrics.json").read_text())
    before, after = doc["datasets"]
    assert before["name"].startswith("before: data.jsonl") and after["name"].startswith("after: ")
    assert before["n"] == len(lines)
    summary = json.loads((out / "balance_summary.json").read_text())
    assert after["n"] == summary["rows_after"]
    for side, d in (("before", before), ("after", after)):
        m = d["metrics"]
        assert m["occupancy_entropy"]["value"] == pytest.approx(summary[side]["entropy"], abs=1e-3), side
        assert m["leaf_gini"]["value"] == pytest.approx(summary[side]["gini"], abs=1e-3), side
        assert m["empty_leaves"]["value"] == summary[side]["empty"], side
    assert after["metrics"]["occupancy_entropy"]["value"] > before["metrics"]["occupancy_entropy"]["value"]
    dom, errors = open_in_chromium(chromium, html, "({text: document.body.innerText, umap: document.querySelectorAll('#map-umap .main-svg').length,"
                                                   " legend: [...document.querySelectorAll('#map-umap .legendtext')].map(e => e.textContent)})")
    assert errors == []
    assert "before: data.jsonl" in dom["text"] and "after: b" in dom["text"]
    assert dom["umap"] and sorted(dom["legend"]) == ["after: b", "before: data.jsonl"]  # coloured by dataset


@needs_gsm8k
@pytest.mark.slow
def test_large_maps_are_drawn_even_without_webgl(tmp_path, chromium, cache_env):
    """Above 3,000 points the maps use plotly's WebGL traces. Headless Chromium (like some remote or
    virtual machines, and printing) has a WebGL context that plotly cannot use: the page must notice
    and draw the points as SVG, not leave "WebGL is not supported" where the maps should be."""
    from treesynth.analytics.report import build_report

    train = SHARED / "data" / "gsm8k" / "train.jsonl"
    rows = [json.loads(line) for line in train.read_text().splitlines()[:3200]]
    data = tmp_path / "gsm3200.jsonl"
    data.write_text("".join(json.dumps({"question": r["question"]}) + "\n" for r in rows))
    res = build_report([str(data)], out=tmp_path / "big.html", log=None)
    dom, errors = open_in_chromium(chromium, Path(str(res)), """({
      nowebgl: document.querySelectorAll('.no-webgl').length,
      umap_points: document.querySelectorAll('#map-umap .scatterlayer .point').length,
      tsne_points: document.querySelectorAll('#map-tsne .scatterlayer .point').length,
      gl_canvases: document.querySelectorAll('#map-umap canvas.gl-canvas').length,
    })""")
    assert errors == []
    assert dom["nowebgl"] == 0
    # either WebGL really drew them (a canvas) or every point is an SVG marker
    assert dom["gl_canvases"] or (dom["umap_points"] == 3200 and dom["tsne_points"] == 3200), dom


def test_readme_names_the_metrics_file_the_report_writes():
    """The Reports section says where the numbers go, by the rule the code follows."""
    from treesynth.analytics.outputs import metrics_path_for

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    reports = readme.split("\n## Reports\n", 1)[1].split("\n## ", 1)[0]
    assert metrics_path_for(Path("r.html")) == Path("r.metrics.json")
    assert "`--out r.html` writes `r.html` and `r.metrics.json`" in reports
    assert metrics_path_for(Path("runs/x/report.html")) == Path("runs/x/metrics.json")
    assert "`metrics.json` when the page is named `report.html`" in reports
    assert "otherwise `<name>.metrics.json`" in reports
