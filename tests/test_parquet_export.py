"""The Parquet export streams the JSONL in chunks (bounded memory at a million rows) and keeps every
column and type when later rows differ from the first chunk's."""

from __future__ import annotations

import json

import polars as pl
import pytest

from treesynth.core import export


@pytest.mark.parametrize(
    "rows",
    [
        [{"id": str(i), "q": f"t{i}", "path": [{"dimension": "a", "value": str(i)}]} for i in range(10)],
        [{"id": str(i), "q": f"t{i}"} for i in range(5)] + [{"id": "x", "q": "y", "extra": 1}],  # a new column later
        [{"id": str(i), "q": f"t{i}", "n": i} for i in range(5)] + [{"id": "x", "q": "y"}],  # a column missing later
        [{"id": str(i), "n": i} for i in range(5)] + [{"id": "x", "n": "str"}],  # another type later
        [{"id": str(i), "j": None} for i in range(4)] + [{"id": "x", "j": {"pass": True}}],  # null first, a value later
    ],
)
def test_chunked_parquet_equals_the_whole_file_read_at_once(tmp_path, monkeypatch, rows):
    monkeypatch.setattr(export, "PARQUET_CHUNK_ROWS", 3)
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    export.write_parquet(src, tmp_path / "d.parquet")
    got = pl.read_parquet(tmp_path / "d.parquet")
    want = pl.read_ndjson(src, infer_schema_length=None)
    assert got.shape == want.shape and set(got.columns) == set(want.columns)
    assert got.select(want.columns).to_dicts() == want.to_dicts()
    assert not list(tmp_path.glob(".d.parquet.tmp*"))


def test_the_polars_warm_up_is_not_a_daemon_thread():
    """A daemon thread killed mid-import at interpreter exit keeps the import lock; litellm's client
    finaliser then imports a module and the exit hangs for ever (a run failing at once on a 401)."""
    from treesynth.core.export import warm_up

    t = warm_up(delay_s=60)
    try:
        assert not t.daemon and t.is_alive()
    finally:
        t.cancel()
        t.join(5)
    assert not t.is_alive()
