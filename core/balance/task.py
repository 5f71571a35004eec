"""The task sentence of a dataset that came without one: inferred by one LLM call from a sample of its
rows, repaired when the model only describes the file format, or a plain fallback."""

from __future__ import annotations

import random
import re
from typing import Any

from ..clusters import STOP_WORDS
from ..config import RunConfig, build_config
from ..llm import LLMClient, LLMRequest, close_transport, make_local_transport
from ..parsing import ParseError, parse_json
from ..prompts import Prompts
from .data import Data

# words that describe a file's format (and filler), not what its rows are about
_FORMAT_WORDS = frozenset("""json jsonl ndjson csv tsv parquet data dataset datasets file files format formatted
row rows record records entry entries object objects item items array arrays list lists table tables column columns
field fields key keys value values string strings structured sample samples example examples line lines document documents
contains containing holds holding consists consisting collection set and the for are was has not all per via like kind kinds
type types describe describes described describing given each""".split())
_FORMAT_PAREN = re.compile(r"\s*[(\[][^()\[\]]*\b(?:json|jsonl|csv|parquet|data|format)\b[^()\[\]]*[)\]]", re.I)
_TASK_SCHEMA = {"type": "object", "properties": {"task": {"type": "string", "minLength": 10, "maxLength": 300}}, "required": ["task"]}


async def infer_task(data: Data, flags: dict[str, Any], transport: Any = None, n: int = 8, seed: int = 0) -> str:
    """One LLM call: a one-sentence task description from a sample of the rows."""
    cfg = build_config(flags={**flags, "task": "(inferring the task)", "fields": ",".join(data.fields)})
    own = transport is None
    client = LLMClient(transport or make_local_transport(cfg), concurrency=1, max_retries=cfg.max_retries)
    try:
        return await _infer_task(client, cfg, data, n, seed)
    finally:
        if own:
            await close_transport(client.transport)


async def _infer_task(client: LLMClient, cfg: RunConfig, data: Data, n: int, seed: int) -> str:
    prompts = Prompts(cfg)
    rng = random.Random(seed)
    examples = [data.sample(i) for i in sorted(rng.sample(range(len(data)), min(n, len(data))))]
    for attempt in range(3):
        c = await client.complete(
            LLMRequest(prompts.infer_task(examples), slot=f"task:infer:{attempt}", schema=_TASK_SCHEMA, schema_name="task", temperature=0.3, max_tokens=200, seed=seed + attempt)
        )
        try:
            task = parse_json(c.text).get("task", "")
        except (ParseError, AttributeError):
            continue
        repaired = repair_task(" ".join(str(task).split()), data)
        if repaired is not None:
            return repaired
    return fallback_task(data)


def repair_task(task: str, data: Data) -> str | None:
    """An inferred task, or None when it only describes the data's format (the embedded model answers
    'question (JSON data)'): a format note in brackets is dropped, and what is left must name at least two
    words that are neither format words nor the data's column names."""
    task = _FORMAT_PAREN.sub("", task).strip(" .,;:-")
    if not 10 <= len(task) <= 300:
        return None
    columns = {c.lower() for c in (*data.fields, data.field, *(data.rows[0].keys() if data.rows else ()))}
    words = [w for w in re.findall(r"[a-z][a-z'-]+", task.lower()) if len(w) > 2]
    content = [w for w in words if w not in STOP_WORDS and w not in _FORMAT_WORDS and w not in columns]
    return task if len(content) >= 2 else None


def fallback_task(data: Data) -> str:
    """The task used when none can be inferred (``treesynth balance`` says so and suggests --task)."""
    return f"Rows like those in the '{data.field}' column of this dataset"
