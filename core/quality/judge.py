"""The judge: a model reads a leaf's rows with the task and the leaf's root-to-leaf path and gives a
verdict per row (core/quality/verdicts.py). Rows go several to a call (structured output, the schema
fixing how many verdicts and constraint answers); an invalid answer is asked again with the error fed
back; rows it never answers validly fail (they are written again, never kept unchecked). Calls go
through an ``LLMClient``, so they are cached (a resumed run asks nothing twice), budgeted and counted
like every other call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import JudgeError
from ..ids import derive_seed
from ..llm import PRIORITY_JUDGE, LLMClient, LLMRequest
from ..parsing import ParseError, parse_answer
from ..prompts import Prompts
from .verdicts import Verdict, constraint_texts, failed_verdict, judge_looks_broken, judge_schema, parse_verdicts

JUDGE_TEMPERATURE = 0.0
JUDGE_MAX_TOKENS_PER_ROW = 160


class Judge:
    def __init__(
        self, client: LLMClient, prompts: Prompts, fields: tuple[str, ...], model: str, batch: int, retries: int, seed: int,
        on_invalid: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.prompts = prompts
        self.fields = fields
        self.model = model
        self.batch = max(1, batch)
        self.retries = retries
        self.seed = seed
        self.on_invalid = on_invalid or (lambda why: None)
        self.judged = 0  # rows judged in this process, and how many passed (the sanity check)
        self.passed = 0

    async def judge(self, leaf: str, slot: int, path: list[dict[str, str]], rows: list[dict[str, Any]]) -> list[Verdict]:
        """A verdict per row, in order: the rows of generation call ``slot`` of ``leaf`` (its slot id,
        with the revision), which name the calls (and their cache keys)."""
        chunks = [rows[i : i + self.batch] for i in range(0, len(rows), self.batch)]
        parts = await asyncio.gather(*(self._judge_chunk(leaf, f"{slot}.{k}", path, c) for k, c in enumerate(chunks)))
        verdicts = [v for part in parts for v in part]
        self.judged += len(verdicts)
        self.passed += sum(v.passed for v in verdicts)
        if judge_looks_broken(self.judged, self.passed):
            raise JudgeError(
                f"the judge ({self.model}) passed {self.passed} of the {self.judged} rows it checked: it is too weak or "
                "miscalibrated for this task, and every rejected row would be rewritten again; resume with another "
                "--judge-model, or without --judge"
            )
        return verdicts

    async def _judge_chunk(self, leaf: str, tag: str, path: list[dict[str, str]], rows: list[dict[str, Any]]) -> list[Verdict]:
        constraints = constraint_texts(path)
        shown = [{f: str(r.get(f, "")) for f in self.fields} for r in rows]
        base = self.prompts.judge(constraints, shown)
        schema = judge_schema(len(rows), len(constraints))
        messages = base
        err = "no answer"
        for attempt in range(self.retries + 1):
            req = LLMRequest(
                messages=messages, slot=f"{leaf}:judge:{tag}.{attempt}", schema=schema, schema_name="verdicts",
                temperature=JUDGE_TEMPERATURE if attempt == 0 else 0.3 * attempt,
                max_tokens=60 + JUDGE_MAX_TOKENS_PER_ROW * len(rows) * max(1, len(constraints)),
                seed=derive_seed(self.seed, leaf, "judge", tag, attempt), priority=PRIORITY_JUDGE,
            )
            c = await self.client.complete(req)
            try:
                if c.finish_reason == "length":
                    raise ParseError("the answer was cut off before it ended; keep each reason to a few words")
                return parse_verdicts(parse_answer(c.text), len(rows), len(constraints))
            except ParseError as e:
                err = str(e)
                if not c.cached:
                    self.client.usage.invalid += 1
                self.on_invalid(err)
                messages = self.prompts.retry(base, c.text or "", err)
        return [failed_verdict(len(constraints), f"the judge gave no valid verdict ({err})") for _ in rows]
