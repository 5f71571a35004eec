"""A treesynth run directory as a report input, read through core's ``RunReader`` without locking it
(a report may be made while the run goes on): the config for the fields and the task, the state for
the status, the tree for the leaves, and the rows from ``dataset.jsonl`` when the run is complete,
else the ``samples.jsonl`` written so far (``core.jsonl`` skips a torn last line); its quality gates'
verdicts and rejected rows, when it has any, through ``quality`` (rows the judge failed are left out,
as the run's own dataset leaves them out: samples.jsonl holds rows before their verdict)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from treesynth.core.errors import RunDirError
from treesynth.core.jsonl import read_records
from treesynth.core.reader import RunReader
from treesynth.core.rundir import CONFIG, DATASET, SAMPLES

from .dataset import META_COLUMNS, Dataset, clean_path, tree_info
from .errors import InputError
from .quality import quality_of_run


def load_run(root: Path, field: str | None) -> Dataset:
    """The rows of the run at ``root`` with text in ``field`` (default: the run's first text field)."""
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
    rows, bad = read_rows(src)
    if bad:
        notes.append(f"{bad} unreadable line(s) in {src.name} skipped")
    try:
        tree = tree_info(reader.tree())
    except RunDirError as e:
        tree = None
        notes.append(f"the tree could not be read ({e}); leaf coverage is left out")
    quality = quality_of_run(root, cfg, rows, tree)  # every row the gates let through, before the size cut
    if quality is not None and quality.failed_ids:
        kept = [r for r in rows if r.get("id") not in quality.failed_ids]
        if len(kept) < len(rows):  # rows stored before their verdict: the run's own dataset leaves them out too
            notes.append(f"{len(rows) - len(kept):,} row(s) in {src.name} that the judge failed are left out")
            rows = kept
    size = cfg.get("size")
    if src.name == SAMPLES and isinstance(size, int) and len(rows) > size:
        rows = rows[:size]
    fields = [f for f in (cfg.get("fields") or []) if isinstance(f, str)]
    fld = choose_field(field, fields + [k for k in (rows[0] if rows else {}) if k not in fields], rows, str(root))
    texts, leaf_ids, paths, empty = [], [], [], 0
    for r in rows:
        t = r.get(fld)
        if not isinstance(t, str) or not t.strip():
            empty += 1
            continue
        texts.append(t)
        leaf_ids.append(str(r.get("leaf_id", "")))
        paths.append(clean_path(r.get("path")))
    if empty:
        notes.append(f"{empty:,} row(s) without text in {fld!r} left out")
    return Dataset(
        name=root.resolve().name, source=str(root), kind="run", field=fld, texts=texts, n_rows=len(rows),
        n_empty=empty, n_before_sample=len(texts), leaf_ids=leaf_ids, paths=paths, tree=tree, status=status,
        task=cfg.get("task") if isinstance(cfg.get("task"), str) else None, notes=notes, quality=quality,
    )


def read_rows(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The rows of a run's JSONL file (the first of each ``id``), and how many lines gave no row
    (damaged, or a torn last line). Lines are counted first: rows the run appends meanwhile are
    read, never counted as unreadable."""
    lines = _count_lines(path)
    rows: list[dict[str, Any]] = []
    seen: set[Any] = set()
    read = 0
    for r in read_records(path):
        read += 1
        rid = r.get("id")
        if rid is not None:
            if rid in seen:
                continue
            seen.add(rid)
        rows.append(r)
    return rows, max(0, lines - read)


def _count_lines(path: Path) -> int:
    """Lines in the file, an unterminated last one included."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def choose_field(field: str | None, candidates: Sequence[str], rows: list[dict[str, Any]], where: str) -> str:
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
