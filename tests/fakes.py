"""A scripted, in-process fake provider: answers each call with valid, plausible JSON chosen by the
request's schema (tests/fake_provider.py, shared with the stub and fault servers), so whole runs
complete without any model. The slot names the node and the attempt: the labels carry the node's depth,
the samples its id, so every sample is unique.

Used by unit/resume tests and the engine benchmark. Never used by the product path.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field

from tests.fake_provider import Call, FakeProvider, PromptFacts
from treesynth.core.llm import Completion, LLMRequest


@dataclass
class ScriptedTransport:
    model: str = "fake/scripted"
    fanout: int = 3  # values per split
    supplement: int = 1  # extra values from coverage
    latency: float = 0.0
    fields: tuple[str, ...] = ("question", "answer")  # for a request without a schema
    duplicate_every: int = 0  # every k-th generated sample repeats an earlier one
    calls: Counter = field(default_factory=Counter)  # calls per slot step ("criterion", "gen", "judge", ...)
    overrides: dict = field(default_factory=dict)  # slot step -> list of raw answers to return first
    cost: float = 0.0  # USD per call
    slow_prefix: str | None = None  # calls for nodes under this id take slow_latency more
    slow_latency: float = 0.0
    judge_fails: tuple[str, ...] = ()  # the judge fails a row whose text holds one of these
    judged: Counter = field(default_factory=Counter)  # row text (first field) -> times the judge saw it

    def provider(self) -> FakeProvider:
        return FakeProvider(
            fanout=self.fanout, supplement=self.supplement, fields=self.fields, judge_fails=self.judge_fails,
            dimension="setting {depth}", value="d{depth} value {j}", extra="d{depth} extra {j}",
            pivot="pivot {node} #{idx}.{i} {field}", sample="{field} of leaf {node} slot {idx} item {i}",
        )

    async def __call__(self, req: LLMRequest) -> Completion:
        if self.latency:
            await asyncio.sleep(self.latency)
        node, step, idx = req.slot.split(":")
        if self.slow_prefix and (node == self.slow_prefix or node.startswith(self.slow_prefix + ".")):
            await asyncio.sleep(self.slow_latency)
        self.calls[step] += 1
        queue = self.overrides.get(step)
        if queue:
            text = queue.pop(0)
            return Completion(text, "stop", 10, 10, self.cost)
        call = Call.from_request(req)
        obj = self.provider().answer(call, depth=node.count("."), node=node, idx=idx)
        if call.step == "verdicts":
            for row in PromptFacts(req.messages).judged_rows():
                self.judged[row.splitlines()[0].split(": ", 1)[-1]] += 1  # the first field's text
        if call.step == "samples" and self.duplicate_every:
            obj["samples"] = [{f: f"duplicate {f}" for f in s} if (i + int(idx)) % self.duplicate_every == 0 else s
                              for i, s in enumerate(obj["samples"])]
        text = json.dumps(obj)
        return Completion(text, "stop", len(req.messages[-1]["content"]) // 4, len(text) // 4, self.cost)


def hash_embedder(texts: list[str], dim: int = 64):
    """A deterministic bag-of-words embedding (hashing trick), L2-normalised. For tests only."""
    import hashlib as _h

    import numpy as np

    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in str(t).lower().split():
            out[i, int.from_bytes(_h.blake2b(w.encode(), digest_size=4).digest(), "little") % dim] += 1.0
        out[i, 0] += 1e-3
    return out / np.linalg.norm(out, axis=1, keepdims=True)


# ---- GSM8K-like text: one topic of GSM8K sentences per top-level branch (reports and their benchmark)

GSM_TOPICS = [
    r"\$|dollar|cost|price|pay|sell|buy|earn",
    r"hour|minute|day|week|month|year",
    r"mile|km|meter|feet|inch|speed|distance",
    r"percent|%|half|third|quarter|fraction",
]


def sentence_pools(lines: list[str], k: int = len(GSM_TOPICS)) -> list[tuple[list[str], list[str]]]:
    """(statements, questions) per topic, from GSM8K questions split into sentences."""
    pools = [([], []) for _ in range(k)]
    for q in lines:
        topic = next((i for i, rx in enumerate(GSM_TOPICS[:k]) if re.search(rx, q, re.I)), zlib.crc32(q.encode()) % k)  # stable across processes (str hash is salted)
        for s in re.split(r"(?<=[.?!])\s+", q.strip()):
            if len(s) > 12:
                pools[topic][1 if s.endswith("?") else 0].append(s)
    return [(st or ["Sam has 3 pens."], qs or ["How many are left?"]) for st, qs in pools]
