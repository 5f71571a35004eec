"""``treesynth report``: diversity metrics, coverage and maps for one dataset or several, as one
self-contained HTML file plus ``metrics.json`` next to it.

Entry points: ``run_report(ReportOptions)`` (the ``report`` command), ``build_report`` (the same as a
library call with keyword options), ``report_for_run`` (``treesynth run --report`` and the TUI's
report key).

The pipeline, one stage at a time: load the inputs (``data``), embed them (``core.embeddings``, or
``ray_embed`` on a cluster), compute each dataset's metrics (``analysis``), fit the maps
(``project``), render the page (``html``) and write it with its metrics document (``outputs``).
Each metric record carries ``n`` (rows it was computed on), ``model`` (the embedder, or null for
lexical metrics) and ``seed``.

Large datasets. A dataset with more rows than ``EMBED_LIMIT`` (``--embed-sample N``; 0: no limit)
embeds only a seeded uniform random sample of that many rows: the embedding metrics (mean cosine,
Vendi, nearest neighbours, near-duplicates, most similar pairs, leaf and branch similarities) and
the maps use it, while the row count, exact duplicates, mean length, leaf and branch counts and the
quality section stay exact over every row. Each stage's time is said as it ends (and stored in
``metrics.json`` under ``timings_s``); reading a large run, embedding and t-SNE show progress.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from treesynth.core.rundir import REPORT

from .analysis import analyse
from .data import load_inputs
from .dataset import uniform_sample
from .errors import ReportError
from .outputs import atomic_write, default_html_path, dumps, metrics_document, metrics_path_for
from .progress import is_terminal, meters
from .project import build_maps
from .results import Analysis, Log
from .settings import DEFAULT_MAP_POINTS, EMBED_LIMIT, EXACT_NN_LIMIT, MAX_MAP_POINTS

if TYPE_CHECKING:
    from treesynth.core.embeddings import Embedder


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ReportOptions:
    """What a report is asked for (``treesynth report``'s arguments)."""

    inputs: tuple[str, ...]  # the first is the main one, the rest are compared with it
    out: str | Path | None = None  # the HTML file, or a folder for its report.html (default: outputs.default_html_path)
    field: str | None = None  # the text field (default: chosen per input)
    sample: int | None = None  # a seeded uniform sample of this many rows of each input, for every metric
    # embed at most this many rows of each input (a seeded uniform sample) for the embedding metrics and
    # the maps; counts stay over every row. 0: embed every row. None: settings.EMBED_LIMIT, or every row
    # when ``sample`` is given (``--sample`` alone works as it always did)
    embed_sample: int | None = None
    seed: int = 0
    embedder: str | None = None  # a local sentence-transformers model folder (default all-MiniLM-L6-v2)
    precision: str | None = "auto"  # auto (= fp32) | fp32 | int8 | bf16 (int8 and bf16: approximate, said on the page)
    map_points: int = DEFAULT_MAP_POINTS  # points fitted and drawn per map, shared among the inputs
    cache: bool = True  # read and write cached embeddings
    executor: str = "local"  # local | ray
    ray_address: str | None = None
    title: str | None = None  # the page's title (default: from the inputs' names)


@dataclass
class ReportResult:
    html_path: Path
    metrics_path: Path
    metrics: dict[str, Any]
    seconds: float

    def __str__(self) -> str:
        return str(self.html_path)

    def __fspath__(self) -> str:
        return str(self.html_path)


def build_report(
    inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], out: str | Path | None = None,
    log: Log | None = _stderr, **options: Any,
) -> ReportResult:
    """The report of ``inputs`` (one path, or several: the first is the main one, the rest are
    compared); ``options`` are ``ReportOptions`` fields, and ``progress_bar`` (see ``run_report``).
    ``str()`` of the result is the HTML path."""
    paths = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    bar = options.pop("progress_bar", None)
    return run_report(ReportOptions(inputs=tuple(os.fspath(p) for p in paths), out=out, **options), log=log, progress_bar=bar)


def report_for_run(run_dir: str | Path, out: str | Path | None = None, log: Log | None = _stderr, **options: Any) -> Path:
    """The report of one finished (or unfinished) run, written to ``RUN_DIR/report.html``; returns its path."""
    return build_report([str(run_dir)], out=out or Path(run_dir) / REPORT, log=log, **options).html_path


def embed_limit(opts: ReportOptions) -> int:
    """Rows above which a dataset's embedding metrics use a sample of that many rows (0: every row is
    embedded): ``--embed-sample``, else ``EMBED_LIMIT`` unless ``--sample`` chose the rows already."""
    if opts.embed_sample is not None:
        return opts.embed_sample
    return 0 if opts.sample is not None else EMBED_LIMIT


def run_report(opts: ReportOptions, log: Log | None = _stderr, progress_bar: bool | None = None) -> ReportResult:
    """Build the report ``opts`` asks for; progress lines go to ``log`` (None: quiet). Each stage's time
    is said as it finishes, and long stages (reading a large run, embedding, t-SNE) report progress:
    ``progress_bar`` True draws a live bar on stderr, False writes a line through ``log`` every few
    seconds; None (the default) draws the bar when ``log`` is the default (stderr) and stderr is a
    terminal."""
    say: Log = log or (lambda m: None)
    t_start = time.perf_counter()
    html_path = _html_path(opts)
    limit = embed_limit(opts)
    live = progress_bar if progress_bar is not None else (log is _stderr and is_terminal(sys.stderr))
    progress = meters(say, live) if log is not None or live else None
    timings: dict[str, float] = {}

    with _stage("load", timings, say):
        datasets = load_inputs(opts.inputs, opts.field, opts.sample, opts.seed, say, progress)

    with _stage("embed", timings, say):
        emb = _embedder(opts, say)
        if getattr(emb, "approximate", False):
            say(f"note: the embedding figures will be approximate: {emb.describe()['approximation']}; the default (fp32) is not")
        analyses: list[Analysis] = []
        for ds in datasets:
            rows = uniform_sample(ds.n, limit, opts.seed) if limit else None
            if rows is None:
                say(f"embedding {ds.n:,} texts of {ds.name} with {emb.label}")
                texts = ds.texts
            else:
                say(f"embedding a uniform random sample of {len(rows):,} of {ds.n:,} texts of {ds.name} (seed {opts.seed}) with {emb.label}")
                texts = [ds.texts[int(i)] for i in rows]
            bar = progress("embedding", "texts") if progress is not None else None
            try:
                X = emb.embed(texts, progress=bar)
            finally:
                if bar is not None:
                    bar.close()
            analyses.append(Analysis(ds=ds, X=X, embedded=rows))
        model = emb.label

    with _stage("metrics", timings, say):
        for i, a in enumerate(analyses):
            say(f"metrics for {a.ds.name}" + (f" (embedding metrics on {a.n_embedded:,} of {a.ds.n:,} rows)" if a.embed_sampled else ""))
            analyse(a, model, opts.seed, rng=np.random.default_rng([opts.seed, i]), exact_nn_limit=EXACT_NN_LIMIT)
            if opts.executor == "ray" and (a.ds.sampled or a.embed_sampled):  # full-data metrics over every row, streamed on the cluster
                from .ray_embed import full_data_metrics

                full_data_metrics(a, emb, model, opts.seed, address=opts.ray_address, log=say)
        ab = _ab(analyses, opts.seed, say)

    with _stage("maps", timings, say):
        maps = build_maps(analyses, opts.seed, opts.map_points, say, meters=progress)

    with _stage("html", timings, say):
        from treesynth.core import __version__

        from .html import render_page

        mpath = metrics_path_for(html_path)
        doc = metrics_document(analyses, emb.describe(), opts.seed, maps, opts.map_points, __version__, exact_nn_limit=EXACT_NN_LIMIT,
                               embed_limit=limit)
        doc["metrics_file"] = mpath.name
        if ab is not None:
            doc["ab"] = ab
        atomic_write(html_path, render_page(analyses, doc, maps, title=opts.title).encode("utf-8"))
    timings["total"] = time.perf_counter() - t_start
    doc["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    doc["embedding_runs"] = emb.stats
    atomic_write(mpath, dumps(doc))
    say("stage times: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items() if k != "total"))
    say(f"wrote {html_path} ({html_path.stat().st_size / 1e6:.1f} MB) and {mpath.name} in {timings['total']:.0f} s")
    return ReportResult(html_path, mpath, doc, timings["total"])


@contextmanager
def _stage(name: str, timings: dict[str, float], say: Log) -> Iterator[None]:
    """Time one stage of the report into ``timings`` and say how long it took when it finishes."""
    t = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - t
    say(f"{name} done in {timings[name]:.1f} s")


def _ab(analyses: list[Analysis], seed: int, say: Log) -> dict[str, Any] | None:
    """TreeSynth against its baseline (``analytics.ab``) when the first input is a run and a baseline is
    among the datasets: the rows, the sentence, and both sides' calls and cost (their state.json)."""
    from . import ab as AB

    base = next((a for a in analyses[1:] if a.ds.role == "baseline"), None)
    tree = analyses[0]
    if base is None or tree.ds.kind != "run":
        return None
    say(f"A/B: {tree.ds.name} against {base.ds.name} ({AB.BOOTSTRAP:,} bootstrap resamples)")
    rows = AB.compare(tree, base, seed)
    quality = []
    for a in (tree, base):
        judge = a.ds.quality.numbers.get("judge") if a.ds.quality is not None else None
        quality.append(judge["pass_rate"] if judge and judge.get("judged") else None)
    return {
        "treesynth": tree.ds.name, "baseline": base.ds.name, "rows": [r.as_dict() for r in rows],
        "sentence": AB.sentence(rows, tree.n_embedded, base.n_embedded, tree_of=tree.ds.n if tree.embed_sampled else None,
                                base_of=base.ds.n if base.embed_sampled else None),
        "bootstrap": AB.BOOTSTRAP, "vendi_draws": AB.VENDI_DRAWS,
        "cost": AB.cost_rows(_usage(tree.ds.source), _usage(base.ds.source)),
        "judge_pass_rate": {"treesynth": quality[0], "baseline": quality[1]},
    }


def _usage(source: str) -> dict[str, Any] | None:
    """A run directory's calls, tokens and cost (state.json ``usage``), or None."""
    import json

    from treesynth.core.rundir import STATE

    try:
        usage = json.loads((Path(source) / STATE).read_text(encoding="utf-8")).get("usage")
    except (OSError, ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None


def _html_path(opts: ReportOptions) -> Path:
    """Where the page goes, once the options are known to be usable (ReportError if not)."""
    if not opts.inputs:
        raise ReportError("nothing to report: give a run directory or a dataset file")
    if not 5 <= opts.map_points <= MAX_MAP_POINTS:
        raise ReportError(f"--map-points must be between 5 and {MAX_MAP_POINTS:,}")
    if opts.embed_sample is not None and (opts.embed_sample < 0 or opts.embed_sample == 1):
        raise ReportError("--embed-sample must be 0 (embed every row) or at least 2")
    html_path = Path(opts.out) if opts.out else default_html_path(opts.inputs)
    if html_path.is_dir():
        html_path = html_path / REPORT
    if not html_path.parent.is_dir():
        raise ReportError(f"cannot write {str(html_path)!r}: the folder {str(html_path.parent)!r} does not exist")
    return html_path


def _embedder(opts: ReportOptions, log: Log) -> Embedder:
    """The sentence embedder: local, or on a Ray cluster (``ray_embed``)."""
    if opts.executor == "ray":
        from .ray_embed import RayEmbedder

        return RayEmbedder(opts.embedder, precision=opts.precision, cache=opts.cache, log=log, address=opts.ray_address)
    from treesynth.core.embeddings import Embedder

    return Embedder(opts.embedder, precision=opts.precision, cache=opts.cache, log=log)
