"""What the TUI runs or opens, and the services it uses (injectable for tests).

Everything here that touches the disk or imports something slow is called from a thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from treesynth.core.config import RunConfig
from treesynth.core.text import truncate
from treesynth.core.tree import Tree

from .model import PREVIEWS_PER_LEAF


def _default_preflight(cfg) -> None:
    from treesynth.core.preflight import check_provider

    check_provider(cfg)


def _default_price(model: str):
    from treesynth.core.llm.pricing import litellm_price

    return litellm_price(model)


@dataclass
class Services:
    """The outside world, as the app sees it. Tests replace the transport and the preflight."""

    transport_factory: Callable[[], Any] | None = None  # None: the product's litellm transport
    preflight: Callable[[RunConfig], None] | None = _default_preflight
    price: Callable[[str], Callable[[int, int], float | None] | None] = _default_price
    clock: Callable[[], float] = time.monotonic
    runs_root: Path = field(default_factory=lambda: Path("runs"))
    auto_expand_depth: int = 2
    loop_share_s: float = 0.005  # the engine yields the loop to the UI after this long (see fairness.py)
    embedder: Callable[[list[str]], Any] | None = None  # balance runs: None is the product's embedder
    report_when_done: bool = False  # `treesynth run --report`: build the analytics report when the run completes

    def transport(self):
        return self.transport_factory() if self.transport_factory is not None else None


@dataclass(frozen=True)
class NewRun:
    cfg: RunConfig
    out: Path


@dataclass(frozen=True)
class ResumeRun:
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BrowseRun:
    run_dir: Path


@dataclass(frozen=True)
class NewBalance:
    """``treesynth balance DATA`` (without --no-ui): the data is loaded and the settings checked by the CLI."""

    data: Any  # treesynth.core.balance.Data
    spec: dict[str, Any]
    flags: dict[str, Any]
    out: Path
    config_file: str | None = None


Source = NewRun | ResumeRun | BrowseRun | NewBalance


# ---------------------------------------------------------------------------- reading runs


def read_json(path: Path) -> dict[str, Any]:
    try:
        d = orjson.loads(path.read_bytes())
        return d if isinstance(d, dict) else {}
    except (OSError, orjson.JSONDecodeError):
        return {}


def run_status(run_dir: Path) -> str:
    """complete | stopped | budget | incomplete | running (or interrupted) | "" if unknown."""
    return str(read_json(Path(run_dir) / "state.json").get("status", ""))


def run_config(run_dir: Path) -> dict[str, Any]:
    cfg = read_json(Path(run_dir) / "config.json").get("config")
    return cfg if isinstance(cfg, dict) else {}


def is_run_dir(path: Path) -> bool:
    return (Path(path) / "config.json").is_file()


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
        cfg, state = run_config(p), read_json(p / "state.json")
        try:
            mtime = (p / "state.json").stat().st_mtime
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
    p = Path(run_dir) / "samples.jsonl"
    if not p.exists():
        return counts, previews
    with open(p, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
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
    """A run's tree, config, state and samples per leaf, read-only (no lock, no repair)."""
    from treesynth.core.store import load_tree_readonly

    run_dir = Path(run_dir)
    tree = load_tree_readonly(run_dir)
    cfg = run_config(run_dir)
    fields = cfg.get("fields") or ["text"]
    counts, previews = scan_samples(run_dir, fields[0] if fields else None)
    return Browsed(run_dir, tree, cfg, read_json(run_dir / "state.json"), counts, previews)
