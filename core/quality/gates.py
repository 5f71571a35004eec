"""The quality gates a new row passes before it counts: validators (in code), semantic dedup (an
embedding index), then, when asked for, the judge (a model). ``QualityGates`` is what the engine is
given; it holds the gates, keeps the cumulative counts the ``Quality`` event carries, and writes
what each gate turned away to ``rejected.jsonl`` (the report shows it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import events as ev
from ..validators import Validator, split_valid

if TYPE_CHECKING:  # built by core/quality/setup.py; the index library loads only when dedup is on
    from .dedup import SemanticDedup
    from .embedder import RowEmbedder
    from .judge import Judge

Sample = dict[str, str]


@dataclass
class QualityCounts:
    validator_rejected: int = 0
    near_duplicates: int = 0
    judged: int = 0
    passed: int = 0
    judge_rejected: int = 0

    def event(self, generated: int = 0, in_gates: int = 0) -> ev.Quality:
        return ev.Quality(
            validator_rejected=self.validator_rejected, near_duplicates=self.near_duplicates, judged=self.judged,
            passed=self.passed, judge_rejected=self.judge_rejected, generated=generated, in_gates=in_gates,
        )

    @classmethod
    def recovered(cls, rejected: Sequence[dict[str, Any]], verdicts: dict[str, bool]) -> QualityCounts:
        c = cls()
        for r in rejected:
            gate = r.get("gate")
            if gate == "validator":
                c.validator_rejected += 1
            elif gate == "near_duplicate":
                c.near_duplicates += 1
        c.judged = len(verdicts)
        c.passed = sum(1 for ok in verdicts.values() if ok)
        c.judge_rejected = c.judged - c.passed
        return c


@dataclass
class QualityGates:
    validators: tuple[Validator, ...] = ()
    dedup: SemanticDedup | None = None
    embedder: RowEmbedder | None = None  # what makes dedup's vectors
    judge: Judge | None = None
    counts: QualityCounts = field(default_factory=QualityCounts)

    @property
    def active(self) -> bool:
        return bool(self.validators or self.dedup or self.judge)

    def validate(self, leaf_id: str, slot: int, path: list[dict[str, str]], samples: list[Sample]) -> tuple[list[Sample], list[dict[str, Any]]]:
        """(samples passing every validator, rejected.jsonl lines for the others)."""
        good, bad = split_valid(samples, self.validators)
        self.counts.validator_rejected += len(bad)
        return good, [
            {"gate": "validator", "leaf_id": leaf_id, "slot": slot, "path": path, "sample": s, "detail": "; ".join(f)} for s, f in bad
        ]

    def close(self) -> None:
        if self.dedup is not None:
            self.dedup.close()


def near_duplicate_records(
    leaf_id: str, slot: int, path: list[dict[str, str]], samples: list[Sample], sims: Sequence[float]
) -> list[dict[str, Any]]:
    return [
        {"gate": "near_duplicate", "leaf_id": leaf_id, "slot": slot, "path": path, "sample": s, "detail": f"cosine {float(m):.3f} to an accepted row"}
        for s, m in zip(samples, sims, strict=True)
    ]
