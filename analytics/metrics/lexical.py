"""Lexical diversity on texts: distinct-k, bigram entropy, compression ratio (package docstring)."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

_TOKEN_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def ngrams(tokens: Sequence[str], k: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + k]) for i in range(len(tokens) - k + 1)]


def distinct_n(token_lists: Sequence[Sequence[str]], k: int) -> float:
    total = 0
    uniq: set[tuple[str, ...]] = set()
    for toks in token_lists:
        g = ngrams(toks, k)
        total += len(g)
        uniq.update(g)
    return len(uniq) / total if total else float("nan")


def ngram_entropy(token_lists: Sequence[Sequence[str]], k: int = 2) -> float:
    c: Counter = Counter()
    for toks in token_lists:
        c.update(ngrams(toks, k))
    total = sum(c.values())
    if not total:
        return float("nan")
    p = np.fromiter(c.values(), dtype=np.float64, count=len(c)) / total
    return float(-(p * np.log2(p)).sum())


def compression_ratio(texts: Sequence[str]) -> float:
    raw = "\n".join(texts).encode("utf-8")
    if not raw:
        return float("nan")
    return len(raw) / len(zlib.compress(raw, 9))


def lexical_metrics(texts: Sequence[str]) -> dict[str, float]:
    toks = [tokenize(t) for t in texts]
    return {
        "distinct_1": distinct_n(toks, 1),
        "distinct_2": distinct_n(toks, 2),
        "distinct_3": distinct_n(toks, 3),
        "bigram_entropy": ngram_entropy(toks, 2),
        "compression_ratio": compression_ratio(texts),
        "mean_tokens": float(np.mean([len(t) for t in toks])) if toks else float("nan"),
    }
