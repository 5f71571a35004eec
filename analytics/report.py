"""``treesynth report``: diversity metrics, coverage and maps for one dataset or several, as one
self-contained HTML file plus ``metrics.json`` next to it.

Entry points: ``build_report`` (the library call), ``report_for_run`` (``treesynth run --report``
and the TUI's report key), ``cli_report`` (the ``report`` subcommand; ``core.cli`` imports this
module by name, lazily, so core never depends on analytics).

Every number is computed here from the embeddings (``embed``), the formulas in ``metrics`` and
the maps in ``project``; ``html`` only renders. Each metric record carries ``n`` (rows it was
computed on), ``model`` (the embedder, or null for lexical metrics) and ``seed``.
"""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import metrics as M
from .data import Dataset, is_balance_run, load_balance_datasets, load_dataset
from .errors import InputError, ReportError

REPORT_FORMAT = "treesynth.report/1"
FIXED_K = 1000  # rows in the fixed-size samples (Vendi@k, NN@k, lexical)
NEAR_DUP = 0.95  # cosine threshold for near-duplicates
DEFAULT_MAP_POINTS = 10_000
MAX_MAP_POINTS = 50_000
EXACT_NN_LIMIT = 100_000
TOP_PAIRS = 10

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class Analysis:
    ds: Dataset
    X: np.ndarray
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    coverage: dict[str, Any] | None = None
    branches: list[dict[str, Any]] | None = None
    branch_matrix: list[list[float]] | None = None
    branch_names: list[str] | None = None
    branch_of_row: np.ndarray | None = None
    nn: M.NNResult | None = None
    pairs: list[dict[str, Any]] = field(default_factory=list)
    tree_nodes: list[dict[str, Any]] | None = None
    leaf_sizes: list[int] | None = None
    leaf_targets: list[int] | None = None


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


# ---------------------------------------------------------------------------


def default_out(inputs: Sequence[str]) -> Path:
    first = Path(inputs[0])
    if first.is_dir():
        return first / "report.html"
    return Path("report.html")


def metrics_path_for(html_path: Path) -> Path:
    stem = html_path.name[: -len(".html")] if html_path.name.endswith(".html") else html_path.name
    return html_path.with_name("metrics.json" if stem == "report" else f"{stem}.metrics.json")


def build_report(
    inputs: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    field: str | None = None,
    sample: int | None = None,
    seed: int = 0,
    embedder: str | None = None,
    precision: str | None = "auto",
    map_points: int = DEFAULT_MAP_POINTS,
    cache: bool = True,
    log: Log | None = _stderr,
    title: str | None = None,
    executor: str = "local",
    ray_address: str | None = None,
) -> ReportResult:
    """Build the report for ``inputs`` (one path, or several: the first is the main one, the rest are
    compared). Returns the paths written (``str()`` of the result is the HTML file's path)."""
    from treesynth.core.embeddings import Embedder

    log = log or (lambda m: None)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = [os.fspath(i) for i in inputs]
    if not inputs:
        raise ReportError("nothing to report: give a run directory or a dataset file")
    if not 5 <= map_points <= MAX_MAP_POINTS:
        raise ReportError(f"--map-points must be between 5 and {MAX_MAP_POINTS:,}")
    html_path = Path(out) if out else default_out(inputs)
    if html_path.is_dir():
        html_path = html_path / "report.html"
    if not html_path.parent.is_dir():
        raise ReportError(f"cannot write {str(html_path)!r}: the folder {str(html_path.parent)!r} does not exist")

    # ---- load ----------------------------------------------------------
    t = time.perf_counter()
    datasets: list[Dataset] = []
    for i, src in enumerate(inputs):
        if i == 0 and is_balance_run(Path(src)):  # a balance run: its input (before) against its output (after)
            pair = load_balance_datasets(src, field=field, sample=sample, seed=seed)
            datasets += pair
            for ds in pair:
                log(f"loaded {ds.name}: {ds.n:,} texts from field {ds.field!r}")
            continue
        try:
            ds = load_dataset(src, field=field, sample=sample, seed=seed)
        except InputError as e:
            if i == 0 or not field or "has no field" not in str(e):
                raise
            ds = load_dataset(src, field=None, sample=sample, seed=seed)
            ds.notes.append(f"no field {field!r}: compared on its field {ds.field!r}")
        datasets.append(ds)
        log(f"loaded {ds.name}: {ds.n:,} texts from field {ds.field!r}" + (f" (sample of {ds.n_before_sample:,})" if ds.sampled else ""))
    _unique_names(datasets)
    timings["load"] = time.perf_counter() - t

    # ---- embed ---------------------------------------------------------
    t = time.perf_counter()
    if executor == "ray":  # embeddings with Ray Data on a cluster (analytics/ray_embed.py)
        from .ray_embed import RayEmbedder

        emb = RayEmbedder(embedder, precision=precision, cache=cache, log=log, address=ray_address)
    else:
        emb = Embedder(embedder, precision=precision, cache=cache, log=log)
    analyses: list[Analysis] = []
    for ds in datasets:
        log(f"embedding {ds.n:,} texts of {ds.name} with {emb.label}")
        analyses.append(Analysis(ds=ds, X=emb.embed(ds.texts)))
    timings["embed"] = time.perf_counter() - t
    model = emb.label

    # ---- metrics -------------------------------------------------------
    t = time.perf_counter()
    for i, a in enumerate(analyses):
        log(f"metrics for {a.ds.name}")
        analyse(a, model, seed, rng=np.random.default_rng([seed, i]))
        if executor == "ray" and a.ds.sampled:  # full-data metrics over every row, streamed on the cluster
            from .ray_embed import full_data_metrics

            full_data_metrics(a, emb, model, seed, address=ray_address, log=log)
    timings["metrics"] = time.perf_counter() - t

    # ---- maps ----------------------------------------------------------
    t = time.perf_counter()
    maps = build_maps(analyses, seed, map_points, log)
    timings["maps"] = time.perf_counter() - t

    # ---- write ---------------------------------------------------------
    t = time.perf_counter()
    from . import html as H
    from treesynth.core import __version__

    mpath = metrics_path_for(html_path)
    doc = metrics_document(analyses, emb, seed, maps, map_points, __version__)
    doc["metrics_file"] = mpath.name
    page = H.render_page(analyses, doc, maps, title=title)
    _atomic_write(html_path, page.encode("utf-8"))
    timings["html"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start
    doc["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    doc["embedding_runs"] = emb.stats
    _atomic_write(mpath, _dumps(doc))
    log(f"wrote {html_path} ({html_path.stat().st_size / 1e6:.1f} MB) and {mpath.name} in {timings['total']:.0f} s")
    return ReportResult(html_path, mpath, doc, timings["total"])


def report_for_run(run_dir: str | Path, out: str | Path | None = None, log: Log | None = _stderr, **kw: Any) -> Path:
    """The report of one finished (or unfinished) run, written to ``RUN_DIR/report.html``; returns its path."""
    return build_report([str(run_dir)], out=out or Path(run_dir) / "report.html", log=log, **kw).html_path


def cli_report(args: Any) -> int:
    """The ``treesynth report`` command (``args`` from core.cli's parser)."""
    res = build_report(
        [args.input, *(args.compare or [])], out=args.out, field=args.field, sample=args.sample,
        seed=args.seed if args.seed is not None else 0, embedder=args.embedder,
        precision=getattr(args, "precision", None) or "auto",
        map_points=getattr(args, "map_points", None) or DEFAULT_MAP_POINTS,
        cache=not getattr(args, "no_embedding_cache", False),
        executor=getattr(args, "executor", None) or "local", ray_address=getattr(args, "ray_address", None),
    )
    print(res.html_path)
    return 0


# ---------------------------------------------------------------------------


def _unique_names(datasets: list[Dataset]) -> None:
    seen: dict[str, int] = {}
    for ds in datasets:
        k = seen.get(ds.name, 0)
        seen[ds.name] = k + 1
        if k:
            ds.name = f"{ds.name} ({k + 1})"


def _rec(value: Any, n: int, model: str | None, seed: int, **extra: Any) -> dict[str, Any]:
    return {"value": _num(value), "n": int(n), "model": model, "seed": seed, **{k: _num(v) for k, v in extra.items()}}


def _num(v: Any) -> Any:
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if (np.isnan(v) or np.isinf(v)) else v
    if isinstance(v, np.integer):
        return int(v)
    return v


_WS = re.compile(r"\s+")


def analyse(a: Analysis, model: str, seed: int, rng: np.random.Generator) -> None:
    X, n, ds = a.X, a.ds.n, a.ds
    m = a.metrics
    m["rows"] = _rec(n, n, None, seed, rows_read=ds.n_rows, rows_without_text=ds.n_empty, rows_before_sample=ds.n_before_sample)
    m["mean_cosine_similarity"] = _rec(M.mean_pairwise_cosine(X), n, model, seed, method="exact, via the mean embedding")
    m["vendi_score"] = _rec(M.vendi_score(X), n, model, seed, method="dual form over the d×d second-moment matrix")
    kidx = M.sample_indices(n, FIXED_K, rng)
    v = M.vendi_at_k(X, FIXED_K, rng)
    m["vendi_at_k"] = _rec(v["value"], v["k"], model, seed, std=v["std"], repeats=v["repeats"], k=FIXED_K)

    nn = M.nearest_neighbours(X, threshold=NEAR_DUP, exact_limit=EXACT_NN_LIMIT, rng=rng)
    a.nn = nn
    s = nn.summary()
    common = {"method": s["method"], "description": s["description"]}
    m["mean_nn_distance"] = _rec(s["mean_nn_distance"], n, model, seed, queries=s["queries"], median=s["median_nn_distance"],
                                 p05=s["p05_nn_distance"], **common, **({"se": s["mean_nn_distance_se"]} if "mean_nn_distance_se" in s else {}))
    m["near_duplicate_rate"] = _rec(s["near_duplicate_rate"], n, model, seed, threshold=NEAR_DUP, queries=s["queries"], **common,
                                    **({"ci95": s["near_duplicate_rate_ci95"]} if "near_duplicate_rate_ci95" in s else {}))
    m["near_duplicate_pairs"] = _rec(s["near_duplicate_pairs"], n, model, seed, threshold=NEAR_DUP, **common)
    nnk = M.nearest_neighbours(X[kidx], threshold=NEAR_DUP, exact_limit=EXACT_NN_LIMIT)
    m["mean_nn_distance_at_k"] = _rec(float(nnk.nn_distance.mean()) if len(kidx) > 1 else None, len(kidx), model, seed, k=FIXED_K,
                                      method="exact, within the fixed-size sample")
    norm = [_WS.sub(" ", t.strip().lower()) for t in ds.texts]
    m["exact_duplicate_rate"] = _rec(1.0 - len(set(norm)) / n, n, None, seed, method="texts equal after lower-casing and collapsing whitespace")

    lex = M.lexical_metrics([ds.texts[i] for i in kidx])
    for key, val in lex.items():
        m[key] = _rec(val, len(kidx), None, seed, k=FIXED_K, method="uniform sample of texts")
    m["mean_chars"] = _rec(float(np.mean([len(t) for t in ds.texts])), n, None, seed)
    a.pairs = top_pairs(nn, ds.texts, TOP_PAIRS)
    _coverage(a, model, seed, rng)


def top_pairs(nn: M.NNResult, texts: Sequence[str], k: int) -> list[dict[str, Any]]:
    order = np.argsort(-nn.nn_sim, kind="stable")
    out, seen = [], set()
    for q in order:
        i, j = int(nn.query_rows[q]), int(nn.nn_index[q])
        key = (min(i, j), max(i, j))
        if key in seen:
            continue
        seen.add(key)
        out.append({"similarity": float(nn.nn_sim[q]), "a": key[0], "b": key[1], "text_a": texts[key[0]], "text_b": texts[key[1]]})
        if len(out) >= k:
            break
    return out


def _coverage(a: Analysis, model: str, seed: int, rng: np.random.Generator) -> None:
    ds, X = a.ds, a.X
    if ds.leaf_ids is None:
        return
    tree = ds.tree
    if tree is not None:
        leaves = list(tree.leaves)
        targets = [tree.target.get(l, 0) for l in leaves]
    else:
        leaves = sorted(set(ds.leaf_ids))
        targets = None
    pos = {l: i for i, l in enumerate(leaves)}
    leaf_of_row = np.array([pos.get(l, -1) for l in ds.leaf_ids], dtype=np.int64)
    cov = M.coverage_metrics(X, leaf_of_row, len(leaves), targets)
    outside = int((leaf_of_row < 0).sum())
    cov["rows_outside_leaves"] = outside
    if outside:
        ds.notes.append(f"{outside:,} row(s) belong to no leaf of the tree (left out of the leaf coverage)")
    sizes = cov.pop("leaf_sizes")
    a.leaf_sizes = sizes
    a.leaf_targets = targets
    a.coverage = {k: _num(v) for k, v in cov.items()}
    n_cov = cov["rows_in_leaves"]
    m = a.metrics
    m["leaves"] = _rec(len(leaves), n_cov, None, seed)
    m["empty_leaves"] = _rec(cov["empty_leaves"], n_cov, None, seed, known=tree is not None)
    m["thin_leaves"] = _rec(cov["thin_leaves"], n_cov, None, seed, rule=cov["thin_rule"])
    m["occupancy_entropy"] = _rec(cov["occupancy_entropy"], n_cov, None, seed)
    m["leaf_gini"] = _rec(cov["gini"], n_cov, None, seed)
    m["within_leaf_similarity"] = _rec(cov["within_leaf_similarity"], n_cov, model, seed)
    m["between_leaf_similarity"] = _rec(cov["between_leaf_similarity"], n_cov, model, seed)
    m["leaf_separation"] = _rec(cov["leaf_separation"], n_cov, model, seed)

    bl = ds.branch_labels()
    if bl is None:
        return
    names, b_of_row = bl
    a.branch_names, a.branch_of_row = names, b_of_row
    B = len(names)
    S, cnt, sq = M.group_sums(X, b_of_row, B)
    if B <= 200:
        a.branch_matrix = [[_num(x) for x in row] for row in M.cross_similarity(S, cnt, sq)]
    # leaves per branch
    if tree is not None:
        leaf_branch = np.array([tree.branches.index(tree.branch_of(l)) if tree.branch_of(l) in tree.branches else -1 for l in leaves])
    else:
        first = {}
        for l, b in zip(ds.leaf_ids, b_of_row):
            first.setdefault(l, b)
        leaf_branch = np.array([first.get(l, -1) for l in leaves])
    sizes_arr = np.asarray(sizes)
    rows = []
    n_all = max(1, int(cnt.sum()))
    for b in range(B):
        rb = np.nonzero(b_of_row == b)[0]
        lb = np.nonzero(leaf_branch == b)[0]
        remap = -np.ones(len(leaves), dtype=np.int64)
        remap[lb] = np.arange(len(lb))
        sub_leaf = remap[leaf_of_row[rb]] if len(rb) else np.zeros(0, np.int64)
        sub_leaf = np.where(leaf_of_row[rb] < 0, -1, sub_leaf) if len(rb) else sub_leaf
        bt = [targets[i] for i in lb] if targets is not None else None
        bc = M.coverage_metrics(X[rb], sub_leaf, len(lb), bt) if len(rb) else None
        vk = M.vendi_at_k(X[rb], FIXED_K, rng) if len(rb) else {"value": None, "k": 0}
        rows.append({
            "branch": names[b],
            "node_id": tree.branches[b] if tree is not None else None,
            "samples": int(len(rb)),
            "share": len(rb) / n_all,
            "target": int(sum(bt)) if bt is not None else None,
            "leaves": int(len(lb)),
            "empty_leaves": int((sizes_arr[lb] == 0).sum()) if len(lb) else 0,
            "thin_leaves": bc["thin_leaves"] if bc else 0,
            "occupancy_entropy": _num(bc["occupancy_entropy"]) if bc else None,
            "gini": _num(bc["gini"]) if bc else None,
            "mean_similarity": _num(M.mean_pairwise_cosine(X[rb])) if len(rb) > 1 else None,
            "within_leaf_similarity": _num(bc["within_leaf_similarity"]) if bc else None,
            "between_leaf_similarity": _num(bc["between_leaf_similarity"]) if bc else None,
            "vendi_at_k": _num(vk["value"]),
            "vendi_k": int(vk["k"]),
            "n": int(len(rb)), "model": model, "seed": seed,
        })
    a.branches = rows
    if tree is not None:
        a.tree_nodes = tree_counts(tree, leaves, sizes)


def tree_counts(tree: Any, leaves: list[str], sizes: list[int]) -> list[dict[str, Any]]:
    """Nodes with subtree sample counts and quotas, for the sunburst (walk order)."""
    count = {l: int(s) for l, s in zip(leaves, sizes)}
    sub: dict[str, int] = {i: 0 for i in tree.node_ids}
    for nid in reversed(tree.node_ids):
        c = count.get(nid, 0) + sub[nid]
        sub[nid] = c
        p = tree.parent[nid]
        if p is not None and p in sub:
            sub[p] += c
    return [
        {"id": nid, "parent": tree.parent[nid], "label": tree.label[nid], "count": sub[nid], "target": tree.target.get(nid, 0),
         "leaf": nid in count, "status": tree.status[nid]}
        for nid in tree.node_ids
    ]


# ---------------------------------------------------------------------------


@dataclass
class Maps:
    rows: list[tuple[int, int]]  # (dataset index, row index) per point
    coords: dict[str, np.ndarray]
    info: dict[str, dict[str, Any]]
    sizes: list[int]  # points per dataset
    totals: list[int]  # rows per dataset


def build_maps(analyses: list[Analysis], seed: int, map_points: int, log: Log) -> Maps:
    from .project import balanced_sample, project

    rng = np.random.default_rng([seed, 10_007])
    picks = balanced_sample([a.ds.n for a in analyses], map_points, rng)
    rows = [(d, int(r)) for d, idx in enumerate(picks) for r in idx]
    X = np.concatenate([a.X[idx] for a, idx in zip(analyses, picks)]) if rows else np.zeros((0, 1), np.float32)
    log(f"maps on {len(rows):,} points")
    res = project(X, seed, log)
    return Maps(
        rows=rows, coords={k: v[0] for k, v in res.items()}, info={k: v[1] for k, v in res.items()},
        sizes=[len(p) for p in picks], totals=[a.ds.n for a in analyses],
    )


# ---------------------------------------------------------------------------


def metrics_document(analyses: list[Analysis], emb: Any, seed: int, maps: Maps, map_points: int, version: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "treesynth_version": version,
        "seed": seed,
        "embedder": emb.describe(),
        "settings": {"fixed_k": FIXED_K, "near_duplicate_threshold": NEAR_DUP, "exact_nn_limit": EXACT_NN_LIMIT,
                     "map_points": map_points},
        "datasets": [],
        "maps": {"points": len(maps.rows), "per_dataset": maps.sizes, "rows_per_dataset": maps.totals, **maps.info},
    }
    for a in analyses:
        d: dict[str, Any] = {
            "name": a.ds.name, "source": a.ds.source, "kind": a.ds.kind, "field": a.ds.field, "n": a.ds.n,
            "status": a.ds.status, "task": a.ds.task, "notes": a.ds.notes, "metrics": a.metrics,
        }
        if a.coverage is not None:
            d["coverage"] = a.coverage
            d["leaf_sizes"] = a.leaf_sizes
        if a.branches is not None:
            d["branches"] = a.branches
            d["branch_similarity"] = {"labels": a.branch_names, "matrix": a.branch_matrix}
        d["most_similar_pairs"] = a.pairs
        doc["datasets"].append(d)
    return doc


def _dumps(doc: Any) -> bytes:
    import orjson

    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.floating,)):
        return _num(o)
    if isinstance(o, np.integer):
        return int(o)
    raise TypeError(type(o).__name__)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ReportError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
