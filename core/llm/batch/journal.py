"""What reached the provider, written down before and as it happens, so a killed run never pays twice.

``batches.jsonl`` in the run directory, one line per step of each batch (``name`` is ours):

- ``planned``: the input file is written in the run directory, with the custom ids in it: nothing
  has left the machine yet;
- ``uploaded``: the provider holds the file (``file_id``);
- ``created``: the provider returned the batch (``batch_id``); from here it runs and bills;
- ``finished``: the batch reached a final status (``output_file_id``, ``error_file_id``);
- ``collected``: its results are stored (in the response cache); the batch is done with.

A batch created but not yet recorded as ``created`` (a kill between the provider's answer and the
append) is found again by its metadata (``treesynth_batch`` = name), never created twice.
``replay`` is pure; ``BatchJournal`` does the appends (fsync'd, all or nothing).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from ...files import append_all
from ...jsonl import read_records

FINAL = ("completed", "failed", "expired", "cancelled")


@dataclass(frozen=True)
class BatchRecord:
    name: str
    file: str  # the input file, relative to the run directory
    ids: tuple[str, ...]
    planned_at: float = 0.0
    file_id: str | None = None
    batch_id: str | None = None
    status: str | None = None  # the final status, once finished
    output_file_id: str | None = None
    error_file_id: str | None = None
    collected: bool = False
    attempt: int = 0  # 0: first submission of these ids; n: the n-th resubmission of failed ones
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        """planned | uploaded | created | finished | collected"""
        if self.collected:
            return "collected"
        if self.status in FINAL:
            return "finished"
        if self.batch_id:
            return "created"
        if self.file_id:
            return "uploaded"
        return "planned"


def replay(entries: Iterable[dict[str, Any]]) -> dict[str, BatchRecord]:
    """Every batch's latest state from the journal's lines, in order. Unknown or malformed lines are
    skipped (a newer version's steps, or damage the reader already reported)."""
    out: dict[str, BatchRecord] = {}
    for e in entries:
        op, name = e.get("op"), e.get("batch")
        if not isinstance(name, str):
            continue
        if op == "planned" and isinstance(e.get("ids"), list) and isinstance(e.get("file"), str):
            out[name] = BatchRecord(name, e["file"], tuple(str(i) for i in e["ids"]), float(e.get("ts") or 0.0),
                                    attempt=int(e.get("attempt") or 0))
            continue
        r = out.get(name)
        if r is None:
            continue
        if op == "uploaded" and isinstance(e.get("file_id"), str):
            out[name] = replace(r, file_id=e["file_id"])
        elif op == "created" and isinstance(e.get("batch_id"), str):
            out[name] = replace(r, batch_id=e["batch_id"])
        elif op == "finished" and e.get("status") in FINAL:
            out[name] = replace(r, status=e["status"], output_file_id=e.get("output_file_id"), error_file_id=e.get("error_file_id"))
        elif op == "collected":
            out[name] = replace(r, collected=True)
    return out


def submitted_ids(records: Iterable[BatchRecord]) -> set[str]:
    """Custom ids in batches the provider may be running or has run (created, not collected)."""
    return {i for r in records if r.stage in ("created", "finished") for i in r.ids}


class BatchJournal:
    FILE = "batches.jsonl"

    def __init__(self, run_dir: Path) -> None:
        self.root = Path(run_dir)
        self.path = self.root / self.FILE

    def load(self, warnings: list[str] | None = None) -> dict[str, BatchRecord]:
        return replay(read_records(self.path, warnings, repair=True))

    def _append(self, entry: dict[str, Any]) -> None:
        entry = {"ts": time.time(), **entry}
        with open(self.path, "ab", buffering=0) as f:
            append_all(f, orjson.dumps(entry) + b"\n")
            os.fsync(f.fileno())

    def planned(self, name: str, file: str, ids: Iterable[str], attempt: int = 0) -> None:
        self._append({"op": "planned", "batch": name, "file": file, "ids": list(ids), "attempt": attempt})

    def uploaded(self, name: str, file_id: str) -> None:
        self._append({"op": "uploaded", "batch": name, "file_id": file_id})

    def created(self, name: str, batch_id: str) -> None:
        self._append({"op": "created", "batch": name, "batch_id": batch_id})

    def finished(self, name: str, status: str, output_file_id: str | None, error_file_id: str | None) -> None:
        self._append({"op": "finished", "batch": name, "status": status, "output_file_id": output_file_id, "error_file_id": error_file_id})

    def collected(self, name: str) -> None:
        self._append({"op": "collected", "batch": name})
