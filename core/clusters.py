"""Data-driven splits: when a model gives no valid criterion, a node's texts are split by
spherical k-means on their embeddings and each cluster is named by its most distinctive words.
Pure functions over arrays and strings (the caller embeds); shared by run mode (a node's pivots)
and balance mode (a node's rows). The dimension is marked so every front end can label it."""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from .criterion import placeholder_reason
from .partition import Split, Value
from .text import normalise, sample_plain_text

if TYPE_CHECKING:
    import numpy as np

FALLBACK_DIMENSION = "embedding cluster"
STOP_WORDS = frozenset("""about above after again against also among another any because been before being between both but
could does doing down during each either every few from further have having here how however into its itself just
least less many more most much must neither once only other over same should since some such than that their
them then there these they this those through under until very were what when where which while whom whose with
within without would your you yours each one two three four five many much will shall
it's that's there's what's here's he's she's they're you're we're i'm let's don't doesn't didn't can't won't isn't
aren't wasn't weren't
able based cannot certain different entire following given like made make makes need needs take takes used using
want wants way ways whole several various well even still know find found said says get gets got""".split())


def is_fallback_dimension(dimension: str | None) -> bool:
    return dimension is not None and dimension.startswith(FALLBACK_DIMENSION + " (level ")


def fallback_k(n_rows: int, max_values: int) -> int:
    """Clusters for a fallback split: about one per 40 rows, 2 to min(6, max_values); 0 under 8 rows."""
    if n_rows < 8:
        return 0
    return int(max(2, min(6, max_values, n_rows // 40)))


def kmeans(X: np.ndarray, k: int, seed: int, iters: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means (cosine) with k-means++ seeding: (unit centroids (k, d), labels (n,)). Deterministic."""
    import numpy as np

    rng = np.random.default_rng(seed)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    n = len(Xn)
    k = min(k, n)
    first = int(rng.integers(n))
    seeds = [Xn[first]]
    d = np.maximum(0.0, 1.0 - Xn @ seeds[0])
    for _ in range(1, k):
        total = float(d.sum())
        nxt = int(rng.choice(n, p=d / total)) if total > 0 else int(rng.integers(n))
        seeds.append(Xn[nxt])
        d = np.minimum(d, np.maximum(0.0, 1.0 - Xn @ Xn[nxt]))
    C = np.stack(seeds)
    labels = np.full(n, -1)
    for _ in range(iters):
        new = np.argmax(Xn @ C.T, axis=1)
        if (new == labels).all():
            break
        labels = new
        for j in range(k):
            members = Xn[labels == j]
            if len(members):
                m = members.sum(axis=0)
                C[j] = m / max(float(np.linalg.norm(m)), 1e-12)
    return C, labels


_WORD = re.compile(r"[a-z][a-z'-]{3,}")  # a word as cluster names count it: four or more letters


def label_words(*texts: str) -> frozenset[str]:
    """The words of ``texts`` (a task, field names) in the form distinctive_words counts them, and their
    plurals: words every row of the task shares, which name no cluster ("problem", "math", "answer")."""
    ws = {w for t in texts for w in _WORD.findall(t.lower().replace("_", " "))}
    return frozenset(ws | {w + "s" for w in ws} | {w[:-1] for w in ws if w.endswith("s")})


def distinctive_words(
    texts: list[str], labels: np.ndarray, k: int, n_words: int = 3, min_count: int = 2, ignore: frozenset[str] = frozenset(),
) -> list[list[str]]:
    """Per cluster, the words whose share of the cluster's texts most exceeds their share of all texts
    (``ignore``: words that name nothing, e.g. ``label_words(task, *fields)``)."""

    docs = [set(w for w in _WORD.findall(t.lower()) if w not in STOP_WORDS and w not in ignore) for t in texts]
    overall = Counter(w for d in docs for w in d)
    n = max(1, len(docs))
    out = []
    for j in range(k):
        members = [d for d, lab in zip(docs, labels, strict=True) if lab == j]
        m = max(1, len(members))
        inside = Counter(w for d in members for w in d)
        score = {w: c / m - overall[w] / n for w, c in inside.items() if c >= min_count}
        out.append([w for w, _ in sorted(score.items(), key=lambda x: (-x[1], x[0]))[:n_words]])
    return out


def unique_names(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def cluster_names(texts: list[str], X: np.ndarray, centroids: np.ndarray, labels: np.ndarray, words: list[list[str]]) -> list[str]:
    """Unique names of clusters ``0..len(words)-1``: "about: " and their distinctive words; a cluster no word
    names (numbers, stop words, the task's own words) is named by the first words of its most typical text
    (the nearest its centroid), like "9 + 3 = 12", not "cluster 2". Every name is one the partition checks
    take, so a tree written as a taxonomy reads back (``--tree-from``)."""
    import numpy as np

    names = []
    for j, w in enumerate(words):
        members = np.flatnonzero(labels == j)
        name = f"about: {', '.join(w)}" if w else f"cluster {j + 1}"
        if not w and len(members):
            M = np.asarray(X, dtype=np.float32)[members]
            M = M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-12)
            first = texts[int(members[int(np.argmax(M @ centroids[j]))])].split()[:8]
            while first:  # fewer words until the checks take it (a phrase may end on "of" or on an ellipsis)
                like = 'like "' + " ".join(first).rstrip(" .,;:!?\u2026") + '"'
                if len(like) <= 60 and placeholder_reason(like) is None:
                    name = like
                    break
                first.pop()
        names.append(name)
    return unique_names(names)


MIN_SPLIT_PIVOTS = 4  # distinct pivots under which no split is honest, by the model or by clusters


def distinct_pivots(pivots: list[dict[str, str]]) -> int:
    """Pivots that differ once normalised (case, spacing, punctuation at the ends)."""
    return len({normalise(sample_plain_text(p)) for p in pivots})


def pivot_k(n_distinct: int, max_values: int) -> int:
    """Clusters for a node's pivots: 0 (no honest split) under ``MIN_SPLIT_PIVOTS`` distinct pivots, 2 under 9, else 3."""
    if n_distinct < MIN_SPLIT_PIVOTS:
        return 0
    return int(max(2, min(max_values, 2 if n_distinct < 9 else 3)))


def cluster_split(
    texts: list[str], X: np.ndarray, k: int, seed: int, depth: int, ignore: frozenset[str] = frozenset(),
) -> Split | None:
    """A split of ``texts`` (embedded as the rows of ``X``) into ``k`` embedding clusters named by
    their distinctive words; every text lands in exactly one value. None when fewer than two
    clusters hold texts (nothing honest to split)."""
    import numpy as np

    if k < 2 or len(texts) < 2:
        return None
    C, labels = kmeans(np.asarray(X, dtype=np.float32), k, seed)
    keep = [j for j in range(k) if (labels == j).any()]
    if len(keep) < 2:
        return None
    remap = {j: i for i, j in enumerate(keep)}
    labels = np.array([remap[int(j)] for j in labels])
    words = distinctive_words(texts, labels, len(keep), min_count=2 if len(texts) >= 30 else 1, ignore=ignore)
    groups = [tuple(int(i) for i in np.flatnonzero(labels == j)) for j in range(len(keep))]
    names = cluster_names(texts, X, C[keep], labels, words)
    return Split(dimension=f"{FALLBACK_DIMENSION} (level {depth + 1})",
                 values=tuple(Value(value=n, pivots=g, source="data") for n, g in zip(names, groups, strict=True)))
