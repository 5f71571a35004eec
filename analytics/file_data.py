"""A dataset file as a report input: JSONL, JSON (an array or lines), Parquet, CSV or TSV, read with
polars. A file with ``leaf_id`` and ``path`` columns (a treesynth export) keeps its paths and branches,
without the tree (so no empty leaves)."""

from __future__ import annotations

import sys
from pathlib import Path

from .dataset import META_COLUMNS, Dataset, shared_path
from .errors import InputError

TEXT_FORMATS = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".csv", ".tsv")


def load_file(p: Path, field: str | None) -> Dataset:
    """The rows of ``p`` with text in ``field`` (default: 'question', else the first text column)."""
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
        leaf_ids = [sys.intern(str(x)) for x in df.get_column("leaf_id").filter(pl.Series(keep)).to_list()]
        pool: dict[tuple[tuple[str, str], ...], list[tuple[str, str]]] = {}
        paths = [shared_path(x, pool) for x in df.get_column("path").filter(pl.Series(keep)).to_list()]
        notes.append("a treesynth export without its tree: branches and leaves come from the rows (empty leaves unknown)")
    return Dataset(
        name=p.name, source=str(p), kind="file", field=fld, texts=texts, n_rows=df.height, n_empty=empty,
        n_before_sample=len(texts), leaf_ids=leaf_ids, paths=paths, notes=notes,
    )
