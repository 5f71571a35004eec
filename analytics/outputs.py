"""What a report writes: the HTML page's path and its ``metrics.json`` beside it, the metrics document
(format ``treesynth.report/1``: every number with its n, model and seed), and the atomic writes."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from treesynth.core.rundir import METRICS, REPORT

from .errors import ReportError
from .records import num
from .results import Analysis, Maps
from .settings import EMBED_LIMIT, EXACT_NN_LIMIT, FIXED_K, NEAR_DUP

REPORT_FORMAT = "treesynth.report/1"


def default_html_path(inputs: Sequence[str]) -> Path:
    """``RUN_DIR/report.html`` for a run directory, else ``./report.html``."""
    first = Path(inputs[0])
    if first.is_dir():
        return first / REPORT
    return Path(REPORT)


def metrics_path_for(html_path: Path) -> Path:
    """``metrics.json`` beside ``report.html``; ``NAME.metrics.json`` beside ``NAME.html``."""
    stem = html_path.name[: -len(".html")] if html_path.name.endswith(".html") else html_path.name
    return html_path.with_name(METRICS if stem == Path(REPORT).stem else f"{stem}.{METRICS}")


def metrics_document(
    analyses: Sequence[Analysis], embedder: dict[str, Any], seed: int, maps: Maps, map_points: int, version: str,
    exact_nn_limit: int = EXACT_NN_LIMIT, embed_limit: int = EMBED_LIMIT,
) -> dict[str, Any]:
    """The content of ``metrics.json`` (the build adds its file name, timings and embedding runs).
    ``embedder``: the embedder's ``describe()``; ``embed_limit``: rows above which a dataset's embedding
    metrics use a sample of that many rows (0: every row is embedded)."""
    doc: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "treesynth_version": version,
        "seed": seed,
        "embedder": embedder,
        "settings": {"fixed_k": FIXED_K, "near_duplicate_threshold": NEAR_DUP, "exact_nn_limit": exact_nn_limit,
                     "map_points": map_points, "embed_limit": embed_limit},
        "datasets": [],
        "maps": {"points": len(maps.rows), "per_dataset": maps.sizes, "rows_per_dataset": maps.totals, **maps.info},
    }
    for a in analyses:
        d: dict[str, Any] = {
            "name": a.ds.name, "source": a.ds.source, "kind": a.ds.kind, "field": a.ds.field, "n": a.ds.n,
            "status": a.ds.status, "task": a.ds.task, "notes": a.ds.notes,
            "embedded": {"rows": a.n_embedded, "of": a.ds.n, "sampled": a.embed_sampled, "seed": seed},
            "metrics": a.metrics,
        }
        if a.coverage is not None:
            d["coverage"] = a.coverage
            d["leaf_sizes"] = a.leaf_sizes
        if a.branches is not None:
            d["branches"] = a.branches
            d["branch_similarity"] = {"labels": a.branch_names, "matrix": a.branch_matrix}
        d["most_similar_pairs"] = a.pairs
        if a.ds.quality is not None:
            d["quality"] = a.ds.quality.numbers
        doc["datasets"].append(d)
    return doc


def dumps(doc: Any) -> bytes:
    """``doc`` as indented JSON (numpy values and paths too)."""
    import orjson

    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.floating,)):
        return num(o)
    if isinstance(o, np.integer):
        return int(o)
    raise TypeError(type(o).__name__)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all (a temporary file, then a rename); ReportError if it cannot."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise ReportError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
