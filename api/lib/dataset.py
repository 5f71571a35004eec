"""``Dataset``: a run directory read as data (read-only, no lock: a run may still be going on). Its rows are
the finished output when there is one, else the rows made so far; ``tree`` is the partition tree."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from treesynth.core.export import public_row
from treesynth.core.jsonl import read_records
from treesynth.core.modes import mode_class, recorded_mode
from treesynth.core.reader import RunReader, read_json
from treesynth.core.rundir import METRICS
from treesynth.core.tree import Tree
from treesynth.core.treeview import render_tree

if TYPE_CHECKING:
    import polars as pl


class TreeView:
    """The run's partition tree: ``str()`` draws it (rows made / target per node), ``leaves`` lists each
    leaf's root-to-leaf path, ``to_dict()`` is its JSON document."""

    def __init__(self, tree: Tree, counts: dict[str, int], targets: dict[str, int] | None) -> None:
        self.tree = tree
        self._counts = counts
        self._targets = targets

    @property
    def leaves(self) -> list[list[tuple[str, str]]]:
        """Every leaf's path: [(dimension, value), ...] from the root down."""
        return [[(p["dimension"], p["value"]) for p in self.tree.path(n.id)] for n in self.tree.leaves()]

    @property
    def nodes(self) -> int:
        return len(self.tree)

    def to_dict(self) -> dict[str, Any]:
        return self.tree.to_dict()

    def render(self, max_depth: int | None = None) -> str:
        return render_tree(self.tree, self._counts, max_depth=max_depth, leaf_targets=self._targets)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"<TreeView: {self.nodes} nodes, {len(self.tree.leaves())} leaves>"


class Dataset:
    """A run's rows and what describes them. Iterate for rows (dicts of the run's fields plus ``id``,
    ``leaf_id`` and ``path``); ``len()`` counts them."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self._reader = RunReader(self.run_dir)  # a one-line RunDirError when it is not a run directory
        self._mode = mode_class(recorded_mode(self.run_dir))

    # ---- what the run is -------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        """The run's resolved settings (as saved in config.json)."""
        return self._reader.config()

    @property
    def status(self) -> str:
        """complete | stopped | budget | incomplete | running (or interrupted)."""
        return self._reader.status

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def usage(self) -> dict[str, Any]:
        """Calls, tokens and cost so far (state.json's ``usage``): ``requests``, ``tokens_in``, ``tokens_out``,
        ``cost`` (USD; ``cost_known`` False when a model had no price), and ``roles``: the same by role
        (``tree``, ``rows``, ``judge``), each with its ``model``."""
        u = self._reader.state().get("usage")
        return dict(u) if isinstance(u, dict) else {}

    @property
    def path(self) -> Path | None:
        """The finished output (dataset.jsonl; a balance run's balanced.jsonl), or None before it exists."""
        p = self.run_dir / self._mode.output
        return p if p.is_file() else None

    # ---- rows ------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        p = self.path
        if p is not None:
            yield from read_records(p)
            return
        size = int(self.config.get("size") or 0) or None
        seen = 0
        for row in self._reader.samples():  # unfinished: the rows made so far, as the export would write them
            if size is not None and seen >= size:
                return
            seen += 1
            yield public_row(row)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def head(self, n: int = 5) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for row in self:
            if len(out) >= n:
                break
            out.append(row)
        return out

    def to_polars(self) -> pl.DataFrame:
        """The rows as a polars DataFrame (the finished Parquet file when there is one)."""
        import polars as pl

        parquet = self.run_dir / self._mode.output_parquet
        if self.path is not None and parquet.is_file():
            return pl.read_parquet(parquet)
        return pl.DataFrame(list(self))

    def to_hf(self) -> Any:
        """The rows as a Hugging Face ``datasets.Dataset`` (needs ``pip install 'treesynth[hf]'``)."""
        try:
            import datasets
        except ImportError:
            raise ImportError("Dataset.to_hf needs the datasets package: pip install 'treesynth[hf]'") from None
        return datasets.Dataset.from_polars(self.to_polars())

    def export(
        self, format: str = "jsonl", out: str | os.PathLike[str] | None = None, *, prompt_fields: Sequence[str] | None = None,
        response_fields: Sequence[str] | None = None, system: str | None = None, push_to_hub: str | None = None,
    ) -> Path:
        """Write the rows as ``treesynth export`` does: ``jsonl``, ``parquet``, ``chat`` or ``alpaca`` (training
        formats; roles from the preset unless given), or ``hf`` (a Hugging Face dataset directory with its card,
        pushed to the Hub repository ``push_to_hub`` when given). Returns what was written (default: the
        format's file in the run directory)."""
        from treesynth.core.exporting import export_run

        return export_run(
            self.run_dir, format, Path(out) if out is not None else None, prompt_fields=prompt_fields, response_fields=response_fields,
            system=system, push_to_hub_repo=push_to_hub,
        ).path

    # ---- what describes them ----------------------------------------------
    @property
    def tree(self) -> TreeView:
        return TreeView(*self._reader.leaf_rows())

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """The report's metrics of these rows (diversity, coverage, quality): read from the run's metrics.json,
        or, when the run has no report yet, computed by building it (``treesynth.report``; embeds every row)."""
        doc = read_json(self.run_dir / METRICS)
        if not doc:
            from treesynth.analytics.report import report_for_run

            report_for_run(self.run_dir, log=None)
            doc = read_json(self.run_dir / METRICS)
        try:
            return dict(doc["datasets"][0]["metrics"])
        except (KeyError, IndexError, TypeError):
            return {}

    def summary(self) -> str:
        """One line: status, rows, leaves, run directory."""
        tree = self._reader.tree()
        return f"{self.status}: {len(self):,} rows in {len(tree.leaves())} leaves ({len(tree)} nodes), {self.run_dir}"

    def __repr__(self) -> str:
        return f"<treesynth.Dataset {self.run_dir} ({self.status})>"
