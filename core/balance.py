"""Rebalance an existing dataset with its own tree (``treesynth balance``).

1. Grow a tree from the data: the same partition protocol as ``run``, but each node's pivots are
   rows routed to that node (seeded sample), not generated; coverage still adds values the data
   lacks, which is where new rows are needed.
2. Route every row to exactly one child at each split: ``llm`` classifies many rows per call
   (batched, structured, validated, retried; a row it cannot place goes to the nearest value by
   embedding similarity), ``embed`` uses embedding similarity to each value's label and pivots
   with no LLM calls.
3. Balance: a target per leaf (``target_per_leaf`` or ``size`` split evenly); crowded leaves keep
   their most mutually distant rows (greedy farthest-point, seeded), sparse and empty leaves get
   synthesised rows conditioned on the leaf path and a few of its real rows; new rows that
   duplicate or nearly duplicate existing ones are dropped.
4. Write the balanced dataset (JSONL + Parquet, with ``provenance`` and leaf path), the dropped
   ids, the tree and a before/after table per leaf.

Routing is checkpointed (``routes.jsonl``), synthesis like any run (``samples.jsonl``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

from .allocate import allocate
from .clusters import _STOP, FALLBACK_DIMENSION, distinctive_words, fallback_k, is_fallback_dimension, kmeans, unique_names  # noqa: F401
from .errors import ConfigError
from .reader import is_balance_run  # noqa: F401 - where callers found it
from .rundir import BALANCE
from .store import atomic_write
from .text import sample_key
from .tree import LEAF, Node

OUTPUT_COLUMNS = ("leaf_id", "path", "provenance")
NEAR_DUP_COSINE = 0.95


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------


@dataclass
class Data:
    ids: list[str]
    rows: list[dict[str, Any]]  # original rows, untouched
    field: str  # the text column used for pivots and routing
    fields: tuple[str, ...]  # the columns a synthesised row has
    digest: str

    def __len__(self) -> int:
        return len(self.rows)

    def text(self, i: int) -> str:
        return str(self.rows[i].get(self.field) or "")

    def sample(self, i: int) -> dict[str, str]:
        return {f: str(self.rows[i].get(f) or "") for f in self.fields}


def read_table(path: Path):
    import polars as pl

    if not path.exists():
        raise ConfigError(f"{str(path)!r} does not exist")
    if not path.is_file():
        raise ConfigError(f"{str(path)!r} is not a file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson", ".json"):
            if path.stat().st_size == 0:
                raise ConfigError(f"{str(path)!r} is empty")
            df = pl.read_ndjson(path, infer_schema_length=None)
        elif suffix == ".parquet":
            df = pl.read_parquet(path)
        elif suffix == ".csv":
            df = pl.read_csv(path, infer_schema_length=None)
        else:
            raise ConfigError(f"{str(path)!r}: unsupported format (use .jsonl, .parquet or .csv)")
    except ConfigError:
        raise
    except Exception as e:  # noqa: BLE001 - polars raises many kinds for malformed input
        first = " ".join(str(e).split())[:200]
        raise ConfigError(f"cannot read {str(path)!r}: {first}") from None
    if df.height == 0:
        raise ConfigError(f"{str(path)!r} has no rows")
    return df


def load_data(path: str | Path, field: str | None, fields: tuple[str, ...] | None) -> Data:
    import polars as pl

    p = Path(path)
    df = read_table(p)
    text_cols = [c for c, t in df.schema.items() if t == pl.String]
    if field is None:
        field = "question" if "question" in text_cols else (text_cols[0] if text_cols else None)
        if field is None:
            raise ConfigError(f"{str(p)!r} has no text column; pass --field")
    if field not in df.columns:
        raise ConfigError(f"{str(p)!r} has no column {field!r} (columns: {', '.join(df.columns)})")
    if df.schema[field] != pl.String:
        raise ConfigError(f"column {field!r} is not text (it holds {df.schema[field]}); pass a text --field")
    fields = tuple(fields) if fields else (field,)
    for f in fields:
        if f not in df.columns:
            raise ConfigError(f"{str(p)!r} has no column {f!r} for --fields (columns: {', '.join(df.columns)})")
        if df.schema[f] != pl.String:
            raise ConfigError(f"column {f!r} in --fields is not text (it holds {df.schema[f]})")
    clash = [c for c in OUTPUT_COLUMNS if c in df.columns]
    if clash:
        raise ConfigError(f"{str(p)!r} already has column(s) {', '.join(clash)}, which balance adds; rename them first")
    empty = df.filter(pl.col(field).is_null() | (pl.col(field).str.strip_chars() == "")).height
    if empty == df.height:
        raise ConfigError(f"column {field!r} is empty in every row")
    rows = df.to_dicts()
    if "id" in df.columns and df["id"].n_unique() == df.height and df["id"].null_count() == 0:
        ids = [str(r["id"]) for r in rows]
    else:
        ids = [f"row-{i}" for i in range(len(rows))]
    h = hashlib.sha256()
    for r in rows:
        h.update(orjson.dumps(r, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str))
    return Data(ids, rows, field, fields, h.hexdigest())


# ---------------------------------------------------------------------------
# pure pieces
# ---------------------------------------------------------------------------


def farthest_point_keep(emb, k: int, seed: int) -> list[int]:
    """Indices of ``k`` rows chosen greedily so each is the farthest (cosine) from those kept
    so far, starting from a seeded random row. Keeps the most mutually distant rows."""
    import numpy as np

    n = emb.shape[0]
    if k >= n:
        return list(range(n))
    if k <= 0:
        return []
    rng = random.Random(seed)
    first = rng.randrange(n)
    kept = [first]
    best = 1.0 - emb @ emb[first]  # distance to the nearest kept row
    best[first] = -1.0
    for _ in range(k - 1):
        i = int(np.argmax(best))
        kept.append(i)
        best = np.minimum(best, 1.0 - emb @ emb[i])
        best[kept] = -1.0
    return sorted(kept)


def leaf_targets(leaves: list[Node], target_per_leaf: int | None, size: int | None) -> dict[str, int]:
    """Desired rows per leaf: ``target_per_leaf`` each, or ``size`` split evenly
    (open-ended leaves weighted by their value count)."""
    if target_per_leaf is not None:
        return {n.id: target_per_leaf * (len(n.values) if n.values else 1) for n in leaves}
    assert size is not None
    weights = [float(len(n.values)) if n.values else 1.0 for n in leaves]
    return dict(zip((n.id for n in leaves), allocate(size, weights)))


def validate_route(obj: Any, n_rows: int, n_values: int) -> list[int]:
    """A routing answer: {"labels": [value number per row, in order]} -> 0-based value indices."""
    from .partition import PartitionError

    if not isinstance(obj, dict) or not isinstance(obj.get("labels"), list):
        raise PartitionError("the answer must be an object with a 'labels' list")
    labels = obj["labels"]
    if len(labels) != n_rows:
        raise PartitionError(f"give exactly {n_rows} labels, one per row, in order (got {len(labels)})")
    out = []
    for i, x in enumerate(labels):
        if isinstance(x, str) and x.strip().isdigit():
            x = int(x.strip())
        if isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= n_values:
            raise PartitionError(f"label {i + 1} must be a value number from 1 to {n_values}")
        out.append(x - 1)
    return out


def route_schema(n_rows: int, n_values: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "labels": {"type": "array", "minItems": n_rows, "maxItems": n_rows, "items": {"type": "integer", "minimum": 1, "maximum": n_values}}
        },
        "required": ["labels"],
        "additionalProperties": False,
    }


# ---------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------


def load_embedder(name: str | None = None):
    """The sentence embedder (core/embeddings.py: all-MiniLM-L6-v2 from its PyPI package by default).
    Returns a callable: list[str] -> L2-normalised float32 array."""
    from .embeddings import Embedder  # numpy and torch: loaded when rows are first embedded

    embedder = Embedder(name)

    def embed(texts: list[str]):
        # the whole data set goes through the per-dataset cache; small batches (labels, new rows) do not
        return embedder.embed(list(texts)) if len(texts) > 256 else embedder.encode(list(texts))

    return embed


class LazyEmbedder:
    """``load_embedder`` on first use (run mode needs it only for a data-driven split)."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._embed: Callable[[list[str]], Any] | None = None
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]):
        with self._lock:
            if self._embed is None:
                self._embed = load_embedder(self.name)
        return self._embed(texts)


# ---------------------------------------------------------------------------
# the balance run
# ---------------------------------------------------------------------------


class Balancer:
    """Binds a Data set to an Engine in data mode (hooks) and writes the balanced outputs."""

    def __init__(self, run, data: Data, spec: dict[str, Any], embed: Callable[[list[str]], Any]) -> None:
        self.run = run
        self.data = data
        self.spec = spec
        self.embed = embed
        self.store = run.store
        self.cfg = run.cfg
        self.rows_at: dict[str, list[int]] = {"0": list(range(len(data)))}
        self.pivot_rows: dict[str, list[int]] = {}
        self._emb = None
        self._emb_lock = threading.Lock()
        self._centroids: dict[str, Any] = {}  # fallback splits: node id -> unit centroids, one per child
        self.route_calls = 0
        self._routes = None
        self._load_routes()

    # ---- embeddings of the data (computed once, on demand) ---------------
    @property
    def emb(self):
        with self._emb_lock:  # the fallback split may ask from a thread while routing asks from another
            return self._load_emb()

    def _load_emb(self):
        if self._emb is None:
            import numpy as np

            cache = self.store.p("embeddings.npy")
            if cache.exists():
                try:
                    arr = np.load(cache)
                    if arr.shape[0] == len(self.data):
                        self._emb = arr
                except (OSError, ValueError):
                    pass
            if self._emb is None:
                self._emb = self.embed([self.data.text(i) for i in range(len(self.data))])
                tmp = cache.with_name(".embeddings.tmp.npy")
                np.save(tmp, self._emb)
                tmp.replace(cache)
        return self._emb

    # ---- routing checkpoint ---------------------------------------------
    def _load_routes(self) -> None:
        p = self.store.p("routes.jsonl")
        if not p.exists():
            return
        good = 0
        with open(p, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    break
                good += len(line)
                for cid, idx in rec.get("children", {}).items():
                    self.rows_at[cid] = idx
                if "pivots" in rec:
                    self.pivot_rows[rec["node"]] = rec["pivots"]
        if p.stat().st_size > good:
            with open(p, "r+b") as f:
                f.truncate(good)

    def _save_route(self, node_id: str, children: dict[str, list[int]]) -> None:
        if self._routes is None:
            self._routes = open(self.store.p("routes.jsonl"), "ab", buffering=0)
        self._routes.write(orjson.dumps({"node": node_id, "pivots": self.pivot_rows.get(node_id, []), "children": children}) + b"\n")

    def close(self) -> None:
        if self._routes is not None:
            self._routes.close()
            self._routes = None

    # ---- engine hooks ----------------------------------------------------
    def attach(self, engine) -> None:
        self.engine = engine
        engine.pivot_source = self.pivot_source
        engine.router = self.route
        engine.examples_for = self.examples_for
        engine.accept_filter = self.accept_filter
        engine.after_growth = self.plan
        engine.split_fallback = self.split_fallback
        engine.outputs = self
        engine.synthesise_leaves = self.store.p("plan.json").exists()
        # progress: rows of the balanced output out of its size (known from --size, else once planned)
        if engine.synthesise_leaves:
            engine.samples_offset, engine.samples_target = self._plan_totals(self.load_plan())
        else:
            engine.samples_offset, engine.samples_target = 0, int(self.spec.get("size") or 0)
        # originals count as seen: a synthesised row may not repeat one
        for i in range(len(self.data)):
            engine.keys.add(sample_key(self.data.sample(i), self.data.fields))

    def pivot_source(self, node: Node) -> list[dict[str, str]]:
        from .engine import derive_seed

        rows = self.rows_at.get(node.id, [])
        rng = random.Random(derive_seed(self.cfg.seed, node.id, "pivots", node.revision))
        pick = sorted(rng.sample(rows, min(self.cfg.pivots, len(rows))))
        self.pivot_rows[node.id] = pick
        return [self.data.sample(i) for i in pick]

    def split_fallback(self, node: Node):
        """A split of the node's rows into embedding clusters, for when the model gives no valid split
        (the embedded model cannot classify): k-means on the rows' embeddings, each cluster named by
        its most distinctive words, the node's pivots placed by nearest centroid. Deterministic (the
        run's seed and the node), so a resumed run rebuilds the same split. None if too few rows."""
        from .partition import Split, Value

        rows = self.rows_at.get(node.id, [])
        k = fallback_k(len(rows), self.cfg.max_values)
        if k < 2:
            return None
        centroids, labels = self._fallback_clusters(node, k)
        if centroids is None:
            return None
        words = distinctive_words([self.data.text(r) for r in rows], labels, len(centroids))
        names = unique_names([f"about: {', '.join(w) if w else f'cluster {j + 1}'}" for j, w in enumerate(words)])
        piv = self.pivot_rows.get(node.id, [])
        where = {r: int(j) for r, j in zip(rows, labels)}
        by_cluster: list[list[int]] = [[] for _ in names]
        for pos, r in enumerate(piv):
            if r in where:
                by_cluster[where[r]].append(pos)
        return Split(dimension=f"{FALLBACK_DIMENSION} (level {node.depth + 1})",
                     values=tuple(Value(value=n, pivots=tuple(p), source="data") for n, p in zip(names, by_cluster)))

    def _fallback_clusters(self, node: Node, k: int):
        import numpy as np

        from .engine import derive_seed

        rows = self.rows_at.get(node.id, [])
        X = self.emb[rows].astype(np.float32)
        centroids, labels = kmeans(X, k, derive_seed(self.cfg.seed, node.id, "clusters", node.revision))
        keep = [j for j in range(len(centroids)) if (labels == j).any()]
        if len(keep) < 2:
            return None, None
        remap = {j: i for i, j in enumerate(keep)}
        centroids = centroids[keep]
        self._centroids[node.id] = centroids
        return centroids, np.array([remap[int(j)] for j in labels])

    def _fallback_centroids(self, node: Node):
        if node.id not in self._centroids:  # a resumed run: the same seed rebuilds the same clusters
            self._fallback_clusters(node, fallback_k(len(self.rows_at.get(node.id, [])), self.cfg.max_values))
        return self._centroids[node.id]

    def _prototypes(self, split, children: list[Node]):
        """One unit vector per child: its value label and the pivots classified into it."""
        import numpy as np

        labels = self.embed([f"{split.dimension}: {c.value}" for c in children])
        piv = self.pivot_rows.get(children[0].parent or "", [])
        protos = []
        for j, c in enumerate(children):
            vecs = [labels[j]]
            for v in split.values:
                if v.value == c.value:
                    vecs += [self.emb[piv[i]] for i in v.pivots if i < len(piv)]
            m = np.mean(vecs, axis=0)
            protos.append(m / (np.linalg.norm(m) or 1.0))
        return np.stack(protos)

    async def route(self, node: Node, split, children: list[Node]) -> None:
        import numpy as np

        import asyncio

        await asyncio.to_thread(lambda: self.emb)  # embed the data once, off the event loop
        rows = self.rows_at.get(node.id, [])
        assign: dict[int, int] = {}
        piv = self.pivot_rows.get(node.id, [])
        child_of_value = {c.value: j for j, c in enumerate(children)}
        for v in split.values:  # pivots go where the classification put them
            for i in v.pivots:
                if i < len(piv) and v.value in child_of_value:
                    assign[piv[i]] = child_of_value[v.value]
        rest = [r for r in rows if r not in assign]
        if children[0].values:  # one open-ended child: everything goes there
            assign.update({r: 0 for r in rest})
            rest = []
        if rest and is_fallback_dimension(split.dimension):  # the split came from clusters: nearest centroid
            sims = self.emb[rest] @ self._fallback_centroids(node).T
            assign.update({r: int(j) for r, j in zip(rest, np.argmax(sims, axis=1))})
            rest = []
        if rest and self.spec["route"] == "llm":
            assign.update(await self._route_llm(node, split, children, rest))
            rest = [r for r in rest if r not in assign]
        if rest:
            protos = self._prototypes(split, children)
            sims = self.emb[rest] @ protos.T
            for r, j in zip(rest, np.argmax(sims, axis=1)):
                assign[r] = int(j)
        groups: dict[str, list[int]] = {c.id: [] for c in children}
        for r in rows:
            groups[children[assign[r]].id].append(r)
        for c in children:
            c.target = len(groups[c.id])
            self.rows_at[c.id] = groups[c.id]
        self._save_route(node.id, groups)

    async def _route_llm(self, node: Node, split, children: list[Node], rest: list[int]) -> dict[int, int]:
        import asyncio

        from .prompts import _sample_text

        batch = self.spec["route_batch"]
        values = [c.value or "" for c in children]
        out: dict[int, int] = {}

        async def one(b: int, chunk: list[int]) -> None:
            listing = "\n".join(f"[{k + 1}] {_sample_text(self.data.sample(r), 400)}" for k, r in enumerate(chunk))
            vals = "\n".join(f"{j + 1}. {v}" for j, v in enumerate(values))
            msgs = [
                {"role": "system", "content": self.run.prompts.system},
                {"role": "user", "content": self.run.prompts.render_route(path=self.engine.tree.path(node.id), dimension=split.dimension, values=vals, rows=listing, n=len(chunk))},
            ]
            labels, _err = await self.engine._ask(
                node, f"route{b}", msgs, route_schema(len(chunk), len(values)),
                lambda obj: validate_route(obj, len(chunk), len(values)), 0.0,
            )
            self.route_calls += 1
            if labels is not None:
                out.update(zip(chunk, labels))
            else:
                self.engine.warn(f"node {node.id}: {len(chunk)} rows could not be routed by the LLM; routed by embedding similarity", node.id)

        chunks = [rest[i : i + batch] for i in range(0, len(rest), batch)]
        await asyncio.gather(*(one(b, c) for b, c in enumerate(chunks)))
        return out

    # ---- balancing ---------------------------------------------------------
    def leaves(self) -> list[Node]:
        return [n for n in self.engine.tree.walk() if n.status == LEAF]

    def plan(self) -> None:
        """After growth: decide what each leaf keeps and how many rows it needs; start synthesis."""
        leaves = self.leaves()
        desired = leaf_targets(leaves, self.spec.get("target_per_leaf"), self.spec.get("size"))
        plan: dict[str, dict[str, int | list[int]]] = {}
        for n in leaves:
            rows = self.rows_at.get(n.id, [])
            want = desired[n.id]
            if len(rows) > want:
                keep_local = farthest_point_keep(self.emb[rows], want, self.cfg.seed)
                keep = [rows[i] for i in keep_local]
            else:
                keep = list(rows)
            synth = max(0, want - len(rows))
            plan[n.id] = {"before": len(rows), "keep": keep, "synth": synth}
            if n.target != synth:
                n.target = synth
                self.engine._journal(n)
        atomic_write(self.store.p("plan.json"), orjson.dumps(plan))
        self._plan = plan
        self.engine.set_samples_target(*self._plan_totals(plan))
        self.engine.synthesise_leaves = True
        for n in leaves:
            if n.target > self.engine.leaf_rows.get(n.id, 0):
                self.engine._spawn(self.engine._synth(n.id))

    @staticmethod
    def _plan_totals(plan: dict[str, Any]) -> tuple[int, int]:
        """(originals kept, rows after balancing) of a plan."""
        kept = sum(len(p["keep"]) for p in plan.values())
        return kept, kept + sum(int(p["synth"]) for p in plan.values())

    def load_plan(self) -> dict[str, Any]:
        if getattr(self, "_plan", None) is None:
            self._plan = orjson.loads(self.store.p("plan.json").read_bytes())
        return self._plan

    def examples_for(self, leaf_id: str) -> list[dict[str, str]]:
        rows = self.rows_at.get(leaf_id, [])
        if not rows:
            return []
        from .engine import derive_seed

        # str hash() is salted per process: a resumed run would pick other examples (and miss the cache)
        rng = random.Random(derive_seed(self.cfg.seed, leaf_id, "examples"))
        return [self.data.sample(i) for i in sorted(rng.sample(rows, min(3, len(rows))))]

    def accept_filter(self, leaf_id: str, samples: list[dict[str, str]]) -> list[dict[str, str]]:
        """Drop new rows nearly duplicating a real row of their leaf (cosine > 0.95)."""
        rows = self.rows_at.get(leaf_id, [])
        if not rows or not samples:
            return samples
        new = self.embed([s.get(self.data.field, next(iter(s.values()))) for s in samples])
        sims = (new @ self.emb[rows].T).max(axis=1)
        return [s for s, m in zip(samples, sims) if m <= NEAR_DUP_COSINE]

    # ---- outputs (DataOutputs) --------------------------------------------
    def complete(self) -> bool:
        if not self.store.p("plan.json").exists():
            return False
        return all(self.engine.leaf_rows.get(n.id, 0) >= n.target for n in self.leaves())

    def write(self) -> str:
        from .export import write_jsonl, write_parquet

        plan = self.load_plan()
        tree = self.engine.tree
        synth_by_leaf: dict[str, list[dict[str, Any]]] = {}
        for row in self.store.iter_samples():
            synth_by_leaf.setdefault(row["leaf_id"], []).append(row)
        kept: set[int] = set()
        table: list[dict[str, Any]] = []

        def rows():
            for n in self.leaves():
                path = tree.path(n.id)
                p = plan.get(n.id, {"before": 0, "keep": [], "synth": 0})
                for i in p["keep"]:
                    kept.add(i)
                    yield {**self.data.rows[i], "id": self.data.ids[i], "leaf_id": n.id, "path": path, "provenance": "original"}
                synth = synth_by_leaf.get(n.id, [])[: p["synth"]]
                for r in synth:
                    yield {"id": r["id"], "leaf_id": n.id, "path": r["path"], **{f: r[f] for f in self.data.fields}, "provenance": "synthesised"}
                table.append({
                    "leaf_id": n.id, "path": " / ".join(f"{x['dimension']}={x['value']}" for x in path),
                    "before": p["before"], "kept": len(p["keep"]), "synthesised": len(synth), "after": len(p["keep"]) + len(synth),
                })

        dest = self.store.p("balanced.jsonl")
        write_jsonl(rows(), dest)
        write_parquet(dest, self.store.p("balanced.parquet"))
        dropped = [self.data.ids[i] for i in range(len(self.data)) if i not in kept]
        atomic_write(self.store.p("dropped_ids.txt"), ("\n".join(dropped) + ("\n" if dropped else "")).encode())
        before_total = sum(t["before"] for t in table) or 1
        after_total = sum(t["after"] for t in table) or 1
        for t in table:
            t["share_before"] = round(t["before"] / before_total, 6)
            t["share_after"] = round(t["after"] / after_total, 6)
        tmp = self.store.p(".before_after.csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(table[0].keys()) if table else ["leaf_id"])
            w.writeheader()
            w.writerows(table)
        tmp.replace(self.store.p("before_after.csv"))
        atomic_write(self.store.p("balance_summary.json"), json.dumps(balance_summary(table, len(self.data), len(dropped), self.route_calls), indent=2).encode())
        return str(dest)


def balance_summary(table: list[dict[str, Any]], n_input: int, n_dropped: int, route_calls: int) -> dict[str, Any]:
    """Occupancy statistics before and after (entropy normalised by log #leaves, Gini)."""
    import math

    def stats(counts: list[int]) -> dict[str, float]:
        total = sum(counts)
        k = len(counts)
        if total == 0 or k < 2:
            return {"entropy": 0.0, "gini": 0.0, "empty": sum(1 for c in counts if c == 0)}
        ps = [c / total for c in counts if c]
        ent = -sum(p * math.log(p) for p in ps) / math.log(k)
        s = sorted(counts)
        gini = sum((2 * (i + 1) - k - 1) * c for i, c in enumerate(s)) / (k * total)
        return {"entropy": round(ent, 4), "gini": round(gini, 4), "empty": sum(1 for c in counts if c == 0)}

    return {
        "leaves": len(table),
        "input_rows": n_input,
        "dropped": n_dropped,
        "rows_after": sum(t["after"] for t in table),
        "synthesised": sum(t["synthesised"] for t in table),
        "before": stats([t["before"] for t in table]),
        "after": stats([t["after"] for t in table]),
        "llm_route_calls": route_calls,
    }




# ---------------------------------------------------------------------------
# orchestration
# ---------------------------------------------------------------------------

BALANCE_FILE = BALANCE


async def infer_task(data: Data, flags: dict[str, Any], transport=None, n: int = 8, seed: int = 0) -> str:
    """One LLM call: a one-sentence task description from a sample of the rows."""
    from .config import build_config
    from .llm import LLMClient, close_transport, make_local_transport

    cfg = build_config(flags={**flags, "task": "(inferring the task)", "fields": ",".join(data.fields)})
    own = transport is None
    client = LLMClient(transport or make_local_transport(cfg), concurrency=1, max_retries=cfg.max_retries)
    try:
        return await _infer_task(client, cfg, data, n, seed)
    finally:
        if own:
            await close_transport(client.transport)
            closer = getattr(client.transport, "close", None)
            if callable(closer):
                closer()


async def _infer_task(client, cfg, data: Data, n: int, seed: int) -> str:
    from .llm import LLMRequest
    from .parsing import ParseError, parse_json
    from .prompts import Prompts

    prompts = Prompts(cfg)
    rng = random.Random(seed)
    examples = [data.sample(i) for i in sorted(rng.sample(range(len(data)), min(n, len(data))))]
    schema = {"type": "object", "properties": {"task": {"type": "string", "minLength": 10, "maxLength": 300}}, "required": ["task"]}
    for attempt in range(3):
        c = await client.complete(LLMRequest(prompts.infer_task(examples), slot=f"task:infer:{attempt}", schema=schema, temperature=0.3, max_tokens=200, seed=seed + attempt))
        try:
            task = parse_json(c.text).get("task", "")
        except (ParseError, AttributeError):
            continue
        task = repair_task(" ".join(str(task).split()), data)
        if task is not None:
            return task
    return fallback_task(data)


# words that describe a file's format (and filler), not what its rows are about
_FORMAT_WORDS = frozenset("""json jsonl ndjson csv tsv parquet data dataset datasets file files format formatted
row rows record records entry entries object objects item items array arrays list lists table tables column columns
field fields key keys value values string strings structured sample samples example examples line lines document documents
contains containing holds holding consists consisting collection set and the for are was has not all per via like kind kinds
type types describe describes described describing given each""".split())
_FORMAT_PAREN = re.compile(r"\s*[(\[][^()\[\]]*\b(?:json|jsonl|csv|parquet|data|format)\b[^()\[\]]*[)\]]", re.I)


def repair_task(task: str, data: Data) -> str | None:
    """An inferred task, or None when it only describes the data's format (the embedded model answers
    'question (JSON data)'): a format note in brackets is dropped, and what is left must name at least two
    words that are neither format words nor the data's column names."""
    task = _FORMAT_PAREN.sub("", task).strip(" .,;:-")
    if not 10 <= len(task) <= 300:
        return None
    columns = {c.lower() for c in (*data.fields, data.field, *(data.rows[0].keys() if data.rows else ()))}
    words = [w for w in re.findall(r"[a-z][a-z'-]+", task.lower()) if len(w) > 2]
    content = [w for w in words if w not in _STOP and w not in _FORMAT_WORDS and w not in columns]
    return task if len(content) >= 2 else None


def fallback_task(data: Data) -> str:
    """The task used when none can be inferred (``treesynth balance`` says so and suggests --task)."""
    return f"Rows like those in the '{data.field}' column of this dataset"


class BalanceRun:
    """A balance run bound to its directory (same layout as a run, plus routes, plan and outputs)."""

    kind = "balance"

    def __init__(self, run, data: Data, spec: dict[str, Any], embed) -> None:
        self.run = run
        self.data = data
        self.spec = spec
        self.balancer = Balancer(run, data, spec, embed)
        self.store = run.store
        self.cfg = run.cfg

    @classmethod
    def create(cls, data: Data, spec: dict[str, Any], flags: dict[str, Any], out: Path, transport=None, embed=None, config_file=None) -> "BalanceRun":
        from .config import build_config
        from .engine import Run

        if spec.get("target_per_leaf") is not None and spec.get("size") is not None:
            raise ConfigError("give --target-per-leaf or --size, not both")
        if spec.get("target_per_leaf") is None and spec.get("size") is None:
            spec["size"] = len(data)
        for k in ("target_per_leaf", "size"):
            if spec.get(k) is not None and spec[k] < 1:
                raise ConfigError(f"--{k.replace('_', '-')} must be at least 1")
        if spec.get("route") not in ("llm", "embed"):
            raise ConfigError("--route must be llm or embed")
        cfg = build_config(flags={**flags, "fields": ",".join(data.fields), "size": len(data)}, config_file=config_file)
        run = Run.create(cfg, out, transport=transport)
        try:
            atomic_write(run.store.p(BALANCE_FILE), json.dumps({**spec, "digest": data.digest}, indent=2).encode())
            return cls(run, data, spec, embed or load_embedder(spec.get("embedder")))
        except BaseException:
            run.close()
            raise

    @classmethod
    def resume(cls, run_dir: Path, overrides: dict[str, Any] | None = None, transport=None, embed=None) -> "BalanceRun":
        from .engine import Run
        from .errors import RunDirError
        from .store import check_run_dir

        check_run_dir(Path(run_dir))  # a missing directory is missing, not "not a balance run"
        p = Path(run_dir) / BALANCE_FILE
        if not p.is_file():
            raise RunDirError(f"{str(run_dir)!r} is not a balance run (no {BALANCE_FILE}); use treesynth run --resume")
        try:
            spec = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise RunDirError(f"{str(run_dir)!r} is corrupt: {BALANCE_FILE} is unreadable ({e})") from None
        run = Run.resume(Path(run_dir), overrides=overrides, transport=transport)
        try:
            data = load_data(spec["data"], spec["field"], tuple(spec["fields"]))
            if data.digest != spec.get("digest"):
                raise RunDirError(f"{spec['data']!r} changed since this balance run began; start a new run")
            return cls(run, data, spec, embed or load_embedder(spec.get("embedder")))
        except BaseException:
            run.close()
            raise

    @property
    def engine(self):
        return self.run.engine

    # the rest of the Run interface a front end uses (the TUI opens balance runs like runs)
    @property
    def client(self):
        return self.run.client

    @property
    def recovered(self):
        return self.run.recovered

    def close(self) -> None:
        self.run.close()

    def request_stop(self) -> None:
        self.run.request_stop()

    async def execute(self, on_event=None):
        try:
            return await self.run.execute(on_event, configure=self.balancer.attach)
        finally:
            self.balancer.close()

    def summary(self) -> dict[str, Any] | None:
        p = self.store.p("balance_summary.json")
        return json.loads(p.read_text()) if p.exists() else None
