"""Saved run directories as the TUI shows them: the Open run list, a browsed run, sample previews.

All reading goes through the core's read-only ``RunReader`` (no lock, no repair: a run may be going
on while it is read). Everything here touches the disk, so the screens call it from a thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treesynth.core.reader import RunReader, is_run_dir, read_json
from treesynth.core.rundir import STATE
from treesynth.core.text import truncate
from treesynth.core.tree import Tree

from .model import PREVIEWS_PER_LEAF


def run_status(run_dir: Path) -> str:
    """complete | stopped | budget | incomplete | running (or interrupted) | "" if unknown (or not a run)."""
    return str(read_json(Path(run_dir) / STATE).get("status", ""))


@dataclass
class RunListing:
    path: Path
    task: str
    status: str
    size: int
    rows: int
    mtime: float


def list_runs(root: Path, limit: int = 200) -> list[RunListing]:
    """Run directories under ``root`` (and ``root`` itself if it is one), newest first."""
    root = Path(root)
    out: list[RunListing] = []
    try:
        candidates = [root] if is_run_dir(root) else [p for p in root.iterdir() if p.is_dir()]
    except OSError:
        return []
    for p in candidates:
        if not is_run_dir(p):
            continue
        reader = RunReader(p)
        cfg, state = reader.config(), reader.state()
        try:
            mtime = reader.p(STATE).stat().st_mtime
        except OSError:
            mtime = 0.0
        out.append(
            RunListing(
                path=p, task=str(cfg.get("task", "")), status=str(state.get("status", "?")),
                size=int(cfg.get("size", 0) or 0), rows=int(state.get("rows", 0) or 0), mtime=mtime,
            )
        )
    out.sort(key=lambda r: r.mtime, reverse=True)
    return out[:limit]


def scan_samples(run_dir: Path, field_name: str | None) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Samples per leaf and a short preview of the first few, from samples.jsonl (one pass)."""
    counts: dict[str, int] = {}
    previews: dict[str, list[str]] = {}
    for row in RunReader(run_dir).samples():
        lid = row.get("leaf_id")
        if not isinstance(lid, str):
            continue
        counts[lid] = counts.get(lid, 0) + 1
        pv = previews.setdefault(lid, [])
        if len(pv) < PREVIEWS_PER_LEAF and field_name:
            pv.append(truncate(" ".join(str(row.get(field_name, "")).split()), 160))
    return counts, previews


@dataclass
class Browsed:
    run_dir: Path
    tree: Tree
    config: dict[str, Any]
    state: dict[str, Any]
    counts: dict[str, int]
    previews: dict[str, list[str]]


def load_browse(run_dir: Path) -> Browsed:
    """A run's tree, config, state and samples per leaf, read-only."""
    reader = RunReader(run_dir)
    tree = reader.tree()
    cfg = reader.config()
    fields = cfg.get("fields") or ["text"]
    counts, previews = scan_samples(reader.root, fields[0] if fields else None)
    return Browsed(reader.root, tree, cfg, reader.state(), counts, previews)
