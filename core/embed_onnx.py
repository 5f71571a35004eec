"""Sentence embeddings through onnxruntime: the fast CPU backends of core/embeddings.py.

A sentence-transformers model whose modules are a transformer, mean pooling and (optionally)
normalisation, with a fast tokenizer (``tokenizer.json``), is exported once with ``torch.onnx`` and
the file kept under ``<cache>/onnx/<model fingerprint>-v<ONNX_FORMAT>/``; later loads read that file.
Texts then go through the model's own tokenizer (truncated to its ``max_seq_length``), the graph,
mean pooling over the attention mask and unit normalisation, as the model's modules do.

Two graphs:

* ``model_fp32.onnx`` (``fp32_model``; the default backend): exported with eager attention, so that
  onnxruntime's transformer optimizer can fuse it (for BERT-type models: one ``Attention`` node per
  layer, ``EmbedLayerNormalization``, ``SkipLayerNormalization``, ``BiasGelu``); the fused graph is
  kept only if its pooled embeddings match the PyTorch model's on probe texts (else the plain export,
  checked the same way). Weights stay fp32: the vectors agree with sentence-transformers' to about
  1e-7, and texts run in length-sorted batches of about ``MAX_BATCH_TOKENS`` padded tokens.
* ``model_int8.onnx`` (``int8_model``; ``--precision int8`` only): the same export with its weights
  quantised to int8 per channel by onnxruntime's dynamic quantisation; one text per run (activations
  are quantised per run, so in a batch a text's vector would depend on its neighbours). Approximate:
  Spearman 0.99 of pairwise similarities against fp32, but mean cosine similarity 0.012 and Vendi
  score about 1 away from fp32 on the report's datasets (benchmarks/README.md "Embedding backends").

Sessions run on ``cpu_threads()`` threads: the physical cores this process may use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EmbedderError

ONNX_FORMAT = 1  # bump when the export or the quantisation changes: the cached files are rebuilt
# fp32 graph: padded tokens per run (rows x longest), at least MAX_BATCH_TOKENS and TOKENS_PER_THREAD per thread
# (2 AVX2 cores: 512 to 2,048 within 3% of each other, 1,024 best; benchmarks/bench_embed.py --batch-tokens)
MAX_BATCH_TOKENS = 1024
TOKENS_PER_THREAD = 512
PROBE_TEXTS = (  # what a built fp32 graph must embed as PyTorch does (padded together in one batch)
    "A farmer has 12 cows and buys 3 more. How many cows does he have now?",
    "def add(a, b):\n    return a + b",
    "ok",
    "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich; 3.5 km/h, naïve café, 東京.",
)


def cpu_threads() -> int:
    """Physical cores this process may run on (its CPU affinity and cgroup quota; SMT siblings count once)."""
    try:
        allowed = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            block: dict[str, str] = {}
            for line in [*f, ""]:
                if line.strip():
                    k, _, v = line.partition(":")
                    block[k.strip()] = v.strip()
                    continue
                if block.get("processor", "").isdigit() and int(block["processor"]) in allowed:
                    cores.add((block.get("physical id", "0"), block.get("core id", block["processor"])))
                block = {}
    except OSError:
        pass
    n = len(cores) or len(allowed) or 1
    try:  # a container's CPU quota (cgroup v2): "max 100000" or "200000 100000"
        quota, period = open("/sys/fs/cgroup/cpu.max", encoding="ascii").read().split()[:2]
        if quota != "max" and int(period) > 0:
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None


def unsuitable(path: Path) -> str | None:
    """Why the model at ``path`` cannot take the ONNX path (None: it can): its modules must be a
    transformer, mean pooling and at most a normalisation, with a ``tokenizer.json``."""
    if not (path / "tokenizer.json").is_file():
        return "it has no tokenizer.json"
    try:
        modules = json.loads((path / "modules.json").read_text())
    except (OSError, ValueError):
        return "it has no readable modules.json"
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)]
    if not kinds or kinds[0] != "Transformer" or kinds[1:2] != ["Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        return f"its modules are {kinds}, not Transformer, Pooling[, Normalize]"
    pooling: dict[str, Any] = next((m for m in modules if str(m.get("type", "")).endswith("Pooling")), {})
    try:
        cfg = json.loads((path / str(pooling.get("path", "1_Pooling")) / "config.json").read_text())
    except (OSError, ValueError):
        return "its pooling config is unreadable"
    modes = {k for k, v in cfg.items() if k.startswith("pooling_mode") and v is True}
    if modes != {"pooling_mode_mean_tokens"}:
        return f"it pools with {sorted(modes)}, not the mean of its tokens"
    return None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter's tracer warnings and the quantiser's advice on the root logger stay off the user's screen."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def _export(path: Path, out: Path, attn_implementation: str | None = None) -> Any:
    """Export the model's transformer at ``path`` to ``out`` (inputs input_ids and attention_mask,
    output last_hidden_state, dynamic batch and length); returns the PyTorch module it exported.
    ``attn_implementation="eager"`` writes attention as plain MatMul/Softmax, which the optimizer fuses."""
    import torch
    import transformers
    from transformers import AutoModel

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    class Encoder(torch.nn.Module):  # keyword arguments: the positional order of forward() varies between models
        def __init__(self) -> None:
            super().__init__()
            kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
            self.model = AutoModel.from_pretrained(str(path), **kw).eval()

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    module = Encoder().eval()
    with torch.no_grad():
        torch.onnx.export(
            module, (ids, torch.ones_like(ids)), str(out),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "seq"} for k in ("input_ids", "attention_mask", "last_hidden_state")},
            opset_version=17, dynamo=False,
        )
    return module


def int8_model(path: Path, fingerprint: str, cache_dir: Path) -> Path:
    """The int8 ONNX file of the model at ``path``: built once (export, then quantisation) into a
    temporary folder and renamed into place, so concurrent builds never leave a torn file."""

    def build(tmp: Path) -> Path:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        _export(path, tmp / "model.onnx")
        quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model_int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
        return tmp / "model_int8.onnx"

    return _built(cache_dir / f"{fingerprint[:24]}-v{ONNX_FORMAT}" / "model_int8.onnx", build, path, "int8")


def fp32_model(path: Path, fingerprint: str, cache_dir: Path) -> Path:
    """The fp32 ONNX file of the model at ``path`` (see the module docstring): exported with eager
    attention, fused by onnxruntime's transformer optimizer where it knows the architecture, and
    checked against the PyTorch model on ``PROBE_TEXTS``; built once, like ``int8_model``."""

    def build(tmp: Path) -> Path:
        raw = tmp / "model.onnx"
        module = _export(path, raw, attn_implementation="eager")
        want = _torch_pooled(module, path)
        fused = _fuse(path, raw, tmp / "model_fused.onnx")
        for candidate in ([fused] if fused else []) + [raw]:
            err = float(np.abs(_onnx_pooled(candidate, path) - want).max())
            if err < 1e-4:
                return candidate
        raise EmbedderError(f"the exported graph's embeddings differ from PyTorch's by {err:.2g} on probe texts")

    return _built(cache_dir / f"{fingerprint[:24]}-v{ONNX_FORMAT}" / "model_fp32.onnx", build, path, "fp32")


def _built(target: Path, build: Any, path: Path, what: str) -> Path:
    """``target``, built by ``build(tmp_dir) -> file`` in a temporary folder beside it when missing."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        with _quiet():
            made = build(tmp)
        os.replace(made, target)
    except Exception as e:  # noqa: BLE001 - export, fusion or quantisation failed: one line, with the way around it
        raise EmbedderError(
            f"cannot build the {what} ONNX model of {str(path)!r}: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fuse(path: Path, raw: Path, out: Path) -> Path | None:
    """The graph at ``raw`` with onnxruntime's transformer fusions (BERT-type models only), or None."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    if cfg.get("model_type") != "bert":
        return None
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        m = optimize_model(str(raw), model_type="bert", num_heads=int(cfg.get("num_attention_heads") or 0),
                           hidden_size=int(cfg.get("hidden_size") or 0), opt_level=0)
        m.save_model_to_file(str(out))
    except Exception:  # noqa: BLE001 - a graph the optimizer does not know: the plain export serves
        return None
    return out


def _probe_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_truncation(128)
    tok.no_padding()
    return _pad([e.ids for e in tok.encode_batch(list(PROBE_TEXTS))])


def _pad(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask of ``seqs``, right-padded with 0 to the longest."""
    width = max(len(s) for s in seqs)
    ids = np.zeros((len(seqs), width), np.int64)
    mask = np.zeros((len(seqs), width), np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return ids, mask


def _pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the unmasked tokens, unit-normalised (float32 rows)."""
    m = mask[..., None].astype(np.float32)
    v = (hidden * m).sum(1) / np.maximum(m.sum(1), 1.0)
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _torch_pooled(module: Any, path: Path) -> np.ndarray:
    import torch

    ids, mask = _probe_batch(path)
    with torch.no_grad():
        hidden = module(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).numpy()
    return _pool(hidden, mask)


def _onnx_pooled(onnx_file: Path, path: Path) -> np.ndarray:
    import onnxruntime as ort

    ids, mask = _probe_batch(path)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])
    return _pool(session.run(None, {"input_ids": ids, "attention_mask": mask})[0], mask)


class OnnxEncoder:
    """``encode(texts)`` like a SentenceTransformer's, on an ONNX graph: unit-norm float32 rows.

    ``batched`` (the fp32 graph): length-sorted batches of at most ``batch_size`` rows and
    ``max_tokens`` padded tokens (default: ``MAX_BATCH_TOKENS``, or ``TOKENS_PER_THREAD`` per thread
    where that is more; only 2 cores were measured). Not batched (the int8 graph): one text per run,
    see ``encode``. Threads: one per physical core (``cpu_threads``); int8 at most 8."""

    def __init__(
        self, path: Path, onnx_file: Path, max_seq_length: int, threads: int | None = None, batched: bool = False,
        max_tokens: int | None = None,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        so = ort.SessionOptions()
        # one text per run (int8) has too little work for many threads: at most 8, as it always had
        so.intra_op_num_threads = threads or (cpu_threads() if batched else min(8, cpu_threads()))
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_seq_length)
        self.tokenizer.no_padding()
        self.max_seq_length = max_seq_length
        self.threads = so.intra_op_num_threads
        self.batched = batched
        self.max_tokens = max(1, int(max_tokens or max(MAX_BATCH_TOKENS, TOKENS_PER_THREAD * self.threads)))
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str], batch_size: int = 64, **_: Any) -> np.ndarray:
        """Unit-norm float32 embeddings (a SentenceTransformer's other keywords are accepted and have no effect).

        Not batched, one text per run: onnxruntime's int8 graph quantises activations per run, so in a
        batch a text's vector would depend on its neighbours and their padding (cosine 0.99 to itself,
        measured); alone it is the same wherever it comes, and no padding is computed."""
        seqs = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        out = np.zeros((len(seqs), self.dim), np.float32)
        if not self.batched:
            for i, s in enumerate(seqs):
                ids = np.array([s], np.int64)
                v = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0].mean(0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
            return out
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))  # longest first: each batch's first row is its widest
        a = 0
        while a < len(order):
            rows = max(1, min(batch_size, self.max_tokens // max(1, len(seqs[order[a]]))))
            idx = order[a : a + rows]
            ids, mask = _pad([seqs[i] for i in idx])
            out[idx] = _pool(self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0], mask)
            a += rows
        return out
