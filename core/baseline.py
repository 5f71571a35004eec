"""The paper's baseline for a run: the same model, fields, preset, temperature, samples per call and
quality gates, the same number of rows, but no tree: every call is made from the root prompt alone
(``depth`` 0, the root is the only leaf). It is a run directory of its own, ``RUN_DIR/baseline``, so
its calls, tokens and cost are counted apart from the run's, and it resumes like any run; after the run
is extended (``treesynth extend``), making the baseline again extends it to the run's new row count."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import RunConfig, build_config
from .errors import ConfigError, RunDirError
from .reader import RunReader
from .rundir import BASELINE, CONFIG

# what a baseline never takes from its run: the tree, where the run went, its resumable-only settings
_NOT_COPIED = ("depth", "out", "preset", "size", "tree_from")  # a baseline has no tree


def baseline_dir(run_dir: Path) -> Path:
    return run_dir / BASELINE


def check_baseline_source(run_dir: Path) -> None:
    """A run made by ``treesynth run`` (not a balance run, not a baseline itself), or a one-line error."""
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a treesynth run directory (no {CONFIG})")
    from .modes import mode_class, recorded_mode

    mode = mode_class(recorded_mode(run_dir))
    if not mode.has_baseline:
        raise ConfigError(f"{str(run_dir)!r} is a {mode.kind} run; a baseline is made for runs made by treesynth run")
    if run_dir.name == BASELINE and (run_dir.parent / CONFIG).is_file():
        raise ConfigError(f"{str(run_dir)!r} is a baseline already; give its run directory")


def baseline_config(saved: dict[str, Any], rows: int) -> RunConfig:
    """The baseline's config from the run's saved one (its preset already resolved into it) for ``rows`` rows."""
    if rows < 1:
        raise ConfigError("the run has no rows yet: finish it (or resume it) before making its baseline")
    base = {k: v for k, v in saved.items() if k not in _NOT_COPIED}
    cfg = build_config(base=base, flags={"depth": 0, "size": rows})
    return cfg.model_copy(update={"preset": saved.get("preset")})


@dataclass(frozen=True)
class BaselinePlan:
    """What ``treesynth baseline`` runs: a new baseline (``config``, ``rows``) into ``out``, or, with no
    ``config``, the one already in ``out`` resumed with ``overrides``."""

    out: Path
    overrides: dict[str, Any] = field(default_factory=dict)
    config: RunConfig | None = None
    rows: int = 0


def prepare_baseline(run_dir: Path, overrides: dict[str, Any]) -> BaselinePlan:
    """The baseline of the run in ``run_dir``: resumed when RUN_DIR/baseline holds one (extended first when the run
    now has more rows than it), else made from the run's
    saved config (``overrides`` on top; None values ignored) for as many rows as the run has, at most its size.
    The run is read, not locked; one still being written is refused, as its row count is not final."""
    run_dir = Path(run_dir)
    check_baseline_source(run_dir)
    out = baseline_dir(run_dir)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if (out / CONFIG).is_file():
        _top_up(run_dir, out)
        return BaselinePlan(out, overrides)
    saved, rows = _run_rows(run_dir)
    return BaselinePlan(out, overrides, baseline_config({**saved, **overrides}, rows), rows)


def _run_rows(run_dir: Path) -> tuple[dict[str, Any], int]:
    """The run's saved config and its row count, at most its size (what its baseline matches)."""
    reader = RunReader.open(run_dir)
    if reader.in_use():
        raise RunDirError(f"{str(run_dir)!r} is in use by another treesynth process")
    saved = reader.saved_config()
    rows = sum(1 for _ in reader.iter_samples())
    size = int(saved.get("size", 0))
    return saved, min(rows, size) if size else rows


def _top_up(run_dir: Path, out: Path) -> None:
    """A baseline smaller than its run's rows (the run was extended since: core/extend.py) is extended to match;
    it is a run of its own with a single leaf, so the resume that follows just writes the rows it lacks."""
    from .extend import record_extension
    from .store import read_saved_config

    if RunReader.open(run_dir).in_use():  # its row count is not final: the baseline resumes as it is
        return
    _, rows = _run_rows(run_dir)
    size = read_saved_config(out).get("size")
    if isinstance(size, int) and rows > size:
        record_extension(out, rows)
