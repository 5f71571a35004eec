"""The inputs of a report, loaded: a treesynth run directory (``run_data``), a balance run (its input
and output, ``balance_data``) or a JSONL / JSON / Parquet / CSV dataset (``file_data``), each as a
``Dataset``, sampled with ``--sample`` and named uniquely."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from treesynth.core.reader import is_balance_run, is_run_dir
from treesynth.core.rundir import BASELINE, CONFIG

from .balance_data import load_balance
from .dataset import Dataset, sample_rows
from .errors import InputError
from .file_data import load_file
from .progress import Meters
from .results import Log
from .run_data import load_run


def load_inputs(
    inputs: Sequence[str], field: str | None, sample: int | None, seed: int, log: Log, meters: Meters | None = None,
) -> list[Dataset]:
    """Every input as datasets: the first is the main one (a balance run gives two, before and after),
    the rest are compared with it (one that lacks ``field`` is compared on its own text field).
    ``meters``: progress while a large run's rows are read (``analytics.progress``)."""
    datasets: list[Dataset] = []

    def load(src: str | Path, field: str | None) -> Dataset:
        meter = meters(f"reading {Path(src).name}", "rows") if meters is not None else None
        try:
            return load_dataset(src, field=field, sample=sample, seed=seed, progress=meter)
        finally:
            if meter is not None:
                meter.close()

    for i, src in enumerate(inputs):
        if i == 0 and is_report_of_balance(Path(src)):
            pair = load_balance_datasets(src, field=field, sample=sample, seed=seed)
            datasets += pair
            for ds in pair:
                log(f"loaded {ds.name}: {ds.n:,} texts from field {ds.field!r}")
            continue
        try:
            ds = load(src, field)
        except InputError as e:
            if i == 0 or not field or "has no field" not in str(e):
                raise
            ds = load(src, None)
            ds.notes.append(f"no field {field!r}: compared on its field {ds.field!r}")
        if i > 0 and is_run_dir(Path(inputs[0])) and Path(src).resolve() == (Path(inputs[0]) / BASELINE).resolve():
            ds.role = "baseline"  # the run's baseline, named as a comparison
        datasets.append(ds)
        log(f"loaded {ds.name}: {ds.n:,} texts from field {ds.field!r}" + (f" (sample of {ds.n_before_sample:,})" if ds.sampled else ""))
        if i == 0 and ds.kind == "run":
            base = baseline_of(Path(src), inputs)
            if base is not None:
                b = load(base, ds.field)
                b.name, b.role = "baseline (no tree)", "baseline"
                datasets.append(b)
                log(f"loaded the run's baseline: {b.n:,} texts from field {b.field!r}")
    unique_names(datasets)
    return datasets


def baseline_of(run_dir: Path, inputs: Sequence[str]) -> Path | None:
    """The run's baseline (``treesynth baseline``), when it has rows and is not already an input."""
    from treesynth.core.baseline import baseline_dir
    from treesynth.core.rundir import DATASET, SAMPLES

    b = baseline_dir(run_dir)
    if not is_run_dir(b) or not ((b / DATASET).is_file() or (b / SAMPLES).is_file()):
        return None
    if any(Path(x).resolve() == b.resolve() for x in inputs[1:]):
        return None
    return b


def is_report_of_balance(p: Path) -> bool:
    """A balance run directory: reported as its input (before) against its output (after)."""
    return is_run_dir(p) and is_balance_run(p)


def load_dataset(
    source: str | Path, field: str | None = None, sample: int | None = None, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """One run directory or dataset file (a balance run reads as a plain run: its new rows).
    ``progress(rows read, rows in all)``: while a run's rows are read (``run_data.load_run``)."""
    p = Path(source).expanduser()
    if not p.exists():
        raise InputError(f"{str(source)!r} does not exist")
    if p.is_dir():
        if is_run_dir(p):
            ds = load_run(p, field, progress)
        else:
            raise InputError(f"{str(source)!r} is a directory but not a treesynth run (no {CONFIG})")
    else:
        ds = load_file(p, field)
    if ds.n == 0:
        what = f"no rows with text in field {ds.field!r}" if ds.n_rows else "no rows"
        raise InputError(f"{str(source)!r} has {what}: nothing to report")
    sample_rows(ds, sample, seed)
    return ds


def load_balance_datasets(source: str | Path, field: str | None = None, sample: int | None = None, seed: int = 0) -> list[Dataset]:
    """Both sides of a balance run, each sampled like ``load_dataset`` does."""
    out = []
    for ds in load_balance(Path(source).expanduser(), field):
        if ds.n == 0:
            raise InputError(f"{ds.name}: no rows with text in field {ds.field!r}: nothing to report")
        sample_rows(ds, sample, seed)
        out.append(ds)
    return out


def unique_names(datasets: list[Dataset]) -> None:
    """A second dataset called like an earlier one becomes "name (2)", and so on."""
    seen: dict[str, int] = {}
    for ds in datasets:
        k = seen.get(ds.name, 0)
        seen[ds.name] = k + 1
        if k:
            ds.name = f"{ds.name} ({k + 1})"
