"""The quality gates of a run, as the report shows them: what the judge passed (overall, per leaf, per
top-level branch), which constraints it found broken most often, what the validators, the
near-duplicate filter and the judge turned away, a few of the rows they turned away, and whether the
dataset's diversity numbers deserve a caveat.

Inputs: ``verdicts.jsonl`` (one judge verdict per line; a re-judged row's last line wins) and
``rejected.jsonl`` (one row a gate turned away per line), both read with ``core.jsonl`` so a torn last
line (a crash mid-write) is skipped, plus the run's config (which gates were on) and the ids of the
rows the run stored (samples.jsonl holds rows before their verdict: the loader leaves out those the
judge failed, as the run's own dataset does). Older runs and dataset files have neither file:
``quality_of_run`` gives None and the report has no quality section.

Plain functions over records, returning plain dicts (JSON-ready: they go to ``metrics.json`` as
they are) and the ``RunQuality`` that holds them. Every string from a row, a verdict or a rejection is
untrusted LLM output: nothing here escapes it; the page's template does."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treesynth.core.jsonl import read_records
from treesynth.core.rundir import REJECTED, VERDICTS

from .dataset import TreeInfo
from .records import rec

GATES = ("validator", "near_duplicate", "judge")  # in the order a new row meets them
GATE_NAMES = {"validator": "validators", "near_duplicate": "near-duplicate filter", "judge": "judge"}
CAVEAT_BELOW = 0.5  # judge pass rate under this, or gates turning away more than 1 - this: a caveat
EXAMPLES_PER_GATE = 3
EXAMPLE_CHARS = 300  # per field of a rejected sample, and per reason
PATH_SEP = " › "


@dataclass
class RunQuality:
    """One run's quality numbers (``numbers``: what ``metrics.json`` stores under "quality") and a few
    rejected rows per gate for the page (``examples``: untrusted text, clipped, never escaped here)."""

    numbers: dict[str, Any]
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failed_ids: frozenset[str] = frozenset()  # rows whose last verdict failed: not part of the run's dataset

    @property
    def caveat(self) -> str | None:
        return self.numbers.get("caveat")


# ---------------------------------------------------------------------------
# reading


def read_verdicts(path: Path) -> list[dict[str, Any]]:
    """The judge verdicts of ``path``, one per row id (a re-judged row: its last verdict), in the
    order each id first appeared; lines without an id are kept as they come. A torn last line and
    damaged lines are skipped; a missing file gives []."""
    by_id: dict[str, dict[str, Any]] = {}
    anonymous: list[dict[str, Any]] = []
    for v in read_records(Path(path)):
        rid = v.get("id")
        if isinstance(rid, str) and rid:
            by_id[rid] = v  # insertion order is kept by the first occurrence
        else:
            anonymous.append(v)
    return [*by_id.values(), *anonymous]


def read_rejected(path: Path) -> list[dict[str, Any]]:
    """The rows a gate turned away, in file order (a torn last line skipped; a missing file gives [])."""
    return list(read_records(Path(path)))


# ---------------------------------------------------------------------------
# labels


def _text(v: Any) -> str:
    return v if isinstance(v, str) else "" if v is None else str(v)


def step_label(step: Any) -> str:
    """One path step or constraint as "dimension = value"."""
    if isinstance(step, Mapping):
        return f"{_text(step.get('dimension'))} = {_text(step.get('value'))}"
    return _text(step)


def path_label(steps: Any) -> str:
    """A root-to-leaf path ([{dimension, value}, ...]) as "dim = value › dim = value"."""
    if not isinstance(steps, list):
        return ""
    return PATH_SEP.join(step_label(s) for s in steps)


def tree_path_label(tree: TreeInfo | None, node_id: str) -> str | None:
    """The tree's labels from the top-level branch down to ``node_id``, or None when the tree does not
    have the node (a pruned one, or no tree)."""
    if tree is None or node_id not in tree.parent:
        return None
    labels: list[str] = []
    n: str | None = node_id
    while n is not None and tree.parent.get(n) is not None:
        labels.append(tree.label.get(n, n))
        n = tree.parent.get(n)
    return PATH_SEP.join(reversed(labels)) or tree.label.get(node_id, node_id)


def _leaf_of(v: Mapping[str, Any]) -> str:
    lid = v.get("leaf_id")
    if isinstance(lid, str) and lid:
        return lid
    rid = v.get("id")
    return rid.split("/", 1)[0] if isinstance(rid, str) and rid else "?"


def _branch_of_leaf(leaf_id: str) -> str:
    parts = leaf_id.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else leaf_id


def _passed(v: Mapping[str, Any]) -> bool:
    return v.get("pass") is True


def _rate(passed: int, judged: int) -> float | None:
    return passed / judged if judged else None


# ---------------------------------------------------------------------------
# the judge


def judge_summary(verdicts: Sequence[Mapping[str, Any]], tree: TreeInfo | None = None) -> dict[str, Any]:
    """The judge's numbers from its verdicts (one per row, as ``read_verdicts`` gives them):

    ``judged``, ``passed``, ``failed``, ``pass_rate`` (None when nothing was judged); ``leaves`` and
    ``branches``: {leaf_id | branch, path | branch label, judged, passed, rate}, worst rate first
    (then most judged); ``failed_constraints``: {constraint: "dimension = value", failed, judged, rate
    (failed ÷ judged)}, most failed first, only those that failed at least once; ``not_fits_task`` and
    ``incomplete``: verdicts with fits_task / complete false; ``models``: the judges that gave them.

    A leaf's path is the tree's (when ``tree`` has the leaf) or the verdict's constraints; a branch is
    the tree's top-level node above the leaf, or the first constraint."""
    leaves: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    leaf_path: dict[str, str] = {}
    branches: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    cons: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # constraint -> [failed, judged]
    models: Counter[str] = Counter()
    passed = not_fits = incomplete = 0
    for v in verdicts:
        ok = _passed(v)
        passed += ok
        lid = _leaf_of(v)
        constraints = [c for c in v.get("constraints") or [] if isinstance(c, Mapping)]
        if lid not in leaf_path:
            leaf_path[lid] = tree_path_label(tree, lid) or path_label(constraints) or lid
        leaves[lid][0] += 1
        leaves[lid][1] += ok
        branch = tree_path_label(tree, _branch_of_leaf(lid)) if tree is not None else None
        if branch is None:
            branch = step_label(constraints[0]) if constraints else _branch_of_leaf(lid)
        branches[branch][0] += 1
        branches[branch][1] += ok
        for c in constraints:
            key = step_label(c)
            cons[key][1] += 1
            cons[key][0] += c.get("ok") is False
        not_fits += v.get("fits_task") is False
        incomplete += v.get("complete") is False
        if isinstance(v.get("judge"), str) and v["judge"]:
            models[v["judge"]] += 1
    judged = len(verdicts)

    def worst_first(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(rows, key=lambda r: (r["rate"] if r["rate"] is not None else 2.0, -r["judged"], r["path" if "path" in r else "branch"]))

    leaf_rows = worst_first([{"leaf_id": lid, "path": leaf_path[lid], "judged": j, "passed": p, "rate": _rate(p, j)}
                             for lid, (j, p) in leaves.items()])
    branch_rows = worst_first([{"branch": b, "judged": j, "passed": p, "rate": _rate(p, j)} for b, (j, p) in branches.items()])
    failed_cons = sorted(
        ({"constraint": k, "failed": f, "judged": j, "rate": f / j} for k, (f, j) in cons.items() if f),
        key=lambda r: (-r["failed"], -r["rate"], r["constraint"]),
    )
    return {
        "judged": judged, "passed": passed, "failed": judged - passed, "pass_rate": _rate(passed, judged),
        "not_fits_task": not_fits, "incomplete": incomplete, "failed_constraints": failed_cons,
        "leaves": leaf_rows, "branches": branch_rows, "models": [m for m, _ in models.most_common()],
    }


# ---------------------------------------------------------------------------
# the gates


def validator_checks(detail: Any) -> list[str]:
    """The individual failed checks of a validator rejection's detail ("answer: does not match ...;
    answer: too short" -> two checks)."""
    return [c.strip() for c in _text(detail).split("; ") if c.strip()]


def failed_ids(verdicts: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The ids of rows whose (last) verdict failed."""
    return frozenset(v["id"] for v in verdicts if isinstance(v.get("id"), str) and not _passed(v))


def gate_summary(rejected: Iterable[Mapping[str, Any]], verdicts: Sequence[Mapping[str, Any]], row_ids: Sequence[Any]) -> dict[str, Any]:
    """What each gate turned away, out of every row generated: the rows of the data (``row_ids``: the
    ids of the rows read, rows the judge failed included: samples.jsonl holds rows before their
    verdict) plus every row turned away before it was stored.

    The judge turned away a row when its last verdict failed, or when ``rejected.jsonl`` says so and
    no later verdict passed it, each row id once. Returns ``turned_away`` {gate: rows}, ``share``
    {gate: rows ÷ generated}, ``generated``, ``accepted`` (rows of the data the judge did not fail),
    ``turned_away_total``, ``turned_away_share``, ``validator_checks`` [{check, count}] (a row failing
    two checks counts under both) and ``failed_rows_in_data``: rows read whose last verdict failed."""
    ids = list(row_ids)
    in_data = {i for i in ids if isinstance(i, str)}
    last = {v["id"]: _passed(v) for v in verdicts if isinstance(v.get("id"), str)}
    failed = {rid for rid, ok in last.items() if not ok}
    counts: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    judge_ids = set(failed)
    judge_anonymous = 0
    for r in rejected:
        gate = r.get("gate")
        if gate == "judge":
            rid = r.get("id")
            if isinstance(rid, str) and rid:
                if last.get(rid) is not True and (rid in failed or rid not in in_data):
                    judge_ids.add(rid)
            else:
                judge_anonymous += 1
            continue
        if not isinstance(gate, str) or not gate:
            gate = "unknown"
        counts[gate] += 1
        if gate == "validator":
            checks.update(validator_checks(r.get("detail")))
    counts["judge"] = len(judge_ids) + judge_anonymous
    for g in GATES:
        counts.setdefault(g, 0)
    failed_in_data = sum(1 for i in ids if i in failed)
    accepted = len(ids) - failed_in_data
    total = sum(counts.values())
    generated = accepted + total
    return {
        "generated": generated, "accepted": accepted, "turned_away": dict(counts), "turned_away_total": total,
        "turned_away_share": total / generated if generated else None,
        "share": {g: (n / generated if generated else None) for g, n in counts.items()},
        "validator_checks": [{"check": c, "count": n} for c, n in sorted(checks.items(), key=lambda kv: (-kv[1], kv[0]))],
        "failed_rows_in_data": failed_in_data,
    }


def _clip(s: Any, n: int) -> str:
    s = " ".join(_text(s).split())
    return s if len(s) <= n else s[: n - 1].rstrip() + "…"


def rejected_examples(rejected: Iterable[Mapping[str, Any]], per_gate: int = EXAMPLES_PER_GATE, chars: int = EXAMPLE_CHARS) -> dict[str, list[dict[str, Any]]]:
    """The first ``per_gate`` rows each gate turned away (judge: each row id once): {gate: [{path,
    detail, fields: [(field, text)]}]}, texts clipped to ``chars``. Untrusted text, not escaped."""
    out: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for r in rejected:
        gate = r.get("gate") if isinstance(r.get("gate"), str) and r.get("gate") else "unknown"
        rows = out.setdefault(gate, [])
        if len(rows) >= per_gate:
            continue
        rid = r.get("id")
        if gate == "judge" and isinstance(rid, str):
            if rid in seen:
                continue
            seen.add(rid)
        sample = r.get("sample")
        fields = [(_text(k), _clip(v, chars)) for k, v in sample.items()] if isinstance(sample, Mapping) else []
        rows.append({"path": path_label(r.get("path")) or _text(r.get("leaf_id")), "detail": _clip(r.get("detail"), chars),
                     "fields": fields})
    return {g: rows for g, rows in out.items() if rows}


# ---------------------------------------------------------------------------
# settings, caveat, the whole


def validator_label(v: Mapping[str, Any]) -> str:
    """A configured validator as its failures are labelled in ``rejected.jsonl`` (core's own label), so
    the settings read like the checks that failed; a config this version cannot read is shown as given."""
    from pydantic import ValidationError

    from treesynth.core.validators import Validator

    try:
        return Validator(**dict(v)).label
    except (ValidationError, TypeError):
        return f"{_text(v.get('field'))}: {_text(v.get('kind'))} {_text(v.get('value'))}".strip()


def gate_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Which gates the run's config turned on: judge, judge_model, dedup_threshold, validators (their labels)."""
    vals = [validator_label(v) for v in config.get("validators") or [] if isinstance(v, Mapping)]
    thr = config.get("dedup_threshold")
    return {
        "judge": bool(config.get("judge")),
        "judge_model": config.get("judge_model") if isinstance(config.get("judge_model"), str) else None,
        "dedup_threshold": thr if isinstance(thr, (int, float)) and not isinstance(thr, bool) else None,
        "validators": vals,
    }


def pct(x: float) -> str:
    """A share as a percentage: whole when it is close to whole, else one decimal (49.6% is not "50%")."""
    p = 100 * x
    return f"{p:.0f}%" if abs(p - round(p)) < 0.05 else f"{p:.1f}%"


def caveat(judge: Mapping[str, Any] | None, gates: Mapping[str, Any] | None) -> str | None:
    """The warning to put beside a dataset's diversity numbers when most of its rows failed the gates:
    the judge passed under half of what it judged, or the gates turned away over half of what was
    generated. None otherwise (and when nothing was judged or generated)."""
    why = []
    rate = judge.get("pass_rate") if judge else None
    if rate is not None and rate < CAVEAT_BELOW:
        why.append(f"judge pass rate {pct(rate)}")
    share = gates.get("turned_away_share") if gates else None
    if share is not None and share > 1 - CAVEAT_BELOW:
        why.append(f"the gates turned away {pct(share)} of {gates['generated']:,} generated rows")
    if not why:
        return None
    return f"Most rows failed the quality gates ({'; '.join(why)}): diversity computed on them measures noise, not useful variety."


def quality_summary(
    verdicts: Sequence[Mapping[str, Any]], rejected: Sequence[Mapping[str, Any]], row_ids: Sequence[Any],
    config: Mapping[str, Any] | None = None, tree: TreeInfo | None = None,
) -> RunQuality:
    """Every quality number of one run (``numbers``: settings, judge, gates, caveat, how many verdicts
    and rejection records were read), its examples of rejected rows and the ids the judge failed.
    ``row_ids``: the ids of the rows the run stored (``gate_summary``)."""
    judge = judge_summary(verdicts, tree) if verdicts else None
    gates = gate_summary(rejected, verdicts, row_ids)
    numbers: dict[str, Any] = {
        "settings": gate_settings(config or {}),
        "judge": judge,
        "gates": gates,
        "caveat": caveat(judge, gates),
        "verdicts": len(verdicts),
        "rejected_records": len(rejected),
    }
    return RunQuality(numbers=numbers, examples=rejected_examples(rejected), failed_ids=failed_ids(verdicts))


def quality_of_run(root: Path, config: Mapping[str, Any], row_ids: Sequence[Any], tree: TreeInfo | None = None) -> RunQuality | None:
    """The quality numbers of the run at ``root`` that stored the rows with ``row_ids`` (its dataset.jsonl,
    or the samples.jsonl written so far, rows the judge failed included); None when no quality gate ran (no
    verdicts, no rejected rows, no gate in the config: an older run)."""
    root = Path(root)
    vpath, rpath = root / VERDICTS, root / REJECTED
    settings = gate_settings(config)
    any_gate = settings["judge"] or settings["dedup_threshold"] is not None or settings["validators"]
    if not (vpath.is_file() or rpath.is_file() or any_gate):
        return None
    verdicts, rejected = read_verdicts(vpath), read_rejected(rpath)
    return quality_summary(verdicts, rejected, row_ids, config, tree)


def quality_records(q: RunQuality, seed: int) -> dict[str, dict[str, Any]]:
    """The summary table's metric records of a run's quality: the judge's pass rate and the share of
    generated rows the gates turned away (``records.rec``; lexical-style, no model)."""
    out: dict[str, dict[str, Any]] = {}
    judge, gates = q.numbers.get("judge"), q.numbers["gates"]
    if judge and judge["judged"]:
        out["judge_pass_rate"] = rec(judge["pass_rate"], judge["judged"], None, seed, passed=judge["passed"])
    if gates["generated"]:
        out["gate_rejection_rate"] = rec(gates["turned_away_share"], gates["generated"], None, seed, turned_away=gates["turned_away_total"])
    return out
