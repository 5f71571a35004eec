"""Writing a run's dataset: JSONL (streamed), Parquet (polars), training formats (chat, alpaca: one
record per row, core/training.py), and a Hugging Face ``datasets`` directory with its dataset card
(core/card.py), which can also be pushed to the Hub."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from .card import Branch, CardFacts
from .errors import ProviderError, TreesynthError, first_line

INTERNAL_KEYS = ("slot", "_k")


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in INTERNAL_KEYS}


def _write_lines(lines: Iterable[bytes], dest: Path) -> int:
    """JSON lines to ``dest`` atomically (a temporary file, fsync, rename); returns the count."""
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    n = 0
    try:
        with open(tmp, "wb") as f:
            buf: list[bytes] = []
            for line in lines:
                buf.append(line)
                n += 1
                if len(buf) >= 4096:
                    f.write(b"\n".join(buf) + b"\n")
                    buf.clear()
            if buf:
                f.write(b"\n".join(buf) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _unique(rows: Iterable[dict[str, Any]], limit: int | None) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for row in rows:
        rid = str(row.get("id"))
        if rid in seen:
            continue
        seen.add(rid)
        yield row
        if limit is not None and len(seen) >= limit:
            return


def write_jsonl(rows: Iterable[dict[str, Any]], dest: Path, limit: int | None = None) -> int:
    """Stream rows (internal keys dropped, ids unique) to ``dest`` atomically; returns the count."""
    return _write_lines((orjson.dumps(public_row(r)) for r in _unique(rows, limit)), dest)


def write_records(rows: Iterable[dict[str, Any]], dest: Path, convert: Callable[[dict[str, Any]], dict[str, Any]]) -> int:
    """Each row (ids unique) converted to a training record, streamed to ``dest`` as JSONL, atomically."""
    return _write_lines((orjson.dumps(convert(r)) for r in _unique(rows, None)), dest)


def warm_up(delay_s: float = 0.5) -> threading.Timer:
    """Import polars (0.25 s) in a background thread while rows are still being written, so the export
    at the end does not wait for it. Started after the first requests have gone out; the caller
    cancels the returned timer when the run ends.

    The thread is not a daemon: a daemon killed mid-import at interpreter exit keeps the import lock,
    and the next import (litellm's client finaliser imports a module) then hangs the exit for ever."""

    def _import() -> None:
        try:
            import polars  # noqa: F401
        except Exception:  # noqa: BLE001 - the export reports a broken polars itself
            pass

    t = threading.Timer(delay_s, _import)
    t.daemon = False
    t.start()
    return t


PARQUET_CHUNK_ROWS = 4096  # JSONL lines parsed at a time by the Parquet export


class _SchemaDrift(Exception):
    """A later chunk of the JSONL has a column or a type the first chunk did not."""


def write_parquet(jsonl: Path, dest: Path) -> None:
    """``jsonl`` as Parquet, in bounded memory: the lines are parsed ``PARQUET_CHUNK_ROWS`` at a time
    and streamed into the file (polars' own ``scan_ndjson`` sink holds the whole file: 1 GB of RSS
    for 80 MB of JSONL). The schema is the first chunk's; a file whose later rows bring other
    columns or types (a balanced dataset of loose rows) is read whole instead."""
    import polars as pl

    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        if jsonl.stat().st_size == 0:
            pl.DataFrame().write_parquet(tmp)
        else:
            try:
                _sink_chunked(jsonl, tmp)
            except _SchemaDrift:
                pl.scan_ndjson(jsonl, infer_schema_length=None).sink_parquet(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _chunks(jsonl: Path, rows: int) -> Iterator[bytes]:
    with open(jsonl, "rb") as f:
        while True:
            lines = [line for line in itertools.islice(f, rows) if line.strip()]
            if not lines:
                return
            yield b"".join(lines)


def _sink_chunked(jsonl: Path, tmp: Path) -> None:
    import io

    import polars as pl
    from polars.io.plugins import register_io_source

    chunks = _chunks(jsonl, PARQUET_CHUNK_ROWS)
    first = next(chunks, None)
    if first is None:
        pl.DataFrame().write_parquet(tmp)
        return
    head = pl.read_ndjson(io.BytesIO(first), infer_schema_length=None)
    schema = head.schema
    if any(dt == pl.Null for dt in schema.values()):
        raise _SchemaDrift("a column with no value in the first rows")
    drift: list[_SchemaDrift] = []

    def frames(with_columns: Any, predicate: Any, n_rows: Any, batch_size: Any) -> Iterator[Any]:
        yield head
        for chunk in chunks:
            df = pl.read_ndjson(io.BytesIO(chunk), infer_schema_length=None)
            extra = set(df.columns) - set(schema)
            if extra:
                drift.append(_SchemaDrift(f"new columns {sorted(extra)}"))
                raise drift[-1]
            try:
                yield df.select([
                    pl.col(c).cast(t, strict=True) if c in df.columns else pl.lit(None, dtype=t).alias(c) for c, t in schema.items()
                ])
            except pl.exceptions.PolarsError as e:
                drift.append(_SchemaDrift(str(e)))
                raise drift[-1] from None

    try:
        register_io_source(frames, schema=schema).sink_parquet(tmp, row_group_size=16384)
    except Exception:
        if drift:
            raise drift[-1] from None
        raise


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise TreesynthError("--format hf needs the 'datasets' package: pip install 'treesynth[hf]'") from None
    datasets.disable_progress_bars()
    return datasets


def write_hf(jsonl: Path, dest: Path, card: str | None = None) -> Any:
    """A ``datasets`` directory (``Dataset.save_to_disk``: ``datasets.load_from_disk`` reads it) with the
    dataset card as its README.md; returns the ``Dataset`` (for ``push_to_hub``)."""
    datasets = _datasets()
    ds = datasets.load_dataset("json", data_files=str(jsonl), split="train")
    ds.save_to_disk(str(dest))
    if card is not None:
        (dest / "README.md").write_text(card, encoding="utf-8")
    return ds


def hub_token() -> str:
    """The Hugging Face token from the environment, or a one-line error (checked before anything is written)."""
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if not token:
        raise ProviderError("--push-to-hub needs a Hugging Face token in HF_TOKEN (or HUGGING_FACE_HUB_TOKEN)")
    return token


def push_to_hub(ds: Any, repo: str, card: str, token: str) -> str:
    """The dataset (a ``datasets.Dataset``, as ``write_hf`` returns it) and its card to the Hub repository
    ``repo``. Returns the repository's URL. No network or a refused upload is one line."""
    from huggingface_hub import DatasetCard


    try:
        ds.push_to_hub(repo, token=token)
        DatasetCard(card).push_to_hub(repo, token=token)
    except Exception as e:  # noqa: BLE001 - network, auth, a bad name: the first line, no traceback
        raise ProviderError(f"could not push to the Hub repository {repo!r}: {first_line(e)}") from None
    return f"https://huggingface.co/datasets/{repo}"


def card_facts(
    config: dict[str, Any], rows: Iterator[dict[str, Any]], verdicts: dict[str, bool], rejected: Iterable[dict[str, Any]],
    metrics: dict[str, Any], prompt: tuple[str, ...] = (), response: tuple[str, ...] = (), version: str = "",
    created: str | None = None, data_files: str = "data/*.parquet",
) -> CardFacts:
    """What the card says about a run, from its config, its dataset rows (read once), its verdicts and
    rejections, and the report's metrics for it (empty when there is no report)."""
    n = 0
    leaves: set[str] = set()
    depth = 0
    by_branch: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, set()])
    for r in rows:
        n += 1
        path = r.get("path") or []
        leaves.add(str(r.get("leaf_id")))
        depth = max(depth, len(path))
        if path and isinstance(path[0], dict):
            b = by_branch[(str(path[0].get("dimension", "")), str(path[0].get("value", "")))]
            b[0] += 1
            b[1].add(str(r.get("leaf_id")))
    branches = tuple(sorted((Branch(d, v, c, len(ls)) for (d, v), (c, ls) in by_branch.items()), key=lambda b: -b.rows))
    gates = Counter(str(x.get("gate")) for x in rejected)
    quality = {"judged": len(verdicts), "passed": sum(verdicts.values()), "validator_rejected": gates.get("validator", 0),
               "near_duplicates": gates.get("near_duplicate", 0)}
    return CardFacts(
        task=str(config.get("task", "")), model=str(config.get("model", "")), created=created or time.strftime("%Y-%m-%d"),
        rows=n, fields=tuple(config.get("fields") or ()), prompt_fields=prompt, response_fields=response, leaves=len(leaves),
        depth=depth, branches=branches, metrics=metrics, quality=quality, preset=config.get("preset"), version=version,
        data_files=data_files,
    )
