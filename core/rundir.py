"""A run directory's layout, named once: every file a run, a balance run or a report writes there,
and where a new run goes by default. Readers and writers import the names from here."""

from __future__ import annotations

import time
from pathlib import Path

from .text import slugify

CONFIG = "config.json"
STATE = "state.json"
JOURNAL = "nodes.jsonl"
SNAPSHOT = "tree.json"
EVENTS = "events.jsonl"
SAMPLES = "samples.jsonl"
SLOTS = "slots.jsonl"  # generation calls that produced no row (a resumed run skips them)
CACHE = "cache.sqlite"
LOCK = ".lock"
# quality gates (core/quality): every judge verdict, every row a gate turned away, new rows' embeddings
VERDICTS = "verdicts.jsonl"
REJECTED = "rejected.jsonl"
ROW_VECTORS = "row_vectors.f16"
# a run made with --tree-from: the tree it was given, as read when it started (a resume takes it from here)
GIVEN_TREE = "given_tree.json"
DATASET = "dataset.jsonl"
DATASET_PARQUET = "dataset.parquet"
# balance runs
BALANCE = "balance.json"
ROUTES = "routes.jsonl"
PLAN = "plan.json"
EMBEDDINGS = "embeddings.npy"
BALANCED = "balanced.jsonl"
BALANCED_PARQUET = "balanced.parquet"
DROPPED_IDS = "dropped_ids.txt"
BEFORE_AFTER = "before_after.csv"
BALANCE_SUMMARY = "balance_summary.json"
# the plain-sampling baseline of a run (treesynth baseline): a run directory of its own inside the run's
BASELINE = "baseline"
# reports
REPORT = "report.html"
METRICS = "metrics.json"
# exports (treesynth export): each format's default destination, and the rows of a run with no dataset yet
EXPORTS = {"jsonl": "export.jsonl", "parquet": "export.parquet", "hf": "hf_dataset", "chat": "export.chat.jsonl", "alpaca": "export.alpaca.jsonl"}
EXPORT_SOURCE = ".export.jsonl"


def default_out(task: str, prefix: str = "") -> Path:
    """``runs/<prefix><slug of task>-<timestamp>``: a new run's directory when none is given."""
    return Path("runs") / f"{prefix}{slugify(task)}-{time.strftime('%Y%m%d-%H%M%S')}"
