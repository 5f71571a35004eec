"""A ``treesynth balance`` run as a report input: two datasets on the same tree, *before* (the input
rows, each in the leaf it was routed to, from ``routes.jsonl``) and *after* (``balanced.jsonl``: kept
and synthesised rows with their leaves). Compared side by side, the leaf coverage rows show what
balancing changed (occupancy entropy, Gini, empty leaves) and the maps where rows were added."""

from __future__ import annotations

from pathlib import Path

from treesynth.core.balance import load_data
from treesynth.core.errors import RunDirError, TreesynthError
from treesynth.core.jsonl import read_records
from treesynth.core.reader import RunReader
from treesynth.core.rundir import BALANCE, BALANCED, ROUTES

from .dataset import Dataset, tree_info
from .errors import InputError
from .file_data import load_file


def load_balance(root: Path, field: str | None = None) -> tuple[Dataset, Dataset]:
    """(before, after) of the balance run at ``root``; the input file must be unchanged since the run."""
    reader = RunReader(root)
    spec = reader.balance_spec()
    try:
        data_path, data_field, data_fields = spec["data"], spec["field"], tuple(spec["fields"])
    except (KeyError, TypeError) as e:
        raise InputError(f"{str(root)!r}: {BALANCE} is unreadable ({type(e).__name__})") from None
    after_path = reader.p(BALANCED)
    if not after_path.is_file():
        raise InputError(f"{str(root)!r} is an unfinished balance run (no {BALANCED} yet): resume it first")
    fld = field or data_field
    try:
        data = load_data(data_path, fld, data_fields)
    except TreesynthError as e:
        raise InputError(f"the balance run's input: {e}") from None
    if data.digest != spec.get("digest"):
        raise InputError(f"{data_path!r} changed since this balance run: the 'before' side cannot be rebuilt")
    try:
        tree = reader.tree()
    except RunDirError as e:
        raise InputError(str(e)) from None
    info = tree_info(tree)
    leaves = set(info.leaves)
    leaf_of: dict[int, str] = {}
    try:
        for rec in read_records(reader.p(ROUTES), strict=True):
            for cid, idx in (rec.get("children") or {}).items():
                if cid in leaves:
                    for i in idx:
                        leaf_of[int(i)] = cid
    except (OSError, RunDirError, TypeError, ValueError) as e:
        raise InputError(f"{str(root)!r}: {ROUTES} is unreadable ({type(e).__name__})") from None
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
