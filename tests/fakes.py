"""A scripted, in-process fake provider: answers each protocol step with valid, plausible
JSON derived from the request's slot, so whole runs complete without any model.

Used by unit/resume tests and the engine benchmark. Never used by the product path.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field

from treesynth.core.llm import Completion, LLMRequest

_N_RE = re.compile(r"Write (\d+)")


@dataclass
class ScriptedTransport:
    model: str = "fake/scripted"
    fanout: int = 3  # values per split
    supplement: int = 1  # extra values from coverage
    latency: float = 0.0
    fields: tuple[str, ...] = ("question", "answer")
    duplicate_every: int = 0  # every k-th generated sample repeats an earlier one
    calls: Counter = field(default_factory=Counter)
    overrides: dict = field(default_factory=dict)  # step -> list of raw answers to return first
    cost: float = 0.0  # USD per call
    slow_prefix: str | None = None  # calls for nodes under this id take slow_latency more
    slow_latency: float = 0.0
    judge_fails: tuple[str, ...] = ()  # the judge fails a row whose text holds one of these
    judged: Counter = field(default_factory=Counter)  # row text (first field) -> times the judge saw it

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
        depth = node.count(".")
        n = int((_N_RE.search(req.messages[-1]["content"]) or _N_RE.search(req.messages[1]["content"])).group(1)) if step in ("pivots", "gen") else 0
        if step == "infer":
            obj = {"task": "Grade-school math word problems with worked answers"}
        elif step.startswith("route"):
            user = req.messages[1]["content"]
            n_rows = len(re.findall(r"^\[\d+\]", user, re.M))
            n_vals = len(re.findall(r"^\d+\. ", user, re.M))
            obj = {"labels": [(i % max(1, n_vals)) + 1 for i in range(n_rows)]}
        elif step == "pivots":
            obj = {"samples": [{f: f"pivot {node} #{idx}.{i} {f}" for f in self.fields} for i in range(n)]}
        elif step == "criterion":
            n_piv = len(re.findall(r"^- ", req.messages[1]["content"], re.M))
            k = max(2, min(self.fanout, n_piv))
            obj = {"dimension": f"setting {depth}", "values": [f"d{depth} value {j}" for j in range(k)]}
        elif step == "assign":
            user = req.messages[1]["content"]
            n_piv = len(re.findall(r"^\[\d+\]", user, re.M))
            values = re.findall(r'"(d\d+ value \d+)"', user)
            values = list(dict.fromkeys(values)) or ["d0 value 0"]
            obj = {str(i + 1): values[i % len(values)] for i in range(n_piv)}
        elif step == "judge":
            user = req.messages[1]["content"]
            n_cons = len(re.findall(r"^\d+\. ", user.split("Rows to check:")[0], re.M))
            blocks = re.split(r"^Row \d+:\n", user.split("Rows to check:")[1], flags=re.M)[1:]
            verdicts = []
            for b in blocks:
                text = b.split("\nFor each row")[0]
                self.judged[text.splitlines()[0].split(": ", 1)[-1]] += 1  # the first field's text
                bad = any(x in text for x in self.judge_fails)
                verdicts.append({"reason": "planted failure" if bad else "ok", "constraints": [not bad] * n_cons,
                                 "fits_task": True, "complete": True})
            obj = {"verdicts": verdicts}
        elif step == "supplement":
            obj = {"status": "complete" if self.supplement else "none", "values": [f"d{depth} extra {j}" for j in range(self.supplement)]}
        else:  # gen
            samples = []
            for i in range(n):
                if self.duplicate_every and (i + int(idx)) % self.duplicate_every == 0:
                    samples.append({f: f"duplicate {f}" for f in self.fields})
                else:
                    samples.append({f: f"{f} of leaf {node} slot {idx} item {i}" for f in self.fields})
            obj = {"samples": samples}
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
