"""Quality gates: validators (code), semantic dedup (an embedding index), the judge (a model). Each new
row passes them before it counts; what they turn away is regenerated in its leaf and recorded."""

from ..validators import Validator, failures, split_valid, wrong_calculations
from .gates import QualityCounts, QualityGates
from .verdicts import Verdict, judge_schema, parse_verdicts

__all__ = [
    "QualityCounts", "QualityGates", "Validator", "Verdict", "failures", "judge_schema", "parse_verdicts", "split_valid",
    "wrong_calculations",
]
