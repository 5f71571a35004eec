"""Writing the final dataset from samples.jsonl: JSONL (streamed), Parquet (polars), HF datasets."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from .errors import TreesynthError

INTERNAL_KEYS = ("slot", "_k")


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in INTERNAL_KEYS}


def write_jsonl(rows: Iterable[dict[str, Any]], dest: Path, limit: int | None = None) -> int:
    """Stream rows (internal keys dropped, ids unique) to ``dest`` atomically; returns the count."""
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    seen: set[str] = set()
    n = 0
    with open(tmp, "wb") as f:
        buf: list[bytes] = []
        for row in rows:
            rid = str(row.get("id"))
            if rid in seen:
                continue
            seen.add(rid)
            buf.append(orjson.dumps(public_row(row)))
            n += 1
            if len(buf) >= 4096:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
            if limit is not None and n >= limit:
                break
        if buf:
            f.write(b"\n".join(buf) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    return n


def write_parquet(jsonl: Path, dest: Path) -> None:
    import polars as pl

    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    if jsonl.stat().st_size == 0:
        pl.DataFrame().write_parquet(tmp)
    else:
        pl.scan_ndjson(jsonl, infer_schema_length=None).sink_parquet(tmp)
    os.replace(tmp, dest)


def write_hf(jsonl: Path, dest: Path) -> None:
    try:
        import datasets
    except ImportError:
        raise TreesynthError("--format hf needs the 'datasets' package: pip install 'treesynth[hf]'") from None
    ds = datasets.load_dataset("json", data_files=str(jsonl), split="train")
    ds.save_to_disk(str(dest))
