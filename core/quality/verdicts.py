"""The judge's answer: its JSON schema and its parsing into verdicts. Pure functions.

One verdict per row, in the order the rows were given: which of the leaf's path constraints the row
satisfies, whether it fits the task, whether it is complete and self-consistent, and a short reason.
A row passes when every answer is yes. Judge output is untrusted text: anything that is not exactly
one verdict per row, each with one answer per constraint, is a ``ParseError`` (the call is asked
again with the error fed back)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..parsing import ParseError

REASON_MAX = 160
#: a judge that has passed fewer than this share of the first ``JUDGE_SANITY_ROWS`` rows it checked
#: (in one process) stops the run: rewriting would go on without end (judge_looks_broken)
JUDGE_SANITY_ROWS = 30
JUDGE_SANITY_PASS = 0.1
_TRUE = {"true", "yes", "y", "1", "pass", "ok"}
_FALSE = {"false", "no", "n", "0", "fail"}


@dataclass(frozen=True)
class Verdict:
    constraints: tuple[bool, ...]  # one per root-to-leaf path step, in order
    fits_task: bool
    complete: bool
    reason: str

    @property
    def passed(self) -> bool:
        return self.fits_task and self.complete and all(self.constraints)

    def record(self, row_id: str, leaf_id: str, path: list[dict[str, str]], judge: str) -> dict[str, Any]:
        """The line stored in verdicts.jsonl."""
        return {
            "id": row_id, "leaf_id": leaf_id, "pass": self.passed,
            "constraints": [{"dimension": p["dimension"], "value": p["value"], "ok": ok} for p, ok in zip(path, self.constraints, strict=True)],
            "fits_task": self.fits_task, "complete": self.complete, "reason": "" if self.passed else self.reason, "judge": judge,
        }

    def why(self, path: list[dict[str, str]]) -> str:
        """What failed, in words, then the judge's own reason (a small judge writes "ok" under a failing
        verdict: SmolLM2-135M behind llama-cpp-python's server), for the rejected-rows record."""
        parts = [f"breaks {p['dimension']} = {p['value']}" for p, ok in zip(path, self.constraints, strict=False) if not ok]
        if not self.fits_task:
            parts.append("off-task")
        if not self.complete:
            parts.append("incomplete")
        if self.reason:
            parts.append(f"the judge said: {self.reason}")
        return "; ".join(parts)


def failed_verdict(n_constraints: int, reason: str) -> Verdict:
    """The verdict of a row the judge gave no valid answer on: it fails (it is written again)."""
    return Verdict((False,) * n_constraints, False, False, reason[:REASON_MAX])


def judge_schema(n_rows: int, n_constraints: int) -> dict[str, Any]:
    """Exactly ``n_rows`` verdicts with exactly ``n_constraints`` booleans each, the short reason after
    them: a decoder that enforces schemas (llama.cpp, vLLM) can only write a well-formed answer."""
    props: dict[str, Any] = {}
    required: list[str] = []
    if n_constraints:
        props["constraints"] = {"type": "array", "items": {"type": "boolean"}, "minItems": n_constraints, "maxItems": n_constraints}
        required.append("constraints")
    props["fits_task"] = {"type": "boolean"}
    props["complete"] = {"type": "boolean"}
    required += ["fits_task", "complete"]
    # the reason last: a grammar writes keys in schema order, and a small model that starts with a reason
    # talks itself into a verdict (SmolLM2-135M behind llama-cpp-python's server, reason first: 0 of 6
    # correct GSM8K rows passed; reason last: 6 of 6, while 4 of 6 planted bad rows still failed)
    props["reason"] = {"type": "string", "minLength": 1, "maxLength": REASON_MAX}
    required.append("reason")
    return {
        "type": "object",
        "properties": {
            "verdicts": {
                "type": "array", "minItems": n_rows, "maxItems": n_rows,
                "items": {"type": "object", "properties": props, "required": required, "additionalProperties": False},
            }
        },
        "required": ["verdicts"],
        "additionalProperties": False,
    }


def _bool(v: Any, what: str) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise ParseError(f"{what} must be true or false, not {str(v)[:40]!r}")


def parse_verdicts(obj: Any, n_rows: int, n_constraints: int) -> list[Verdict]:
    """The verdicts in a parsed judge answer ({"verdicts": [...]} or the bare list)."""
    items = obj.get("verdicts") if isinstance(obj, dict) else obj
    if not isinstance(items, list):
        raise ParseError('the answer must be {"verdicts": [...]}')
    if len(items) != n_rows:
        raise ParseError(f"give exactly {n_rows} verdicts, one per row in order (got {len(items)})")
    out: list[Verdict] = []
    for i, it in enumerate(items, 1):
        if not isinstance(it, dict):
            raise ParseError(f"verdict {i} must be an object")
        cons = it.get("constraints", [])
        if n_constraints and not isinstance(cons, list):
            raise ParseError(f"verdict {i}: constraints must be a list of {n_constraints} true/false values")
        if not isinstance(cons, list) or len(cons) != n_constraints:
            n = len(cons) if isinstance(cons, list) else 0
            raise ParseError(f"verdict {i}: give exactly {n_constraints} constraint answers (got {n})")
        for key in ("fits_task", "complete"):
            if key not in it:
                raise ParseError(f"verdict {i}: {key} is missing")
        reason = it.get("reason", "")
        reason = " ".join(str(reason).split())[:REASON_MAX] if isinstance(reason, (str, int, float)) else ""
        out.append(Verdict(
            tuple(_bool(c, f"verdict {i}: constraint {j}") for j, c in enumerate(cons, 1)),
            _bool(it["fits_task"], f"verdict {i}: fits_task"), _bool(it["complete"], f"verdict {i}: complete"), reason,
        ))
    return out


def judge_looks_broken(judged: int, passed: int, rows: int = JUDGE_SANITY_ROWS, share: float = JUDGE_SANITY_PASS) -> bool:
    """Whether a judge that passed ``passed`` of ``judged`` rows rejects nearly everything: at least
    ``rows`` judged and under ``share`` of them passed. (Measured: SmolLM2-135M behind llama-cpp-python's
    server, asked for the reason first, judged "complete: false" on 12 of 12 plain, correct word problems.)"""
    return judged >= rows and passed < share * judged


def constraint_texts(path: list[dict[str, str]]) -> list[str]:
    """The path as the judge reads it: "dimension: value" per step (a data-driven cluster step is its
    description alone)."""
    return [p["value"] if p["dimension"].startswith("embedding cluster (level ") else f"{p['dimension']}: {p['value']}" for p in path]
