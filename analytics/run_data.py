"""A treesynth run directory as a report input, read through core's ``RunReader`` without locking it
(a report may be made while the run goes on): the config for the fields and the task, the state for
the status, the tree for the leaves, and the rows from ``dataset.jsonl`` when the run is complete,
else the ``samples.jsonl`` written so far (``core.jsonl`` skips a torn last line); its quality gates'
verdicts and rejected rows, when it has any, through ``quality`` (rows the judge failed are left out,
as the run's own dataset leaves them out: samples.jsonl holds rows before their verdict)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

from treesynth.core.errors import RunDirError
from treesynth.core.jsonl import read_records
from treesynth.core.reader import RunReader
from treesynth.core.rundir import CONFIG, DATASET, SAMPLES

from .dataset import META_COLUMNS, Dataset, shared_path, tree_info
from .errors import InputError
from .quality import quality_of_run

HEAD_ROWS = 1000  # the first rows (after de-duplication), from which the text field is chosen
PROGRESS_ROWS = 10_000  # rows between progress calls while reading


@dataclass
class RunRows:
    """What the report keeps of a run's rows, one list per column instead of one dict per row (a million
    rows as dicts take gigabytes): the id, the text (None when the row has none), the leaf id (one
    string object per leaf) and the path (one list per distinct path, shared by the rows that have it)."""

    ids: list[Any] = dc_field(default_factory=list)
    texts: list[str | None] = dc_field(default_factory=list)
    leaf_ids: list[str] = dc_field(default_factory=list)
    paths: list[list[tuple[str, str]]] = dc_field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: Sequence[int]) -> RunRows:
        return RunRows([self.ids[i] for i in keep], [self.texts[i] for i in keep], [self.leaf_ids[i] for i in keep],
                       [self.paths[i] for i in keep])

    def head(self, n: int) -> RunRows:
        return RunRows(self.ids[:n], self.texts[:n], self.leaf_ids[:n], self.paths[:n])


def load_run(root: Path, field: str | None, progress: Callable[[int, int], None] | None = None) -> Dataset:
    """The rows of the run at ``root`` with text in ``field`` (default: the run's first text field).
    ``progress(rows read, lines in the file)`` is called while the rows are read (large files only)."""
    reader = RunReader(root)
    cfg = reader.config()
    if not cfg:
        raise InputError(f"{str(root)!r} is not a readable treesynth run ({CONFIG} is damaged)")
    status = reader.state().get("status")
    notes: list[str] = []
    src = reader.dataset_path()
    if src is None:
        src = reader.p(SAMPLES)
        if not src.is_file():
            raise InputError(f"{str(root)!r} has no samples yet (no {DATASET} or {SAMPLES})")
        notes.append(f"the run is {status or 'unfinished'}: this report uses the samples written so far ({SAMPLES})")
    fields = [f for f in (cfg.get("fields") or []) if isinstance(f, str)]

    def pick_field(head: list[dict[str, Any]]) -> str:
        return choose_field(field, fields + [k for k in (head[0] if head else {}) if k not in fields], head, str(root))

    rows, fld, bad = read_rows(src, pick_field, progress)
    if bad:
        notes.append(f"{bad} unreadable line(s) in {src.name} skipped")
    try:
        tree = tree_info(reader.tree())
    except RunDirError as e:
        tree = None
        notes.append(f"the tree could not be read ({e}); leaf coverage is left out")
    quality = quality_of_run(root, cfg, rows.ids, tree)  # every row the gates let through, before the size cut
    if quality is not None and quality.failed_ids:
        failed = quality.failed_ids
        keep = [i for i, rid in enumerate(rows.ids) if rid not in failed]
        if len(keep) < len(rows):  # rows stored before their verdict: the run's own dataset leaves them out too
            notes.append(f"{len(rows) - len(keep):,} row(s) in {src.name} that the judge failed are left out")
            rows = rows.subset(keep)
    size = cfg.get("size")
    if src.name == SAMPLES and isinstance(size, int) and len(rows) > size:
        rows = rows.head(size)
    n_rows = len(rows)
    texts: list[str] = []
    leaf_ids: list[str] = []
    paths: list[list[tuple[str, str]]] = []
    for t, lid, path in zip(rows.texts, rows.leaf_ids, rows.paths, strict=True):
        if t is not None:
            texts.append(t)
            leaf_ids.append(lid)
            paths.append(path)
    del rows
    empty = n_rows - len(texts)
    if empty:
        notes.append(f"{empty:,} row(s) without text in {fld!r} left out")
    return Dataset(
        name=root.resolve().name, source=str(root), kind="run", field=fld, texts=texts, n_rows=n_rows,
        n_empty=empty, n_before_sample=len(texts), leaf_ids=leaf_ids, paths=paths, tree=tree, status=status,
        task=cfg.get("task") if isinstance(cfg.get("task"), str) else None, notes=notes, quality=quality,
    )


def read_rows(
    path: Path, pick_field: Callable[[list[dict[str, Any]]], str], progress: Callable[[int, int], None] | None = None,
) -> tuple[RunRows, str, int]:
    """The rows of a run's JSONL file (the first of each ``id``) as ``RunRows``, the text field
    (``pick_field`` of the first ``HEAD_ROWS`` rows) and how many lines gave no row (damaged, or a torn
    last line). Lines are counted first: rows the run appends meanwhile are read, never counted as
    unreadable. Rows are read one at a time and only their id, text, leaf and path kept."""
    lines = _count_lines(path)
    rows = RunRows()
    pool: dict[tuple[tuple[str, str], ...], list[tuple[str, str]]] = {}
    head: list[dict[str, Any]] = []
    fld: str | None = None
    seen: set[Any] = set()
    read = 0

    last: dict[str, tuple[Any, list[tuple[str, str]]]] = {}  # leaf id -> its latest raw path and that path, shared

    def keep(r: dict[str, Any], fld: str) -> None:
        rows.ids.append(r.get("id"))
        t = r.get(fld)
        rows.texts.append(t if isinstance(t, str) and t.strip() else None)
        lid = sys.intern(str(r.get("leaf_id", "")))
        rows.leaf_ids.append(lid)
        raw = r.get("path")
        seen_path = last.get(lid)
        if seen_path is not None and seen_path[0] == raw:  # as a rule the leaf's path again: no need to clean it
            rows.paths.append(seen_path[1])
        else:
            path = shared_path(raw, pool)
            last[lid] = (raw, path)
            rows.paths.append(path)

    for r in read_records(path):
        read += 1
        if progress is not None and read % PROGRESS_ROWS == 0:
            progress(read, max(lines, read + 1))
        rid = r.get("id")
        if rid is not None:
            if rid in seen:
                continue
            seen.add(rid)
        if fld is None:
            head.append(r)
            if len(head) < HEAD_ROWS:
                continue
            fld = pick_field(head)
            for h in head:
                keep(h, fld)
            head = []
            continue
        keep(r, fld)
    if fld is None:
        fld = pick_field(head)
        for h in head:
            keep(h, fld)
    if progress is not None and read >= PROGRESS_ROWS:
        progress(max(lines, read), max(lines, read))
    return rows, fld, max(0, lines - read)


def _count_lines(path: Path) -> int:
    """Lines in the file, an unterminated last one included."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def choose_field(field: str | None, candidates: Sequence[str], rows: Sequence[dict[str, Any]], where: str) -> str:
    """``field`` when the rows have it, else the first candidate whose values are text."""
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
