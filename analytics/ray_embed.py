"""``treesynth report --executor ray``: embeddings on a Ray cluster, with Ray Data ``map_batches``.

Two paths, both with the report's model, precision and float16 rounding (``core.embeddings.Embedder``), so
the numbers equal a local report's up to float noise:

``RayEmbedder`` is a drop-in ``Embedder`` whose ``encode`` runs on the cluster: the texts go out
in blocks, a pool of actors (each loads the model once, one thread per reserved CPU) embeds
them, and the vectors come back to the driver in any order and are put back by row index. The
report's cache, de-duplication and every metric are unchanged. Right for datasets whose
embeddings fit in the driver's memory (n × d × 4 bytes) but take too long to compute on one
machine.

``stream_stats`` is for datasets too large to hold: the workers read the file themselves
(JSONL lines, Parquet or CSV columns), embed, and each batch returns only partial sums::

    n, s = Σ x_i, q = Σ ‖x_i‖², G = Σ x_i x_iᵀ (d×d), and per leaf L: S_L = Σ_{i∈L} x_i, n_L, q_L

which the driver adds up (O(d²) per batch, never O(n·d)). These are exactly the quantities the
report's full-data metrics are defined on (``metrics``' module docstring): mean pairwise cosine
= (‖s‖² − q)/(n(n−1)), the Vendi score from the eigenvalues of the second moment G/n, and the
leaf coverage (occupancy entropy, Gini, within/between-leaf similarity) from the per-leaf sums.
``full_data_metrics`` puts them into a report built on a ``--sample``: the maps, neighbours
and lexical metrics use the sample, the full-data metrics all rows.

Ray is an optional extra (``pip install 'treesynth[ray]'``), imported only here.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from treesynth.core.embeddings import Embedder, quantise, resolve_precision
from treesynth.core.errors import EmbedderError
from treesynth.core.rundir import DATASET, SAMPLES

from . import metrics as M
from .records import num, rec
from .results import Analysis

ROWS_PER_BATCH = 2048


def _ray(address: str | None):
    from treesynth.core.llm.transports.ray import connect, import_ray

    import_ray()  # one clear error when Ray is not installed
    connect(address)
    import logging

    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*minimum number of concurrent actors.*")  # small inputs: fewer blocks than actors
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
    except Exception:  # noqa: BLE001 - cosmetic settings only
        pass
    return ray


def _pool_size(ray, workers: int | None, threads: int) -> int:
    if workers:
        return max(1, int(workers))
    return max(1, int(float(ray.cluster_resources().get("CPU", 1.0)) // threads))


class _EmbedBatches:
    """The map_batches UDF: one per actor, so the model is loaded once per worker.

    ``mode="embed"``: returns each row's index and float16 embedding. ``mode="stats"``: returns one
    pickled partial-sum record per batch (see ``stream_stats``). ``parse``: (field, "lines" | "table")
    when the batch holds raw rows read by the workers (JSONL lines, or table columns)."""

    def __init__(
        self, model: str | None, precision: str, batch_size: int | None, threads: int, mode: str = "embed",
        parse: tuple[str, str] | None = None, backend: str | None = None,
    ) -> None:
        try:
            import torch

            torch.set_num_threads(max(1, threads))
        except Exception:  # noqa: BLE001
            pass
        self.emb = Embedder(model, precision=precision, batch_size=batch_size, cache=False, backend=backend, threads=max(1, threads))
        self.mode = mode
        self.parse = _Extract(*parse) if parse else None

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.parse is not None:
            batch = self.parse(batch)
        texts = [str(t) for t in batch["text"]]
        X = self.emb.encode(texts)
        if self.mode == "embed":
            return {"i": np.asarray(batch["i"], dtype=np.int64), "emb": X.astype(np.float16)}
        leaves = [str(x) for x in batch["leaf"]] if "leaf" in batch else None
        return {"blob": np.array([pickle.dumps(_partial(X, leaves), protocol=5)], dtype=object)}


def _partial(X: np.ndarray, leaves: Sequence[str] | None) -> dict[str, Any]:
    X64 = X.astype(np.float64)
    out: dict[str, Any] = {"n": len(X), "s": X64.sum(axis=0), "q": float(np.einsum("ij,ij->", X64, X64)), "G": X64.T @ X64}
    if leaves is not None:
        keys = sorted(set(leaves))
        pos = {k: i for i, k in enumerate(keys)}
        g = np.fromiter((pos[leaf] for leaf in leaves), dtype=np.int64, count=len(leaves))
        S, cnt, sq = M.group_sums(X, g, len(keys))
        out["leaves"] = {k: (S[i], int(cnt[i]), float(sq[i])) for i, k in enumerate(keys)}
    return out


# ---------------------------------------------------------------------------
# collect: a drop-in Embedder


class RayEmbedder(Embedder):
    """``Embedder`` whose ``encode`` runs on a Ray cluster (see the module docstring)."""

    def __init__(
        self,
        model: str | None = None,
        precision: str | None = "auto",
        *,
        address: str | None = None,
        workers: int | None = None,
        threads: int = 1,
        rows_per_batch: int = ROWS_PER_BATCH,
        **kw: Any,
    ) -> None:
        super().__init__(model, precision=precision, **kw)
        self.model_arg = model
        self.address = address
        self.workers = workers
        self.threads = max(1, int(threads))
        self.rows_per_batch = rows_per_batch

    @property
    def label(self) -> str:
        return f"{self.name} ({self.precision}{', approximate' if self.approximate else ''}, on Ray)"

    def encode(self, texts: Sequence[str], chunk: int = 8192, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        import pyarrow as pa

        ray = _ray(self.address)
        self.load_meta_only()  # dimension without loading the weights on the driver
        n = len(texts)
        out = np.zeros((n, self.dim or 0), dtype=np.float32)
        if n == 0:
            return out
        k = _pool_size(ray, self.workers, self.threads)
        if self.backend == "onnxruntime":
            try:
                self.onnx_file()  # built once here: workers on this machine read it instead of each exporting the model
            except EmbedderError as e:
                if self.precision != "fp32" or self._backend_forced:
                    raise
                self.log(f"  note: {e}; embedding with PyTorch fp32 instead (the same vectors, slower)")
                self.backend = "torch"
        # length-sorted blocks carry little padding; several blocks per worker keep them all busy
        order = np.argsort(-np.fromiter((len(t) for t in texts), dtype=np.int64, count=n), kind="stable")
        n_blocks = max(1, min(math.ceil(n / 64), 4 * k))
        tables = [
            pa.table({"i": idx, "text": [texts[j] for j in idx]})
            for idx in np.array_split(order, n_blocks) if len(idx)
        ]
        ds = ray.data.from_arrow(tables).map_batches(
            _EmbedBatches, fn_constructor_kwargs={
                "model": self.model_arg, "precision": self.precision, "batch_size": self._batch_size, "threads": self.threads,
                "backend": self.backend,
            },
            batch_size=self.rows_per_batch, compute=ray.data.ActorPoolStrategy(size=k), num_cpus=self.threads, batch_format="numpy",
        )
        done = 0
        for b in ds.iter_batches(batch_format="numpy", batch_size=None):
            E = np.asarray(b["emb"], dtype=np.float32)
            if out.shape[1] != E.shape[1]:  # the model's config did not name its dimension
                self.dim = int(E.shape[1])
                out = np.zeros((n, self.dim), dtype=np.float32)
                done = 0
            out[np.asarray(b["i"], dtype=np.int64)] = E
            done += len(E)
            if progress is not None:
                progress(done, n)
        self.log(f"  embedded {done:,}/{n:,} on Ray ({k} workers)")
        return quantise(out)


# ---------------------------------------------------------------------------
# stream: partial sums only


@dataclass
class StreamStats:
    """Sums over every row (see the module docstring); the metrics follow from them."""

    n: int = 0
    s: np.ndarray | None = None
    q: float = 0.0
    G: np.ndarray | None = None
    leaves: dict[str, list] = field(default_factory=dict)  # leaf id -> [S_L, n_L, q_L]
    batches: int = 0

    def add(self, p: dict[str, Any]) -> None:
        self.n += int(p["n"])
        self.s = p["s"] if self.s is None else self.s + p["s"]
        self.G = p["G"] if self.G is None else self.G + p["G"]
        self.q += float(p["q"])
        self.batches += 1
        for k, (S, c, sq) in (p.get("leaves") or {}).items():
            cur = self.leaves.get(k)
            if cur is None:
                self.leaves[k] = [np.array(S, dtype=np.float64), int(c), float(sq)]
            else:
                cur[0] += S
                cur[1] += int(c)
                cur[2] += float(sq)

    @property
    def second_moment(self) -> np.ndarray:
        return self.G / max(self.n, 1)

    def mean_pairwise_cosine(self) -> float:
        if self.n < 2:
            return float("nan")
        return float((self.s @ self.s - self.q) / (self.n * (self.n - 1)))

    def vendi_score(self) -> float:
        if not self.n:
            return float("nan")
        return M.entropy_exp(np.linalg.eigvalsh(self.second_moment))

    def coverage(self, leaf_order: Sequence[str] | None = None, targets: Sequence[int] | None = None) -> dict[str, Any]:
        """Leaf coverage as ``metrics.coverage_metrics`` computes it, from the per-leaf sums.
        ``leaf_order``: every leaf of the tree (empty ones count); default: the leaves seen."""
        keys = list(leaf_order) if leaf_order is not None else sorted(self.leaves)
        d = len(self.s) if self.s is not None else 0
        S = np.zeros((len(keys), d))
        cnt = np.zeros(len(keys), dtype=np.int64)
        sq = np.zeros(len(keys))
        for i, k in enumerate(keys):
            if k in self.leaves:
                S[i], cnt[i], sq[i] = self.leaves[k]
        out: dict[str, Any] = {"leaves": len(keys), "rows_in_leaves": int(cnt.sum())}
        out["occupancy_entropy"] = M.occupancy_entropy(cnt)
        out["gini"] = M.gini(cnt)
        out["empty_leaves"] = int((cnt == 0).sum())
        if targets is not None and len(targets) == len(keys):
            t = np.asarray(targets, dtype=np.float64)
            out["thin_leaves"] = int(((cnt > 0) & (cnt < 0.5 * t)).sum())
        else:
            mean = cnt.mean() if len(keys) else 0.0
            out["thin_leaves"] = int(((cnt > 0) & (cnt < 0.5 * mean)).sum())
        w, b = M.within_between(S, cnt, sq)
        out["within_leaf_similarity"] = w
        out["between_leaf_similarity"] = b
        out["leaf_separation"] = w - b if not (math.isnan(w) or math.isnan(b)) else float("nan")
        out["leaf_sizes"] = cnt.tolist()
        return out


class _Extract:
    """Raw rows (JSON lines or table columns) -> {"text", "leaf"} rows that have text."""

    def __init__(self, field: str, kind: str) -> None:
        self.field, self.kind = field, kind

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts, leaves = [], []
        if self.kind == "lines":
            import orjson

            for line in batch["text"]:
                try:
                    r = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue  # a torn last line
                t = r.get(self.field) if isinstance(r, dict) else None
                if isinstance(t, str) and t.strip():
                    texts.append(t)
                    leaves.append(str(r.get("leaf_id", "")))
        else:
            col = batch[self.field]
            lid = batch.get("leaf_id")
            for j, t in enumerate(col):
                if isinstance(t, str) and t.strip():
                    texts.append(t)
                    leaves.append(str(lid[j]) if lid is not None else "")
        return {"text": np.array(texts, dtype=object), "leaf": np.array(leaves, dtype=object)}


def _read(ray, source: str | Path, field: str):
    """A Ray dataset of raw rows read by the workers, and how to parse them. Read tasks reserve no
    CPU: the embedding actors may hold every one (reads are I/O, and parsing runs in the actors)."""
    light = {"num_cpus": 0}
    p = Path(source)
    if p.is_dir():
        p = p / DATASET if (p / DATASET).is_file() else p / SAMPLES
    suffix = p.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return ray.data.read_text(str(p), **light), "lines"
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        cols = [c for c in (field, "leaf_id") if c in pq.read_schema(str(p)).names]
        return ray.data.read_parquet(str(p), columns=cols, **light), "table"
    if suffix in (".csv", ".tsv"):
        import pyarrow.csv as pacsv

        delim = "\t" if suffix == ".tsv" else ","
        return ray.data.read_csv(str(p), parse_options=pacsv.ParseOptions(delimiter=delim), **light), "table"
    raise ValueError(f"{str(source)!r}: streaming reads JSONL, Parquet, CSV or a run directory")


def stream_stats(
    source: str | Path | Sequence[str],
    field: str = "text",
    leaf_ids: Sequence[str] | None = None,
    model: str | None = None,
    precision: str | None = "auto",
    *,
    address: str | None = None,
    workers: int | None = None,
    threads: int = 1,
    batch_size: int | None = None,
    rows_per_batch: int = ROWS_PER_BATCH,
    log: Callable[[str], None] | None = None,
    backend: str | None = None,
) -> StreamStats:
    """Partial sums over every row of ``source`` (a path the workers read, or a list of texts with
    optional ``leaf_ids``), embedded on the cluster; see the module docstring."""
    ray = _ray(address)
    precision = resolve_precision(precision)
    k = _pool_size(ray, workers, threads)
    parse = None
    if isinstance(source, (str, Path)):
        rows, kind = _read(ray, source, field)
        parse = (field, kind)
    else:
        import pyarrow as pa

        texts = list(source)
        leaves = [str(x) for x in leaf_ids] if leaf_ids is not None else [""] * len(texts)
        n_blocks = max(1, min(math.ceil(len(texts) / 64), 4 * k))
        cuts = np.array_split(np.arange(len(texts)), n_blocks)
        rows = ray.data.from_arrow([pa.table({"text": [texts[j] for j in c], "leaf": [leaves[j] for j in c]}) for c in cuts if len(c)])
    ds = rows.map_batches(
        _EmbedBatches, fn_constructor_kwargs={
            "model": model, "precision": precision, "batch_size": batch_size, "threads": threads, "mode": "stats", "parse": parse,
            "backend": backend,
        },
        batch_size=rows_per_batch, compute=ray.data.ActorPoolStrategy(size=k), num_cpus=threads, batch_format="numpy",
    )
    st = StreamStats()
    for b in ds.iter_batches(batch_format="numpy", batch_size=None):
        for blob in b["blob"]:
            st.add(pickle.loads(blob))
    if log:
        log(f"  streamed {st.n:,} rows on Ray ({k} workers, {st.batches} batches)")
    return st


# ---------------------------------------------------------------------------
# the report's hook


def full_data_metrics(a: Analysis, emb: Embedder, model: str, seed: int, address: str | None = None, log=None) -> StreamStats:
    """Replace a sampled report's full-data metrics (mean cosine, Vendi, leaf coverage) with their
    values over every row of the dataset's source, streamed on Ray."""
    ds = a.ds
    st = stream_stats(ds.source, field=ds.field, model=getattr(emb, "model_arg", None) if isinstance(emb, RayEmbedder) else str(emb.path),
                      precision=emb.precision, backend=emb.backend, address=address, log=log)
    how = f"streamed over all {st.n:,} rows on Ray"
    m = a.metrics
    m["mean_cosine_similarity"] = rec(st.mean_pairwise_cosine(), st.n, model, seed, method=f"exact, via the mean embedding, {how}")
    m["vendi_score"] = rec(st.vendi_score(), st.n, model, seed, method=f"dual form over the d×d second-moment matrix, {how}")
    if ds.leaf_ids is not None and st.leaves:
        tree = ds.tree
        order = list(tree.leaves) if tree is not None else None
        targets = [tree.target.get(leaf, 0) for leaf in order] if tree is not None else None
        cov = st.coverage(order, targets)
        n_cov = cov["rows_in_leaves"]
        m["leaves"] = rec(cov["leaves"], n_cov, None, seed)
        m["empty_leaves"] = rec(cov["empty_leaves"], n_cov, None, seed, known=tree is not None)
        m["occupancy_entropy"] = rec(cov["occupancy_entropy"], n_cov, None, seed, method=how)
        m["leaf_gini"] = rec(cov["gini"], n_cov, None, seed, method=how)
        for key in ("within_leaf_similarity", "between_leaf_similarity", "leaf_separation"):
            m[key] = rec(cov[key], n_cov, model, seed, method=how)
        if a.coverage is not None:
            a.coverage.update({k: num(v) for k, v in cov.items() if k != "leaf_sizes"})
            a.coverage.pop("similarity_rows", None)  # the leaf similarities now cover every row
    ds.notes.append(f"mean cosine similarity, Vendi score and leaf coverage: {how}; other metrics and the maps use the sample")
    return st
