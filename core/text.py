"""Small pure text helpers: normalisation, duplicate keys, slugs, lone surrogates."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections.abc import Sequence

_WS = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(s: str) -> str:
    """Replace lone UTF-16 surrogates (a provider's JSON can carry them as escapes): they cannot be
    written as UTF-8, so one would crash the cache or the journal."""
    if s.isascii() or not _LONE_SURROGATE.search(s):
        return s
    return s.encode("utf-8", "replace").decode("utf-8")


def normalise(text: str) -> str:
    """Case-fold, NFKC, collapse whitespace, strip punctuation at the ends."""
    t = unicodedata.normalize("NFKC", str(text)).casefold()
    t = _WS.sub(" ", t).strip()
    return _EDGE_PUNCT.sub("", t)


@functools.lru_cache(maxsize=8192)  # a row's fields are squashed for its key, then again for its embedded text
def squash(s: str) -> str:
    """``" ".join(s.split())``: every run of whitespace one space, none at the ends. Most generated text needs
    at most its line breaks made spaces, which is checked and done without splitting it into words (2.5x
    faster on GSM8K's questions and answers; a gated run does this four times a row: benchmarks/README.md).
    ``isprintable`` is false for every character ``split`` takes for whitespace except the space (all are
    control characters or Unicode separators), so a printable text without doubled or edge spaces is done.
    The most recent results are kept: the same field's text comes back for the row's embedded text."""
    t = s.replace("\n", " ")
    if "  " not in t and t.isprintable() and not t.startswith(" ") and not t.endswith(" "):
        return t
    return " ".join(s.split())


def sample_key(sample: dict[str, str], fields: tuple[str, ...] | list[str]) -> int:
    """64-bit key of a sample's normalised text, used to find exact duplicates (after normalisation)."""
    joined = "\x1f".join([squash(str(sample.get(f, ""))).casefold() for f in fields])
    return int.from_bytes(hashlib.blake2b(joined.encode("utf-8"), digest_size=8).digest(), "little")


def identity_fields(fields: Sequence[str], prompt_fields: Sequence[str] = ()) -> tuple[str, ...]:
    """The fields that make a row what it is, for dedup: the prompt fields when the preset or config
    declares some that the row has (two rows with one question and two answers are one problem, twice),
    else every field."""
    fields, prompt = tuple(fields), tuple(prompt_fields)
    if prompt and set(prompt) < set(fields):
        return prompt
    return fields


def slugify(text: str, max_len: int = 40) -> str:
    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    t = re.sub(r"[^a-z0-9]+", "-", t).strip("-")
    return (t[:max_len].rstrip("-")) or "run"


def truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(0, n - 1)] + "…"


def sample_plain_text(sample: object, fields: Sequence[str] | None = None) -> str:
    """A sample's field values joined, without field names (what an embedding should see); ``fields``:
    those fields only, in that order (a stored row also holds its id, path and key)."""
    if isinstance(sample, dict):  # lists, not generators: join takes them without a step a value (100k rows a run)
        if fields is None:
            return " ".join([squash(str(v)) for v in sample.values()])
        return " ".join([squash(str(sample.get(f, ""))) for f in fields])
    return squash(str(sample))


def _trigrams(text: str) -> set[tuple[str, ...]]:
    w = ["0" if x.isdigit() else x for x in re.findall(r"\w+", text.casefold())]  # numbers changed: still a copy
    return {tuple(w[i:i + 3]) for i in range(len(w) - 2)} or ({tuple(w)} if w else set())


def copies_example(text: str, examples: list[str], threshold: float = 0.3) -> bool:
    """Whether ``text`` copies one of ``examples`` (word-trigram Jaccard similarity >= threshold). Small
    models copy the examples a prompt shows them; such a copy is not a new sample."""
    t = _trigrams(text)
    if not t:
        return False
    for e in examples:
        g = _trigrams(e)
        if g and len(t & g) / len(t | g) >= threshold:
            return True
    return False
