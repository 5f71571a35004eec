"""An OpenAI-compatible server that answers at once with varied, human text: the benchmarks' stand-in
for a fast API (not a test fake: nothing here is asserted on).

Every protocol step is answered as tests/fake_provider.py answers it (pivots, criterion, values,
verdicts), except the rows: each sample's fields are made of sentences of GSM8K problems
(``../shared/data/gsm8k``, MIT): the question of one problem with a sentence of another
before its last one, and that problem's worked answer. GSM8K holds 8,792 problems; these
combinations make millions of distinct, natural rows whose nearest-neighbour similarities look like
human data (a stub's "question number 3-2" rows are all near-duplicates of each other).

``POST /v1/embeddings`` answers at once too (an instant embedding endpoint): a vector per text made
of hashed word and word-pair features projected to 384 dimensions (texts that share most words are
close, as with a sentence embedder; computed in microseconds). It reports ``usage.prompt_tokens``.

    python benchmarks/instant_server.py --port 8700        # serves until killed; prints "ready <url>"
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fake_provider import Call, FakeProvider  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "gsm8k"
DIM = 384
FAKE = FakeProvider(dimension="aspect at depth {depth}", pivot="{field} number {tag}-{i} at depth {depth}")
_SENT = re.compile(r"(?<=[.!?])\s+")


def load_problems(data: Path = DATA) -> list[tuple[list[str], str]]:
    out = []
    for name in ("train.jsonl", "test.jsonl"):
        with open(data / name, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                out.append(([s for s in _SENT.split(r["question"].strip()) if s], r["answer"]))
    return out


class Rows:
    """Distinct natural rows, deterministic by a counter."""

    def __init__(self, problems: list[tuple[list[str], str]]) -> None:
        self.problems = problems
        self.sentences = [s for q, _ in problems for s in q[:-1]] or [q[0] for q, _ in problems]

    def row(self, n: int, fields: list[str]) -> dict[str, str]:
        rng = random.Random(n)
        q, a = self.problems[rng.randrange(len(self.problems))]
        extra = self.sentences[rng.randrange(len(self.sentences))]
        question = " ".join([*q[:-1], extra, q[-1]])
        vals = {"question": question, "answer": a}
        return {f: vals.get(f, question if i == 0 else a) for i, f in enumerate(fields)}


_TOKEN = re.compile(r"\w+")


def _feature(token: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)


class HashEmbedder:
    def __init__(self) -> None:
        self.cache: dict[str, np.ndarray] = {}
        self.shared = _feature("\0shared")

    def vec(self, token: str) -> np.ndarray:
        v = self.cache.get(token)
        if v is None:
            v = self.cache[token] = _feature(token)
        return v

    def embed(self, text: str) -> list[float]:
        words = [w.lower() for w in _TOKEN.findall(text)] or ["\0empty"]
        feats = words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]
        x = np.sum([self.vec(t) for t in feats], axis=0) / np.sqrt(len(feats)) + 2.0 * self.shared
        return (x / np.linalg.norm(x)).tolist()


def make_app(rows: Rows) -> web.Application:
    counter = {"calls": 0, "rows": 0, "embeds": 0}
    hasher = HashEmbedder()

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "instant", "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        call = Call.from_openai(body)
        counter["calls"] += 1
        if call.step == "samples":
            items = ((call.schema or {}).get("properties") or {}).get("samples", {})
            n = items.get("minItems", items.get("maxItems", 1))
            fields = list((items.get("items") or {}).get("properties") or {}) or ["text"]
            answer = {"samples": [rows.row(counter["rows"] + i, fields) for i in range(n)]}
            counter["rows"] += n
        else:
            answer = FAKE.answer(call, tag=counter["calls"])
        content = json.dumps(answer)
        return web.json_response({
            "id": f"c{counter['calls']}", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 60, "completion_tokens": len(content) // 4, "total_tokens": 60 + len(content) // 4},
        })

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        counter["embeds"] += len(texts)
        data = [{"object": "embedding", "index": i, "embedding": hasher.embed(t)} for i, t in enumerate(texts)]
        tokens = sum(len(t) // 4 + 1 for t in texts)
        return web.json_response({"object": "list", "data": data, "model": body.get("model"),
                                  "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes([web.get("/v1/models", models), web.post("/v1/chat/completions", chat), web.post("/v1/embeddings", embeddings)])
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8700)
    args = ap.parse_args()
    app = make_app(Rows(load_problems()))
    print(f"ready http://127.0.0.1:{args.port}/v1", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, backlog=2048)


if __name__ == "__main__":
    main()
