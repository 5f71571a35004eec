"""Validators: checks a preset or config declares per field, run in code on every new row before it
is stored (and before any judge sees it). A row that fails one is turned away and its leaf writes
another. The first quality gate (core/quality/gates.py); it sits below the config, which declares them.
Pure functions; LLM output is parsed here, never evaluated (``python`` parses with
``ast.parse``; ``arithmetic`` walks the parsed expression and computes only numbers and + - * /).

Kinds: ``regex`` (the field, whitespace collapsed, matches ``value`` somewhere: anchor it with ^ $),
``python`` (parses as Python), ``json`` (parses as JSON), ``min_chars`` / ``max_chars`` (length
bounds), ``arithmetic`` (every ``a op b = c`` calculation written in the field is right),
``repetition`` (at most ``value`` percent of the field's word trigrams repeat an earlier one: the
degenerate loops of a small model, "son's son's son's", a sentence said three times)."""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["regex", "python", "json", "min_chars", "max_chars", "arithmetic", "repetition"]
KINDS: tuple[str, ...] = ("regex", "python", "json", "min_chars", "max_chars", "arithmetic", "repetition")


class Validator(BaseModel):
    """One check on one field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="The field the check reads.")
    kind: Kind
    value: str | int | None = Field(default=None, description="regex: the pattern; min_chars/max_chars: the bound.")
    name: str | None = Field(default=None, description="What a failure says (default: made from the kind).")

    @model_validator(mode="after")
    def _value(self) -> Validator:
        if self.kind == "regex":
            if not isinstance(self.value, str) or not self.value:
                raise ValueError(f"validator on {self.field!r}: kind regex needs a pattern as value")
            try:
                re.compile(self.value)
            except re.error as e:
                raise ValueError(f"validator on {self.field!r}: invalid regular expression ({e})") from None
        elif self.kind in ("min_chars", "max_chars"):
            if type(self.value) is not int or self.value < 0:
                raise ValueError(f"validator on {self.field!r}: kind {self.kind} needs a whole number >= 0 as value")
        elif self.kind == "repetition":
            if type(self.value) is not int or not 0 <= self.value <= 100:
                raise ValueError(f"validator on {self.field!r}: kind repetition needs a percentage (0-100) as value")
        elif self.value is not None:
            raise ValueError(f"validator on {self.field!r}: kind {self.kind} takes no value")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return f"{self.field}: {self.name}"
        what = {
            "regex": f"does not match {self.value}",
            "python": "is not valid Python",
            "json": "is not valid JSON",
            "min_chars": f"shorter than {self.value} characters",
            "max_chars": f"longer than {self.value} characters",
            "arithmetic": "has a wrong calculation",
            "repetition": f"repeats itself (over {self.value}% of its word trigrams)",
        }[self.kind]
        return f"{self.field}: {what}"


@lru_cache(maxsize=256)
def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _python_ok(text: str) -> bool:
    try:
        ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def _json_ok(text: str) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


# ---- arithmetic: "3 * 12 = 36", "40 - 28 = 12", "$5 x 4 = $20", "1,200 / 4 = 300"
_NUM = r"\$?-?(?:\d[\d,]*(?:\.\d+)?|\.\d+)%?"
# A calculation starts where no number, operator or word runs into it ("1 1/2 / 1/2", "60g * 4/5" are
# not read from the middle) and its result is a whole number (not "3/4", "3 1/2" or "240g"). Each stretch of
# spaces and brackets is matched by one part of the pattern only: with a ``[\s)]*`` after each term as well
# as the ``[\s()]*`` before the next operator, a long sum without "=" ("2 + 2 + ... + 2 + #### 8", a small
# model's loop) had 2^terms ways to fail, and one answer held the event loop for 20+ minutes.
_EXPR = re.compile(
    rf"(?<![\w.,/$])(?<![-+*/×÷]\s)(?<!\d\s)((?:\(\s*)*{_NUM}(?:[\s()]*[-+*/x×÷][\s()]*(?:{_NUM}))+[\s)]*)=\s*\$?({_NUM})(?![\w/]|\.\d|\s\d+/)"
)
_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}


def _number(tok: str) -> float:
    return float(tok.replace("$", "").replace(",", "").rstrip("%"))


def _eval(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return float(_OPS[type(node.op)](_eval(node.left), _eval(node.right)))
    raise ValueError("not arithmetic")


def wrong_calculations(text: str, limit: int = 50) -> list[str]:
    """The ``a op b = c`` calculations in ``text`` whose result is wrong (at most ``limit`` checked).
    Percent signs and money are read as plain numbers; a calculation that cannot be read is skipped."""
    wrong: list[str] = []
    for i, m in enumerate(_EXPR.finditer(text)):
        if i >= limit:
            break
        left, right = m.group(1), m.group(2)
        if "%" in left or "%" in right:
            continue  # "20% of 50 = 10" style: not a plain expression
        expr = re.sub(r"[x×]", "*", left.replace("÷", "/"))
        expr = re.sub(_NUM, lambda t: repr(_number(t.group(0))), expr)
        if len(expr) > 200:
            continue
        try:
            got = _eval(ast.parse(expr.strip(), mode="eval"))
            want = _number(right)
        except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
            continue
        if abs(got - want) > 1e-6 * max(1.0, abs(want)) and abs(round(got, 2) - want) > 1e-9:
            wrong.append(" ".join(m.group(0).split()))
    return wrong


def repetition_share(text: str) -> float:
    """The share of the text's word trigrams that repeat an earlier one (0 for texts under 8 words)."""
    w = text.lower().split()
    tri = list(zip(w, w[1:], w[2:], strict=False))
    if len(tri) < 6:
        return 0.0
    return (len(tri) - len(set(tri))) / len(tri)


def check(validator: Validator, text: str) -> bool:
    """Whether ``text`` (one field of a row) passes ``validator``."""
    k = validator.kind
    if k == "regex":
        return _rx(str(validator.value)).search(" ".join(text.split())) is not None
    if k == "python":
        return _python_ok(text)
    if k == "json":
        return _json_ok(text)
    if k == "min_chars":
        return len(text.strip()) >= int(validator.value or 0)
    if k == "max_chars":
        return len(text.strip()) <= int(validator.value or 0)
    if k == "repetition":
        return repetition_share(text) * 100 <= int(validator.value or 0)
    return not wrong_calculations(text)


def failures(sample: dict[str, str], validators: Sequence[Validator]) -> list[str]:
    """What ``sample`` fails, one label per failed check (empty: it passes). A field the row does not
    have fails every check on it."""
    out: list[str] = []
    for v in validators:
        text = sample.get(v.field)
        if not isinstance(text, str) or not check(v, text):
            out.append(v.label)
    return out


def split_valid(
    samples: list[dict[str, str]], validators: Sequence[Validator]
) -> tuple[list[dict[str, str]], list[tuple[dict[str, str], list[str]]]]:
    """(the samples that pass every check, [(a sample that fails, its failures)])."""
    if not validators:
        return samples, []
    good: list[dict[str, str]] = []
    bad: list[tuple[dict[str, str], list[str]]] = []
    for s in samples:
        f = failures(s, validators)
        if f:
            bad.append((s, f))
        else:
            good.append(s)
    return good, bad
