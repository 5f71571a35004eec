"""The dataset card: a Hugging Face ``README.md`` (YAML metadata, then Markdown) describing a run's
dataset: task, model, date, size, the tree's top-level branches with their row counts, the diversity
metrics of the report, and the quality gates' results. Pure: the facts come in, the text goes out.

Tree values and the task are model or user text: in the Markdown they are escaped (no HTML, no table
breaks); in the YAML they are JSON strings (valid YAML). The license is left for the user to set."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Branch:
    dimension: str
    value: str
    rows: int
    leaves: int


@dataclass(frozen=True)
class CardFacts:
    task: str
    model: str
    created: str  # ISO date
    rows: int
    fields: tuple[str, ...]
    prompt_fields: tuple[str, ...] = ()
    response_fields: tuple[str, ...] = ()
    leaves: int = 0
    depth: int = 0
    branches: tuple[Branch, ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)  # the report's metrics.json datasets[0].metrics, when there is one
    quality: dict[str, Any] = field(default_factory=dict)  # QualityCounts as a dict, when any gate ran
    preset: str | None = None
    version: str = ""
    data_files: str = "data/*.parquet"
    taxonomy: str | None = None  # the tree as a taxonomy file (`treesynth tree RUN --format yaml`), shipped as tree.yaml


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M")):
        if n < limit:
            return name
    return "10M<n<100M"


def md(text: Any, limit: int = 120) -> str:
    """Untrusted text for one Markdown table cell or line: HTML escaped, no pipes or newlines, bounded."""
    s = " ".join(str(text).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return html.escape(s, quote=False).replace("|", "\\|").replace("`", "\\`").replace("*", "\\*").replace("_", "\\_")


def _y(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def dataset_card(f: CardFacts) -> str:
    lines = [
        "---",
        "# The data's license is yours to set: https://huggingface.co/docs/hub/repositories-licenses",
        "license: unknown",
        "language:",
        "- en",
        "task_categories:",
        "- text-generation",
        "size_categories:",
        f"- {size_category(f.rows)}",
        "tags:",
        "- synthetic",
        "- treesynth",
        f"pretty_name: {_y(html.escape(' '.join(f.task.split())[:80], quote=False))}",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        f"    path: {_y(f.data_files)}",
        "---",
        "",
        f"# {md(f.task, 200)}",
        "",
        f"Synthetic data made with [treesynth](https://arxiv.org/abs/2503.17195){' ' + md(f.version) if f.version else ''}: "
        "a model partitioned the task's data space into a tree of attribute values, and rows were written in each leaf "
        "conditioned on its root-to-leaf path.",
        "",
        "| | |",
        "|---|---|",
        f"| Task | {md(f.task, 300)} |",
        f"| Model | `{md(f.model)}` |",
        f"| Created | {md(f.created)} |",
        f"| Rows | {f.rows:,} |",
        f"| Fields | {', '.join(md(x) for x in f.fields)} |",
    ]
    if f.prompt_fields and f.response_fields:
        lines.append(f"| Prompt / response | {', '.join(map(md, f.prompt_fields))} / {', '.join(map(md, f.response_fields))} |")
    if f.preset:
        lines.append(f"| Preset | {md(f.preset)} |")
    if f.leaves:
        lines.append(f"| Tree | {f.leaves:,} leaves, depth {f.depth} |")
    lines += ["", "Each row carries `path`, the root-to-leaf attribute values it was written for, and `leaf_id`.", ""]
    if f.branches:
        lines += ["## The tree's top-level branches", "", f"Split on **{md(f.branches[0].dimension)}**.", "",
                  "| Value | Rows | Share | Leaves |", "|---|---:|---:|---:|"]
        total = sum(b.rows for b in f.branches) or 1
        for b in f.branches:
            lines.append(f"| {md(b.value)} | {b.rows:,} | {100 * b.rows / total:.1f}% | {b.leaves:,} |")
        lines.append("")
    lines += _taxonomy(f.taxonomy)
    lines += _metrics(f.metrics)
    lines += _quality(f.quality)
    lines += [
        "## Limitations",
        "",
        "The rows were written by a model and are only as correct as that model: check them before training on them. "
        "Diversity figures describe the embedding space of the rows, not their correctness.",
        "",
    ]
    return "\n".join(lines)


TAXONOMY_LINES = 300  # the most of the tree file the card shows; the file itself has all of it


def _taxonomy(text: str | None) -> list[str]:
    """The tree file in a fenced block (a fence longer than any run of backticks in the model's text, so the
    text cannot end it), cut at ``TAXONOMY_LINES``."""
    if not text:
        return []
    lines = text.rstrip("\n").split("\n")
    cut = len(lines) > TAXONOMY_LINES
    body = "\n".join(lines[:TAXONOMY_LINES])
    longest = max((len(m) for m in __import__("re").findall(r"`+", body)), default=0)
    fence = "`" * max(3, longest + 1)
    out = ["## The tree", "",
           "The tree the rows were written in, as a taxonomy file (`tree.yaml` beside this card): edit it and make more rows "
           "over it with `treesynth run --tree-from tree.yaml`.", "", fence + "yaml", body, fence, ""]
    if cut:
        out.insert(-1, f"… {len(lines) - TAXONOMY_LINES:,} more lines in `tree.yaml`.")
    return out


_METRICS = (
    ("mean_cosine_similarity", "Mean pairwise cosine similarity (lower: more diverse)"),
    ("vendi_score", "Vendi score (higher: more diverse)"),
    ("mean_nn_distance", "Mean nearest-neighbour cosine distance (higher: more diverse)"),
    ("near_duplicate_rate", "Near-duplicate rate (lower: fewer near-copies)"),
    ("distinct_2", "Distinct 2-grams (higher: more varied wording)"),
)


def _value(v: Any) -> float | None:
    """A metric from metrics.json: a number, or a record with its ``value``."""
    if isinstance(v, dict):
        v = v.get("value")
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _metrics(m: dict[str, Any]) -> list[str]:
    """``m``: one dataset's ``metrics`` from the report's metrics.json."""
    rows = [(label, _value(m.get(k))) for k, label in _METRICS]
    rows = [(label, v) for label, v in rows if v is not None]
    if not rows:
        return []
    out = ["## Diversity (from `treesynth report`)", "", "| Metric | Value |", "|---|---:|"]
    out += [f"| {label} | {v:.4g} |" for label, v in rows]
    rec = m.get("mean_cosine_similarity")
    if isinstance(rec, dict) and isinstance(rec.get("sample_of"), int) and isinstance(rec.get("n"), int):
        out += ["", f"The embedding metrics (similarity, Vendi, nearest neighbours, near-duplicates) were computed on a uniform "
                    f"random sample of {rec['n']:,} of the {rec['sample_of']:,} rows."]
    return [*out, ""]


def _quality(q: dict[str, Any]) -> list[str]:
    if not q or not any(q.get(k) for k in ("judged", "validator_rejected", "near_duplicates")):
        return []
    out = ["## Quality gates", "", "| | |", "|---|---:|"]
    if q.get("judged"):
        share = 100 * q.get("passed", 0) / q["judged"]
        out.append(f"| Judged by the model, passed | {q.get('passed', 0):,} of {q['judged']:,} ({share:.1f}%) |")
    out.append(f"| Rows turned away by validators | {q.get('validator_rejected', 0):,} |")
    out.append(f"| Near-duplicates turned away | {q.get('near_duplicates', 0):,} |")
    out.append("")
    out.append("Every row turned away was written again, so the dataset holds only rows that passed.")
    return [*out, ""]
