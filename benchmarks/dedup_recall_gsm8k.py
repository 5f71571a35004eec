"""Recall of the dedup index's near-duplicate decisions against exact search, on real GSM8K vectors.

    python benchmarks/dedup_recall_gsm8k.py [--field question] [--copies 2000] [--nprobe 4 8 16]

Every GSM8K problem (train + test, 8,792) is embedded with the gates' default local embedder
(all-MiniLM-L6-v2, fp32); so are ``--copies`` near-copies made by hand-like edits of random
problems (one number changed, one name swapped, two sentences swapped, a clause dropped). The
originals are admitted in a shuffled order to ``NearDuplicateIndex`` (the product's IVF settings, cells
sized for the row count as a run of that size would size them, and HNSW for comparison), then every
copy is asked for its highest cosine to the accepted rows, by the index and by brute force. A copy
is a near-duplicate when the exact cosine is at least the threshold (0.92); recall is the share of
those the index also flags, agreement the share of all decisions that match. Results on stdout and
in benchmarks/out/dedup_recall.json.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treesynth.core.embeddings import Embedder  # noqa: E402
from treesynth.core.neardup import DEFAULT_NEAR_DUP_COSINE, NearDuplicateIndex  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "gsm8k"
NAMES = ["Maria", "John", "Aisha", "Wei", "Carlos", "Fatima", "Olga", "Kenji", "Priya", "Tom"]
_NUM = re.compile(r"\b\d+\b")
_NAME = re.compile(r"\b[A-Z][a-z]{2,}\b")


def edit(text: str, rng: random.Random) -> str:
    kind = rng.randrange(4)
    if kind == 0 and _NUM.search(text):
        nums = list(_NUM.finditer(text))
        m = rng.choice(nums)
        return text[: m.start()] + str(int(m.group()) + rng.randint(1, 9)) + text[m.end():]
    if kind == 1 and _NAME.search(text):
        name = _NAME.search(text).group()  # type: ignore[union-attr]
        return text.replace(name, rng.choice([n for n in NAMES if n != name]))
    sents = re.split(r"(?<=[.!?])\s+", text)
    if kind == 2 and len(sents) > 2:
        i = rng.randrange(len(sents) - 2)
        sents[i], sents[i + 1] = sents[i + 1], sents[i]
        return " ".join(sents)
    if len(sents) > 2:
        del sents[rng.randrange(len(sents) - 1)]
        return " ".join(sents)
    return text + " Show your work."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--field", default="question")
    ap.add_argument("--copies", type=int, default=2000)
    ap.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--threshold", type=float, default=DEFAULT_NEAR_DUP_COSINE)
    args = ap.parse_args()
    texts = []
    for name in ("train.jsonl", "test.jsonl"):
        with open(DATA / name, encoding="utf-8") as f:
            texts += [json.loads(line)[args.field] for line in f]
    rng = random.Random(0)
    copies = [edit(texts[rng.randrange(len(texts))], rng) for _ in range(args.copies)]
    emb = Embedder(None, precision="fp32")
    t0 = time.perf_counter()
    X = emb.embed(texts)
    C = emb.embed(copies)
    print(f"embedded {len(texts) + len(copies):,} texts in {time.perf_counter() - t0:.0f} s ({emb.label})", file=sys.stderr)
    order = np.random.default_rng(0).permutation(len(X))
    X = X[order]
    exact = (C @ X.T).max(axis=1)
    pos = exact >= args.threshold
    results = []
    cases = [("ivf", {"kind": "ivf", "expected_rows": len(X), "nprobe": p}) for p in args.nprobe]
    cases.append(("hnsw", {"kind": "hnsw"}))
    for name, params in cases:
        ix = NearDuplicateIndex(X.shape[1], args.threshold, **params)
        for a in range(0, len(X), 256):
            ix.add(X[a : a + 256])  # every original accepted, as a run accepts rows, 256 at a time
        got = ix.max_cosine(C)
        flag = got >= args.threshold
        r = {"index": name, "params": params, "copies": int(len(C)), "near_duplicates": int(pos.sum()),
             "recall": float((flag & pos).sum() / max(1, pos.sum())), "agree": float((flag == pos).mean()),
             "false_pos": int((flag & ~pos).sum()), "max_abs_err": float(np.abs(got - exact)[pos].max()) if pos.any() else 0.0,
             "approximate_stage_rows": int(len(X) - (ix._nbuf if ix._hnsw is not None else len(X)))}
        results.append(r)
        print(json.dumps(r), flush=True)
    print("\n| index | nprobe | copies flagged by exact search | recall | agreement | false positives |\n|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['index']} | {r['params'].get('nprobe', '-')} | {r['near_duplicates']:,} of {r['copies']:,} | {r['recall']:.4f} | {r['agree']:.4f} | {r['false_pos']} |")
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dedup_recall.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
