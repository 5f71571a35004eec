"""The offline embedder: the packaged model, the opt-in approximate paths (int8 ONNX, bf16) against plain fp32,
the cache. The default (fp32 on onnxruntime) against plain sentence-transformers: tests/test_embedding_precision.py."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import SHARED
from treesynth.analytics import metrics as M
from treesynth.analytics.errors import EmbedderError
from treesynth.core import embeddings as E

GSM8K_TEST = SHARED / "data" / "gsm8k" / "test.jsonl"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("TREESYNTH_CACHE_DIR", str(d))
    return d


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def test_default_model_is_found_in_its_package_without_the_hub(cache_dir):
    name, path = E.resolve_model(None)
    assert name == "all-MiniLM-L6-v2" and (path / "modules.json").is_file()
    assert E.resolve_model("sentence-transformers/all-MiniLM-L6-v2")[1] == path
    with pytest.raises(EmbedderError, match="never downloaded"):
        E.resolve_model("some-org/some-model-that-is-not-local")
    assert E.cache_root() == cache_dir


@pytest.mark.slow
def test_identical_texts_have_mean_similarity_one_and_vendi_one(cache_dir):
    X = E.Embedder(cache=False).embed(["Tom has 3 apples and eats one."] * 8)
    assert X.shape == (8, 384) and X.dtype == np.float32
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert M.mean_pairwise_cosine(X) == pytest.approx(1.0, abs=1e-6)
    assert M.vendi_score(X) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason="needs ../shared/data/gsm8k/test.jsonl")
@pytest.mark.slow
def test_bf16_fast_path_agrees_with_plain_fp32_on_gsm8k(cache_dir):
    """The fast path's claim: Spearman correlation of all pairwise similarities >= 0.95 (it is ~0.9999)."""
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[:200]]
    texts = [r["question"] for r in rows]
    plain = E.Embedder(precision="fp32", backend="torch", cache=False).encode(texts)
    fast = E.Embedder(precision="bf16", cache=False).encode(texts)
    iu = np.triu_indices(len(texts), 1)
    a, b = (plain @ plain.T)[iu], (fast @ fast.T)[iu]
    rho = _spearman(a, b)
    assert rho >= 0.95, rho
    assert rho > 0.999  # what it really is; a regression would show here first
    assert np.abs(a - b).max() < 0.05


@pytest.mark.skipif(not GSM8K_TEST.exists(), reason="needs ../shared/data/gsm8k/test.jsonl")
@pytest.mark.slow
def test_int8_onnx_path_agrees_with_plain_fp32_on_gsm8k(cache_dir):
    """The opt-in int8 backend (approximate): built once into the cache, then read from there;
    Spearman of all pairwise similarities >= 0.95 against fp32 (measured ~0.99)."""
    rows = [json.loads(line) for line in GSM8K_TEST.read_text().splitlines()[:200]]
    texts = [r["question"] for r in rows]
    plain = E.Embedder(precision="fp32", backend="torch", cache=False).encode(texts)
    e = E.Embedder(precision="int8", cache=False)
    assert e.precision == "int8" and e.label == "all-MiniLM-L6-v2 (int8, approximate)" and e.approximate
    fast = e.encode(texts)
    assert fast.shape == plain.shape and e.dim == 384 and e.max_seq_length == 256
    built = list((cache_dir / "onnx").glob("*/model_int8.onnx"))
    assert len(built) == 1 and not list((cache_dir / "onnx").glob("*/.build-*"))  # no temporary left behind
    iu = np.triu_indices(len(texts), 1)
    a, b = (plain @ plain.T)[iu], (fast @ fast.T)[iu]
    rho = _spearman(a, b)
    assert rho >= 0.95, rho
    assert np.abs(a - b).mean() < 0.05
    mtime = built[0].stat().st_mtime_ns
    np.testing.assert_allclose(E.Embedder(precision="int8", cache=False).encode(texts[:5]), fast[:5], atol=1e-3)  # the built file, read again
    assert built[0].stat().st_mtime_ns == mtime


def test_int8_needs_a_mean_pooled_model_with_a_fast_tokenizer(tmp_path, monkeypatch):
    from treesynth.core import embed_onnx

    _, path = E.resolve_model(None)
    assert embed_onnx.unsuitable(path) is None
    other = tmp_path / "cls_model"
    other.mkdir()
    (other / "tokenizer.json").write_text("{}")
    (other / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                                                    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (other / "1_Pooling").mkdir()
    (other / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    assert "pools with ['pooling_mode_cls_token']" in embed_onnx.unsuitable(other)
    monkeypatch.setattr(E, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(E, "cpu_has_amx", lambda: False)
    assert E.resolve_precision("auto", other) == "fp32"  # auto steps past int8 for such a model
    with pytest.raises(EmbedderError, match="cannot run"):
        E.resolve_precision("int8", other)
    (other / "tokenizer.json").unlink()
    assert embed_onnx.unsuitable(other) == "it has no tokenizer.json"


def test_auto_precision_is_fp32_whatever_the_cpu(monkeypatch):
    """auto used to take bf16 with AMX and int8 elsewhere: faster, but figures that differed by machine."""
    monkeypatch.setattr(E, "onnx_available", lambda: True)
    monkeypatch.setattr(E, "cpu_has_amx", lambda: True)
    monkeypatch.setattr(E, "cpu_has_native_bf16", lambda: True)
    assert E.resolve_precision("auto") == "fp32"
    assert E.resolve_backend("fp32") == "onnxruntime"
    monkeypatch.setattr(E, "onnx_available", lambda: False)
    assert E.resolve_precision(None) == "fp32"
    assert E.resolve_backend("fp32") == "torch"
    assert E.resolve_precision("FP32") == "fp32"
    assert E.resolve_precision("bf16") == "bf16" and E.resolve_precision("int8") == "int8"  # asked for by name only
    with pytest.raises(EmbedderError):
        E.resolve_precision("int4")


@pytest.mark.slow
def test_cache_is_keyed_by_content_and_model_and_gives_the_same_vectors(cache_dir):
    texts = ["A farmer has 12 cows.", "A train leaves at 3 pm.", "A farmer has 12 cows."]
    e1 = E.Embedder(precision="fp32")
    X1 = e1.embed(texts)
    assert e1.stats[-1]["cached"] is False and e1.stats[-1]["unique"] == 2
    files = list((cache_dir / "embeddings").glob("*.npy"))
    assert len(files) == 1 and json.loads(files[0].with_suffix(".json").read_text())["rows"] == 3
    e2 = E.Embedder(precision="fp32")
    X2 = e2.embed(texts)
    assert e2.stats[-1]["cached"] is True and e2._model is None  # a hit never loads the model
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(X1[0], X1[2])
    e2.embed(texts[:2])  # other content: a miss
    assert e2.stats[-1]["cached"] is False
    e3 = E.Embedder(precision="bf16")
    assert e3.cache_key(texts) != e1.cache_key(texts)  # precision and backend are part of the key
    assert E.Embedder(precision="fp32", backend="torch").cache_key(texts) != e1.cache_key(texts) or e1.backend == "torch"
    assert E.Embedder(precision="int8").cache_key(texts) not in (e1.cache_key(texts), e3.cache_key(texts))
    assert E.Embedder(precision="fp32", cache=False).embed(texts).shape == (3, 384)
    assert len(list((cache_dir / "embeddings").glob("*.npy"))) == 2


@pytest.mark.slow
def test_a_damaged_cache_entry_is_recomputed(cache_dir):
    texts = ["one", "two"]
    e = E.Embedder(precision="fp32")
    X = e.embed(texts)
    path = cache_dir / "embeddings" / f"{e.cache_key(texts)}.npy"
    path.write_bytes(b"not a numpy file")
    Y = E.Embedder(precision="fp32").embed(texts)
    np.testing.assert_array_equal(X, Y)
    assert np.load(path).shape == (2, 384)
