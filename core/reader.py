"""A run directory read without locking or changing it: what ``treesynth tree``, ``report``, the TUI's
browser and run list see. A run may be going on while it is read, so a torn last line is skipped,
not cut (only the run's own writer repairs its files; see core/store.py)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from .errors import RunDirError
from .files import check_run_dir
from .jsonl import read_records
from .rundir import BALANCE, CONFIG, DATASET, LOCK, METRICS, PLAN, REJECTED, ROUTES, SAMPLES, STATE, VERDICTS
from .store import read_saved_config, verdict_records, with_verdict
from .tree import Tree
from .treefile import load_tree_readonly


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file, or {} when it is missing, unreadable or not an object."""
    try:
        d = orjson.loads(Path(path).read_bytes())
        return d if isinstance(d, dict) else {}
    except (OSError, orjson.JSONDecodeError):
        return {}


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def is_balance_run(path: Path) -> bool:
    """A run directory made by ``treesynth balance`` (it has the balance spec)."""
    return (Path(path) / BALANCE).is_file()


class RunReader:
    """Read-only view of one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not is_run_dir(self.root):
            raise RunDirError(f"{str(root)!r} is not a treesynth run (no {CONFIG})")

    @classmethod
    def open(cls, root: Path) -> RunReader:
        """The reader of ``root``, with the one line a run directory's opening gives when it is missing,
        not a directory or not a run (core/files.py's ``check_run_dir``)."""
        check_run_dir(root)
        return cls(root)

    def p(self, name: str) -> Path:
        return self.root / name

    def saved_config(self) -> dict[str, Any]:
        """The resolved config, or a one-line RunDirError when config.json is damaged (for a command that
        acts on the run, unlike ``config()``, which shows what it can)."""
        return read_saved_config(self.root)

    def config(self) -> dict[str, Any]:
        """The resolved config ({} when config.json is damaged: a viewer shows what it can)."""
        cfg = read_json(self.p(CONFIG)).get("config")
        return cfg if isinstance(cfg, dict) else {}

    def state(self) -> dict[str, Any]:
        return read_json(self.p(STATE))

    @property
    def status(self) -> str:
        """complete | stopped | budget | incomplete | running (or interrupted) | "" if unknown."""
        return str(self.state().get("status", ""))

    @property
    def is_balance(self) -> bool:
        return is_balance_run(self.root)

    def balance_spec(self) -> dict[str, Any]:
        return read_json(self.p(BALANCE))

    def tree(self) -> Tree:

        return load_tree_readonly(self.root)

    def samples(self) -> Iterator[dict[str, Any]]:
        """The synthesised rows written so far (a balance run: its new rows only)."""
        return read_records(self.p(SAMPLES))

    def iter_samples(self, judged_only: bool = False) -> Iterator[dict[str, Any]]:
        """The run's rows as its dataset has them (RunStore.iter_samples read without the lock): rows the
        judge failed left out, a judged row with its verdict as ``judge``; ``judged_only``: unjudged ones
        left out too."""
        verdicts = verdict_records(self.root)
        for row in self.samples():
            if verdicts or judged_only:
                kept = with_verdict(row, verdicts, judged_only)
                if kept is not None:
                    yield kept
            else:
                yield row

    def verdicts(self) -> dict[str, bool]:
        """Row id -> whether its (last) verdict passed."""
        out: dict[str, bool] = {}
        for v in read_records(self.p(VERDICTS)):
            if isinstance(v.get("id"), str) and isinstance(v.get("pass"), bool):
                out[v["id"]] = v["pass"]
        return out

    def rejected(self) -> Iterator[dict[str, Any]]:
        """Every row a quality gate turned away ({"gate": ...})."""
        return read_records(self.p(REJECTED))

    def report_metrics(self) -> dict[str, Any]:
        """The run's metrics from its report's metrics.json (the first dataset), or {} when there is none."""
        try:
            return dict(read_json(self.p(METRICS))["datasets"][0]["metrics"])
        except (KeyError, IndexError, TypeError, ValueError):
            return {}

    def in_use(self) -> bool:
        """Whether a writer (a run, resume or judge) holds the run now. Probes its lock file with a shared,
        non-blocking lock released at once; creates nothing."""
        try:
            fd = os.open(self.p(LOCK), os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def dataset_path(self) -> Path | None:
        """The finished dataset (dataset.jsonl), if the run completed."""
        p = self.p(DATASET)
        return p if p.is_file() else None

    def synthesised_per_leaf(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.samples():
            lid = row.get("leaf_id")
            if isinstance(lid, str):
                counts[lid] = counts.get(lid, 0) + 1
        return counts

    def leaf_rows(self) -> tuple[Tree, dict[str, int], dict[str, int] | None]:
        """The tree, the rows of each of its leaves, and each leaf's target where it is not the tree's own
        (``rows_per_leaf``, counted on leaves only: a balance run also counts rows routed through inner nodes)."""
        tree = self.tree()
        counts, targets = self.rows_per_leaf()
        return tree, {k: v for k, v in counts.items() if k in tree.nodes and not tree.get(k).children}, targets

    def rows_per_leaf(self) -> tuple[dict[str, int], dict[str, int] | None]:
        """Rows per leaf, and each leaf's target where the rows are not the leaf's own target.

        A run: synthesised rows (targets are the tree's). A balance run once planned: the originals a leaf
        keeps plus its new rows (at most the planned number), out of kept + planned; before the plan, the
        rows routed to each leaf so far (the tree's targets are routed rows too)."""
        synthesised = self.synthesised_per_leaf()
        if not self.is_balance:
            return synthesised, None
        plan = read_json(self.p(PLAN))
        if plan:
            counts, targets = {}, {}
            for lid, p in plan.items():
                if not isinstance(p, dict):
                    continue
                kept, synth = len(p.get("keep", [])), int(p.get("synth", 0))
                counts[lid] = kept + min(synthesised.get(lid, 0), synth)
                targets[lid] = kept + synth
            return counts, targets
        routed: dict[str, int] = {}
        for rec in read_records(self.p(ROUTES)):
            for cid, idx in (rec.get("children") or {}).items():
                routed[cid] = len(idx)
        return routed, None
