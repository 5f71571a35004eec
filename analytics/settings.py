"""The report's fixed sizes and thresholds: every metric is computed with these, and ``metrics.json``
records them under ``settings`` (the page reads them back from there)."""

from __future__ import annotations

FIXED_K = 1000  # rows in the fixed-size samples (Vendi@k, NN@k, lexical)
NEAR_DUP = 0.95  # cosine threshold for near-duplicates
EXACT_NN_LIMIT = 100_000  # above this many rows, nearest neighbours by sampled exact search
# Above this many rows a dataset's embedding metrics (and its maps) use a seeded uniform random sample of
# this many rows; counts, duplicates, lengths, leaf coverage counts and quality stay exact over all rows.
# ``--embed-sample N`` changes it (0: embed every row).
EMBED_LIMIT = 10_000
TOP_PAIRS = 10  # most similar pairs listed per dataset
DEFAULT_MAP_POINTS = 10_000
MAX_MAP_POINTS = 50_000
