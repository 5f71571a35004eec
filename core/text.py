"""Small pure text helpers: normalisation, duplicate keys, slugs."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WS = re.compile(r"\s+")
_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)


def normalise(text: str) -> str:
    """Case-fold, NFKC, collapse whitespace, strip punctuation at the ends."""
    t = unicodedata.normalize("NFKC", str(text)).casefold()
    t = _WS.sub(" ", t).strip()
    return _EDGE_PUNCT.sub("", t)


def sample_key(sample: dict[str, str], fields: tuple[str, ...] | list[str]) -> int:
    """64-bit key of a sample's normalised text, used to find exact duplicates (after normalisation)."""
    joined = "\x1f".join(" ".join(str(sample.get(f, "")).split()).casefold() for f in fields)
    return int.from_bytes(hashlib.blake2b(joined.encode("utf-8"), digest_size=8).digest(), "little")


def slugify(text: str, max_len: int = 40) -> str:
    t = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    t = re.sub(r"[^a-z0-9]+", "-", t).strip("-")
    return (t[:max_len].rstrip("-")) or "run"


def truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: max(0, n - 1)] + "…"


def sample_plain_text(sample: object) -> str:
    """A sample's field values joined, without field names (what an embedding should see)."""
    if isinstance(sample, dict):
        return " ".join(" ".join(str(v).split()) for v in sample.values())
    return " ".join(str(sample).split())
