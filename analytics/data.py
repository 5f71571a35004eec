"""Inputs of a report: a treesynth run directory, or a JSONL / JSON / Parquet / CSV dataset.

A run is read without locking it (a report may be made while the run goes on): ``config.json``
for the fields, ``tree.json`` + ``nodes.jsonl`` for the tree, and the rows from
``dataset.jsonl`` when the run is complete, else the ``samples.jsonl`` written so far. A file
with ``leaf_id`` and ``path`` columns (a treesynth export) keeps its paths and branches, without
the tree (so no empty leaves). Every text is data, never markup: escaping is the renderer's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError

TEXT_FORMATS = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".tsv")
META_COLUMNS = {"id", "leaf_id", "path", "slot", "_k"}


@dataclass
class TreeInfo:
    """The parts of a run's tree the report needs: leaves, top-level branches, labels, quotas."""

    node_ids: list[str]  # walk order (pruned subtrees left out)
    parent: dict[str, str | None]
    label: dict[str, str]  # "dimension = value" (raw text; escaped when rendered)
    status: dict[str, str]
    target: dict[str, int]
    leaves: list[str]
    branches: list[str]  # children of the root, in order (the root itself when it is a leaf)
    depth: int

    def branch_of(self, node_id: str) -> str | None:
        if node_id not in self.parent:
            return None
        if node_id == "0":
            return "0"
        parts = node_id.split(".")
        return ".".join(parts[:2])


@dataclass
class Dataset:
    name: str
    source: str
    kind: str  # "run" | "file"
    field: str
    texts: list[str]
    n_rows: int  # rows read
    n_empty: int  # rows without text in the field (dropped)
    n_before_sample: int  # rows with text, before --sample
    leaf_ids: list[str] | None = None
    paths: list[list[tuple[str, str]]] | None = None
    tree: TreeInfo | None = None
    status: str | None = None
    task: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.texts)

    @property
    def sampled(self) -> bool:
        return self.n < self.n_before_sample

    def branch_labels(self) -> tuple[list[str], np.ndarray] | None:
        """(branch labels, branch index per row; −1 for rows outside every branch), or None."""
        if self.tree is not None and self.leaf_ids is not None:
            names = list(self.tree.branches)
            pos = {b: i for i, b in enumerate(names)}
            idx = np.array([pos.get(self.tree.branch_of(l) or "", -1) for l in self.leaf_ids], dtype=np.int64)
            return [self.tree.label[b] for b in names], idx
        if self.paths is not None:
            labels: dict[str, int] = {}
            idx = np.array(
                [labels.setdefault(f"{p[0][0]} = {p[0][1]}", len(labels)) if p else -1 for p in self.paths], dtype=np.int64
            )
            return list(labels), idx
        return None


# ---------------------------------------------------------------------------


def load_dataset(source: str | Path, field: str | None = None, sample: int | None = None, seed: int = 0) -> Dataset:
    p = Path(source).expanduser()
    if not p.exists():
        raise InputError(f"{str(source)!r} does not exist")
    if p.is_dir():
        if (p / "config.json").is_file():
            ds = load_run(p, field)
        else:
            raise InputError(f"{str(source)!r} is a directory but not a treesynth run (no config.json)")
    else:
        ds = load_file(p, field)
    if ds.n == 0:
        what = f"no rows with text in field {ds.field!r}" if ds.n_rows else "no rows"
        raise InputError(f"{str(source)!r} has {what}: nothing to report")
    _sample(ds, sample, seed)
    return ds


def _sample(ds: Dataset, sample: int | None, seed: int) -> None:
    """``--sample N``: keep a seeded uniform sample of N rows (all of them when there are fewer)."""
    if sample is None:
        return
    if sample < 1:
        raise InputError("--sample must be at least 1")
    if sample < ds.n:
        keep = np.sort(np.random.default_rng(seed).choice(ds.n, size=sample, replace=False))
        _subset(ds, keep)
        if ds.leaf_ids is not None:
            ds.notes.append(f"leaf coverage is measured on the sample of {sample:,} rows: small leaves may look thin or empty")


def _subset(ds: Dataset, keep: np.ndarray) -> None:
    ds.texts = [ds.texts[i] for i in keep]
    if ds.leaf_ids is not None:
        ds.leaf_ids = [ds.leaf_ids[i] for i in keep]
    if ds.paths is not None:
        ds.paths = [ds.paths[i] for i in keep]


def _clean_path(p: Any) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(p, list):
        for step in p:
            if isinstance(step, dict):
                out.append((str(step.get("dimension") or ""), str(step.get("value") or "")))
    return out


# ---- runs --------------------------------------------------------------


def is_balance_run(p: Path) -> bool:
    """A balance run directory: reported as its input (before) against its output (after)."""
    from treesynth.core.balance import is_balance_run as has_balance_spec

    return (p / "config.json").is_file() and has_balance_spec(p)


def load_balance(root: Path, field: str | None = None) -> tuple[Dataset, Dataset]:
    """A ``treesynth balance`` run as two datasets on the same tree: *before* (the input rows, each in
    the leaf it was routed to, from ``routes.jsonl``) and *after* (``balanced.jsonl``: kept and
    synthesised rows with their leaves). Compared side by side, the leaf coverage rows show what
    balancing changed (occupancy entropy, Gini, empty leaves) and the maps where rows were added."""
    import orjson

    from treesynth.core.balance import BALANCE_FILE, load_data
    from treesynth.core.errors import RunDirError, TreesynthError
    from treesynth.core.store import load_tree_readonly

    try:
        spec = orjson.loads((root / BALANCE_FILE).read_bytes())
        data_path, data_field, data_fields = spec["data"], spec["field"], tuple(spec["fields"])
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{str(root)!r}: {BALANCE_FILE} is unreadable ({type(e).__name__})") from None
    after_path = root / "balanced.jsonl"
    if not after_path.is_file():
        raise InputError(f"{str(root)!r} is an unfinished balance run (no balanced.jsonl yet): resume it first")
    fld = field or data_field
    try:
        data = load_data(data_path, fld, data_fields)
    except TreesynthError as e:
        raise InputError(f"the balance run's input: {e}") from None
    if data.digest != spec.get("digest"):
        raise InputError(f"{data_path!r} changed since this balance run: the 'before' side cannot be rebuilt")
    try:
        tree = load_tree_readonly(root)
    except RunDirError as e:
        raise InputError(str(e)) from None
    info = tree_info(tree)
    leaves = set(info.leaves)
    leaf_of: dict[int, str] = {}
    try:
        with open(root / "routes.jsonl", "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                rec = orjson.loads(line)
                for cid, idx in (rec.get("children") or {}).items():
                    if cid in leaves:
                        for i in idx:
                            leaf_of[int(i)] = cid
    except (OSError, orjson.JSONDecodeError, TypeError, ValueError) as e:
        raise InputError(f"{str(root)!r}: routes.jsonl is unreadable ({type(e).__name__})") from None
    if len(leaves) == 1 and not leaf_of:  # the root stayed a leaf: every row is in it
        leaf_of = {i: info.leaves[0] for i in range(len(data))}
    paths = {lid: [(p["dimension"], p["value"]) for p in tree.path(lid)] for lid in leaves}
    texts, leaf_ids, bpaths, empty, unrouted = [], [], [], 0, 0
    for i in range(len(data)):
        t = data.text(i)
        if not t.strip():
            empty += 1
            continue
        lid = leaf_of.get(i)
        if lid is None:
            unrouted += 1
            continue
        texts.append(t)
        leaf_ids.append(lid)
        bpaths.append(paths[lid])
    notes = [f"{empty:,} input row(s) without text in {fld!r} left out"] if empty else []
    if unrouted:
        notes.append(f"{unrouted:,} input row(s) were not routed to a leaf")
    name = root.resolve().name
    before = Dataset(
        name=f"before: {Path(data_path).name}", source=str(data_path), kind="run", field=fld, texts=texts,
        n_rows=len(data), n_empty=empty, n_before_sample=len(texts), leaf_ids=leaf_ids, paths=bpaths, tree=info,
        status="input", task=None, notes=notes,
    )
    after = load_file(after_path, fld)
    after.name, after.kind, after.tree, after.status = f"after: {name}", "run", info, "balanced"
    after.notes = [n for n in after.notes if not n.startswith("a treesynth export without its tree")]
    return before, after


def load_balance_datasets(source: str | Path, field: str | None = None, sample: int | None = None, seed: int = 0) -> list[Dataset]:
    """Both sides of a balance run, each sampled like ``load_dataset`` does."""
    out = []
    for ds in load_balance(Path(source).expanduser(), field):
        if ds.n == 0:
            raise InputError(f"{ds.name}: no rows with text in field {ds.field!r}: nothing to report")
        _sample(ds, sample, seed)
        out.append(ds)
    return out


def load_run(root: Path, field: str | None) -> Dataset:
    import orjson

    from treesynth.core.errors import RunDirError
    from treesynth.core.store import load_tree_readonly

    try:
        cfg_doc = orjson.loads((root / "config.json").read_bytes())
        cfg = cfg_doc["config"] if isinstance(cfg_doc, dict) and isinstance(cfg_doc.get("config"), dict) else None
    except (OSError, orjson.JSONDecodeError):
        cfg = None
    if cfg is None:
        raise InputError(f"{str(root)!r} is not a readable treesynth run (config.json is damaged)")
    try:
        state = orjson.loads((root / "state.json").read_bytes())
        status = state.get("status") if isinstance(state, dict) else None
    except (OSError, orjson.JSONDecodeError):
        status = None
    notes: list[str] = []
    src = root / "dataset.jsonl"
    if not src.is_file():
        src = root / "samples.jsonl"
        if not src.is_file():
            raise InputError(f"{str(root)!r} has no samples yet (no dataset.jsonl or samples.jsonl)")
        notes.append(f"the run is {status or 'unfinished'}: this report uses the samples written so far (samples.jsonl)")
    rows: list[dict[str, Any]] = []
    seen: set[Any] = set()
    bad = 0
    with open(src, "rb") as f:
        for line in f:
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(r, dict):
                continue
            rid = r.get("id")
            if rid is not None:
                if rid in seen:
                    continue
                seen.add(rid)
            rows.append(r)
    if bad:
        notes.append(f"{bad} unreadable line(s) in {src.name} skipped")
    size = cfg.get("size")
    if src.name == "samples.jsonl" and isinstance(size, int) and len(rows) > size:
        rows = rows[:size]
    fields = [f for f in (cfg.get("fields") or []) if isinstance(f, str)]
    fld = _choose_field(field, fields + [k for k in (rows[0] if rows else {}) if k not in fields], rows, str(root))
    try:
        tree = tree_info(load_tree_readonly(root))
    except RunDirError as e:
        tree = None
        notes.append(f"the tree could not be read ({e}); leaf coverage is left out")
    texts, leaf_ids, paths, empty = [], [], [], 0
    for r in rows:
        t = r.get(fld)
        if not isinstance(t, str) or not t.strip():
            empty += 1
            continue
        texts.append(t)
        leaf_ids.append(str(r.get("leaf_id", "")))
        paths.append(_clean_path(r.get("path")))
    if empty:
        notes.append(f"{empty:,} row(s) without text in {fld!r} left out")
    return Dataset(
        name=root.resolve().name, source=str(root), kind="run", field=fld, texts=texts, n_rows=len(rows),
        n_empty=empty, n_before_sample=len(texts), leaf_ids=leaf_ids, paths=paths, tree=tree, status=status,
        task=cfg.get("task") if isinstance(cfg.get("task"), str) else None, notes=notes,
    )


def _choose_field(field: str | None, candidates: Sequence[str], rows: list[dict[str, Any]], where: str) -> str:
    if field:
        if rows and not any(field in r for r in rows[:1000]):
            have = sorted({k for r in rows[:100] for k in r if k not in META_COLUMNS})
            raise InputError(f"{where!r} has no field {field!r} (fields: {', '.join(have) or 'none'})")
        return field
    for c in candidates:
        if c in META_COLUMNS:
            continue
        vals = [r.get(c) for r in rows[:200] if c in r]
        if vals and all(isinstance(v, str) or v is None for v in vals) and any(isinstance(v, str) for v in vals):
            return c
    raise InputError(f"{where!r} has no text field; pass --field NAME")


def tree_info(tree: Any) -> TreeInfo:
    from treesynth.core.tree import EXPANDED, LEAF, PRUNED

    ids: list[str] = []
    parent: dict[str, str | None] = {}
    label: dict[str, str] = {}
    status: dict[str, str] = {}
    target: dict[str, int] = {}
    depth = 0
    for n in tree.walk():
        if n.status == PRUNED:
            continue
        if n.parent is not None and n.parent not in parent:
            continue  # under a pruned node
        ids.append(n.id)
        parent[n.id] = n.parent
        if n.parent is None:
            label[n.id] = "(root)"
        elif n.values:
            label[n.id] = f"{n.dimension} = one of {len(n.values)} values"
        else:
            label[n.id] = f"{n.dimension} = {n.value}"
        status[n.id] = n.status
        target[n.id] = int(n.target)
        depth = max(depth, n.depth)
    leaves = [i for i in ids if status[i] == LEAF]
    root = tree.root
    if root.status == EXPANDED:
        branches = [c for c in root.children if c in parent]
    else:
        branches = ["0"]
    return TreeInfo(ids, parent, label, status, target, leaves, branches, depth)


# ---- files -------------------------------------------------------------


def load_file(p: Path, field: str | None) -> Dataset:
    import polars as pl

    suffix = p.suffix.lower()
    if suffix not in TEXT_FORMATS:
        raise InputError(f"{str(p)!r}: unsupported format {suffix or '(no suffix)'!r}; use JSONL, JSON, Parquet or CSV")
    try:
        if suffix in (".jsonl", ".ndjson"):
            df = pl.read_ndjson(p, infer_schema_length=None) if p.stat().st_size else pl.DataFrame()
        elif suffix == ".json":
            head = p.read_bytes()[:4096].lstrip()
            if head.startswith(b"["):
                df = pl.read_json(p, infer_schema_length=None)
            else:
                df = pl.read_ndjson(p, infer_schema_length=None) if head else pl.DataFrame()
        elif suffix in (".parquet", ".pq"):
            df = pl.read_parquet(p)
        else:
            df = pl.read_csv(p, separator="\t" if suffix == ".tsv" else ",", infer_schema_length=10000) if p.stat().st_size else pl.DataFrame()
    except Exception as e:  # noqa: BLE001 - polars raises many kinds; the user needs one line
        raise InputError(f"cannot read {str(p)!r}: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    strings = [c for c, t in df.schema.items() if t == pl.String and c not in META_COLUMNS]
    if field:
        if field not in df.columns:
            raise InputError(f"{str(p)!r} has no field {field!r} (columns: {', '.join(df.columns) or 'none'})")
        if df.schema[field] != pl.String:
            raise InputError(f"field {field!r} of {str(p)!r} is not text ({df.schema[field]})")
        fld = field
    elif "question" in strings:
        fld = "question"
    elif strings:
        fld = strings[0]
    else:
        if df.height == 0:
            raise InputError(f"{str(p)!r} has no rows: nothing to report")
        raise InputError(f"{str(p)!r} has no text field (columns: {', '.join(df.columns) or 'none'}); pass --field NAME")
    col = df.get_column(fld)
    keep = (col.is_not_null() & (col.str.strip_chars().str.len_chars() > 0)).to_numpy()
    texts = col.filter(pl.Series(keep)).to_list()
    empty = int(df.height - len(texts))
    notes = [f"{empty:,} row(s) without text in {fld!r} left out"] if empty else []
    leaf_ids = paths = None
    if "leaf_id" in df.columns and "path" in df.columns:
        leaf_ids = [str(x) for x in df.get_column("leaf_id").filter(pl.Series(keep)).to_list()]
        paths = [_clean_path(x) for x in df.get_column("path").filter(pl.Series(keep)).to_list()]
        notes.append("a treesynth export without its tree: branches and leaves come from the rows (empty leaves unknown)")
    return Dataset(
        name=p.name, source=str(p), kind="file", field=fld, texts=texts, n_rows=df.height, n_empty=empty,
        n_before_sample=len(texts), leaf_ids=leaf_ids, paths=paths, notes=notes,
    )
