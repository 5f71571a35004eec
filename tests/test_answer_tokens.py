"""A generation call asks for at most the tokens its rows can need (core/schemas.py ``samples_max_tokens``), so a small
model that runs away stops near where a full answer would, not at --max-tokens."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

from tests.fakes import ScriptedTransport
from treesynth.core.config import build_config
from treesynth.core.run import Run
from treesynth.core.schemas import chars_per_token, samples_max_tokens


def _answer_chars(n: int, limits: dict[str, int]) -> int:
    """The characters of a real answer of n samples, every field at its limit, pretty-printed (indent 2)."""
    samples = [{f: "x" * chars for f, chars in limits.items()} for _ in range(n)]
    return len(json.dumps({"samples": samples}, indent=2))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 12])
@pytest.mark.parametrize("limits", [{"text": 1200}, {"question": 1200, "answer": 1200}, {"q": 40, "a": 300, "explanation": 700}])
def test_the_cap_holds_a_full_answer_at_four_characters_a_token(n, limits):
    t = samples_max_tokens(n, limits, cap=10**6)
    assert t >= _answer_chars(n, limits) / 3  # room for a full answer at 3 characters a token (English writes ~4)
    assert t <= _answer_chars(n, limits) / 3 + 200  # and not much more: a runaway answer ends near a full one


def test_the_cap_grows_with_rows_and_fields_and_never_passes_max_tokens():
    limits = {"question": 1200, "answer": 1200}
    assert samples_max_tokens(1, limits, cap=1500) < samples_max_tokens(2, limits, cap=1500) <= 1500
    assert samples_max_tokens(1, {"question": 1200}, cap=10**6) < samples_max_tokens(1, limits, cap=10**6)
    assert samples_max_tokens(5, limits, cap=1500) == 1500
    assert samples_max_tokens(1, {"q": 100}, cap=16) == 16
    assert samples_max_tokens(1, {"q": 100}, cap=10**6, per_token=1.0) > 2 * samples_max_tokens(1, {"q": 100}, cap=10**6)
    assert samples_max_tokens(0, limits, cap=700) == 700 and samples_max_tokens(3, {}, cap=700) == 700


def test_chars_per_token_is_conservative_outside_english():
    assert chars_per_token("GSM8K-style math word problems with worked answers") == 3.0
    assert chars_per_token("Problèmes de mathématiques") == 2.0
    assert chars_per_token("小学数学应用题") == 1.0 and chars_per_token("Задачи по математике") == 1.0


@dataclass
class _Recording(ScriptedTransport):
    asked: list = field(default_factory=list)  # (slot step, rows asked, max_tokens)

    async def __call__(self, req):
        if req.schema_name == "samples":
            self.asked.append((req.slot.split(":")[1], req.schema["properties"]["samples"]["maxItems"], req.max_tokens))
        return await super().__call__(req)


def test_generation_calls_ask_for_what_their_rows_can_need(tmp_path):
    cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "depth": 1, "size": 7, "pivots": 4,
                              "samples_per_call": 3, "max_field_chars": 200, "max_tokens": 1500,
                              "validators": [{"field": "answer", "kind": "max_chars", "value": 100}]})
    t = _Recording()
    fin = asyncio.run(Run.create(cfg, tmp_path / "r", transport=t).execute(lambda e: None))
    assert fin.status == "complete"
    gen = {(n, mt) for step, n, mt in t.asked if step == "gen"}
    assert gen and all(mt == samples_max_tokens(n, {"question": 200, "answer": 100}, 1500) < 1500 for n, mt in gen)
    assert len({mt for _, mt in gen}) == len({n for n, _ in gen})  # fewer rows asked, fewer tokens
    assert all(mt == 1500 for step, _, mt in t.asked if step == "pivots")  # tree steps keep --max-tokens
