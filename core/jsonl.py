"""Append-only JSON-lines files, read back after a crash: the one place that knows what a torn line is.

A crash mid-write can leave the last line without its newline, or cut inside it; that is a torn write,
cut off on resume. A damaged line with more lines after it is corruption, not a torn write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .errors import RunDirError


def read_records(path: Path, warnings: list[str] | None = None, repair: bool = False, strict: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of ``path``'s complete lines, in order (a missing file yields nothing).

    ``repair``: cut a torn last line off the file (the writer owns it; a reader never changes it) and
    say so in ``warnings``. ``strict``: a damaged line that is not the last raises RunDirError; otherwise
    it is skipped, as a read-only viewer must."""
    path = Path(path)
    if not path.exists():
        return
    good_end = 0
    with open(path, "rb") as f:
        lines = iter(f)
        line = next(lines, None)
        while line is not None:
            nxt = next(lines, None)
            if not line.endswith(b"\n"):
                break  # torn tail
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                if nxt is None:
                    break  # damaged last line: a torn write
                if strict:
                    raise RunDirError(f"{str(path.parent)!r} is corrupt: {path.name} has a damaged line at byte {good_end}") from None
                good_end += len(line)
                line = nxt
                continue
            good_end += len(line)
            if isinstance(obj, dict):
                yield obj
            line = nxt
    if repair:
        size = path.stat().st_size
        if size > good_end:
            if warnings is not None:
                warnings.append(f"{path.name}: cut {size - good_end} bytes of a torn last line (interrupted write)")
            with open(path, "r+b") as f:
                f.truncate(good_end)
