"""An OpenAI-compatible server that answers at once with varied, human text: the benchmarks' stand-in
for a fast API (not a test fake: nothing here is asserted on).

Every protocol step is answered as tests/fake_provider.py answers it (pivots, criterion, values,
verdicts), except the rows: each sample's fields are made of parts of GSM8K problems (``../shared/data/gsm8k``,
MIT; ``Rows``). GSM8K holds 8,792 problems; these combinations make millions of distinct, natural
rows (a stub's "question number 3-2" rows are all near-duplicates of each other).

``POST /v1/embeddings`` answers at once too (an instant embedding endpoint): a vector per text made
of hashed word and word-pair features projected to 384 dimensions (texts that share most words are
close, as with a sentence embedder; computed in microseconds). It reports ``usage.prompt_tokens``.

    python benchmarks/instant_server.py --port 8700 [--precompute 120000]   # serves until killed; prints "ready <url>"
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

import numpy as np
import orjson
from aiohttp import web
from pybase64 import b64encode

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
    """Distinct natural rows, deterministic by a counter: a question made of an opening sentence, a middle
    sentence and a closing question of three problems, and a worked answer made of the first lines of one
    answer and the last lines of another (every part human-written; two rows share at most a part)."""

    def __init__(self, problems: list[tuple[list[str], str]]) -> None:
        self.openings = [q[0] for q, _ in problems if len(q) > 1]
        self.middles = [s for q, _ in problems for s in q[1:-1]] or self.openings
        self.questions = [q[-1] for q, _ in problems]
        answers = [a.split("\n") for _, a in problems]
        self.heads = ["\n".join(a[: max(1, len(a) // 2)]) for a in answers]
        self.tails = ["\n".join(a[max(1, len(a) // 2):]) for a in answers if len(a) > 1]

    def row(self, n: int, fields: list[str]) -> dict[str, str]:
        rng = random.Random(n)
        pick = rng.choice
        question = " ".join([pick(self.openings), pick(self.middles), pick(self.questions)])
        answer = pick(self.heads) + "\n" + pick(self.tails)
        vals = {"question": question, "answer": answer}
        return {f: vals.get(f, question if i == 0 else answer) for i, f in enumerate(fields)}


_TOKEN = re.compile(r"\w+")


class HashEmbedder:
    """Word and word-pair features hashed into a fixed table of random vectors, summed and
    normalised: texts that share most words are close, as with a sentence embedder; a batch of 256
    rows takes a few milliseconds."""

    BUCKETS = 1 << 16
    BASE = 96  # the features live in 96 dimensions, spread to 384 by a fixed random map (4x less to gather)

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        self.table = rng.standard_normal((self.BUCKETS, self.BASE), dtype=np.float32)
        self.spread = rng.standard_normal((self.BASE, DIM), dtype=np.float32) / np.sqrt(self.BASE)
        self.shared = rng.standard_normal(self.BASE, dtype=np.float32)

    def vectors(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), self.BASE), dtype=np.float32)
        mask = self.BUCKETS - 1
        for k, text in enumerate(texts):
            words = _TOKEN.findall(text.lower()) or ["\0empty"]
            ids = [hash(w) & mask for w in words]  # str hashes: fixed by PYTHONHASHSEED (bench_gates sets 0)
            ids += [hash(ab) & mask for ab in zip(words, words[1:], strict=False)]
            out[k] = self.table[ids].sum(axis=0) / np.sqrt(len(ids)) + 0.5 * self.shared
        V = out @ self.spread
        return V / np.linalg.norm(V, axis=1, keepdims=True)


def plain(row: dict[str, str]) -> str:
    """A row's text as treesynth embeds it (core/text.py sample_plain_text)."""
    return " ".join(" ".join(v.split()) for v in row.values())


class Precomputed:
    """The first ``n`` rows the server will write, as JSON, and their vectors, computed before it listens,
    so that its answers cost a lookup: an instant endpoint whose work shares as little as it can of this
    machine's two cores with the run being measured (a remote API's would share none). Other rows are made,
    and other texts embedded, on demand. A text is found by its first ``KEY_CHARS`` characters: the run may
    have cut a long field at its length limit."""

    KEY_CHARS = 200

    def __init__(self, rows: Rows, hasher: HashEmbedder, n: int, fields: list[str]) -> None:
        self.fields = list(fields)
        self.index: dict[str, int] = {}
        self.json: list[bytes] = []  # row i as JSON (the rows of a ``fields`` answer)
        self.V = np.zeros((n, DIM), dtype=np.float16)
        for a in range(0, n, 4096):
            made = [rows.row(i, self.fields) for i in range(a, min(n, a + 4096))]
            texts = [plain(r) for r in made]
            self.json += [orjson.dumps(r) for r in made]
            self.V[a : a + len(texts)] = hasher.vectors(texts)
            for j, t in enumerate(texts):
                self.index[t[: self.KEY_CHARS]] = a + j

    def samples(self, rows: Rows, first: int, n: int, fields: list[str]) -> bytes:
        """``{"samples": [...]}`` of rows ``first`` .. ``first + n - 1`` as JSON (``Rows.row``'s, made once)."""
        if fields == self.fields and first + n <= len(self.json):
            return b'{"samples":[%s]}' % b",".join(self.json[first : first + n])
        return orjson.dumps({"samples": [rows.row(first + i, fields) for i in range(n)]})

    def vectors(self, texts: list[str], hasher: HashEmbedder) -> np.ndarray:
        found = [self.index.get(t[: self.KEY_CHARS]) for t in texts]
        if None not in found:  # the usual answer, every text precomputed: one gather (assigning rows by a list costs ~1 us a row)
            return self.V[np.asarray(found, dtype=np.int64)].astype(np.float32)
        out = np.empty((len(texts), DIM), dtype=np.float32)
        hit = [k for k, i in enumerate(found) if i is not None]
        miss = [k for k, i in enumerate(found) if i is None]
        if hit:
            out[hit] = self.V[[found[k] for k in hit]]
        if miss:
            out[miss] = hasher.vectors([texts[k] for k in miss])
        return out


def make_app(rows: Rows, precompute: int = 0, fields: tuple[str, ...] = ("question", "answer")) -> web.Application:
    counter = {"calls": 0, "rows": 0, "embeds": 0}
    hasher = HashEmbedder()
    pre = Precomputed(rows, hasher, precompute, list(fields)) if precompute else None

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "instant", "object": "model"}]})

    async def chat(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        call = Call.from_openai(body)
        counter["calls"] += 1
        if call.step == "samples":
            items = ((call.schema or {}).get("properties") or {}).get("samples", {})
            n = items.get("minItems", items.get("maxItems", 1))
            fields = list((items.get("items") or {}).get("properties") or {}) or ["text"]
            if pre is not None:
                content = pre.samples(rows, counter["rows"], n, fields).decode()
            else:
                content = orjson.dumps({"samples": [rows.row(counter["rows"] + i, fields) for i in range(n)]}).decode()
            counter["rows"] += n
        else:
            content = json.dumps(FAKE.answer(call, tag=counter["calls"]))
        out = orjson.dumps({
            "id": f"c{counter['calls']}", "object": "chat.completion", "created": int(time.time()), "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 60, "completion_tokens": len(content) // 4, "total_tokens": 60 + len(content) // 4},
        })
        return web.Response(body=out, content_type="application/json")

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json(loads=orjson.loads)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        counter["embeds"] += len(texts)
        V = pre.vectors(texts, hasher) if pre is not None else hasher.vectors(texts)
        tokens = sum(len(t) // 4 + 1 for t in texts)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        if body.get("encoding_format") == "base64" and len(V):
            # the answer's bytes put together directly (one base64 encode of every row: 384 float32 are 2,048
            # characters, no padding), so that the endpoint's own CPU stays small beside the run's
            A = np.ascontiguousarray(V, dtype="<f4")
            if A.shape[1] * 4 % 3 == 0:
                raw = b64encode(A.tobytes())
                w = len(raw) // len(A)
                rows = [raw[i * w : (i + 1) * w] for i in range(len(A))]
            else:  # rows that pad: one encode each
                rows = [b64encode(a.tobytes()) for a in A]
            items = b",".join(b'{"object":"embedding","index":%d,"embedding":"%s"}' % (i, r) for i, r in enumerate(rows))
            out = b'{"object":"list","data":[%s],"model":%s,"usage":%s}' % (items, orjson.dumps(body.get("model")), orjson.dumps(usage))
            return web.Response(body=out, content_type="application/json")
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(V)]
        out_doc = {"object": "list", "data": data, "model": body.get("model"), "usage": usage}
        return web.Response(body=orjson.dumps(out_doc, option=orjson.OPT_SERIALIZE_NUMPY), content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.add_routes([web.get("/v1/models", models), web.post("/v1/chat/completions", chat), web.post("/v1/embeddings", embeddings)])
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8700)
    ap.add_argument("--precompute", type=int, default=0, help="embed the first N rows before listening (question,answer rows)")
    args = ap.parse_args()
    app = make_app(Rows(load_problems()), args.precompute)
    print(f"ready http://127.0.0.1:{args.port}/v1", flush=True)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None, backlog=2048)


if __name__ == "__main__":
    main()
