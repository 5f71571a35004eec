"""The dataset a balance run starts from: read (JSONL, Parquet, CSV), checked, fingerprinted."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import ConfigError

if TYPE_CHECKING:
    import polars as pl

#: the columns a balanced row gains (a dataset that has them already is refused)
OUTPUT_COLUMNS = ("leaf_id", "path", "provenance")


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


def read_table(path: Path) -> pl.DataFrame:
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
