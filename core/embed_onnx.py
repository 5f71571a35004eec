"""Sentence embeddings through onnxruntime with int8 weights: the fast CPU backend of core/embeddings.py.

A sentence-transformers model whose modules are a transformer, mean pooling and (optionally)
normalisation, with a fast tokenizer (``tokenizer.json``), is exported once with ``torch.onnx``,
its weights quantised to int8 per channel by onnxruntime's dynamic quantisation, and the file kept
under ``<cache>/onnx/<model fingerprint>/``; later loads read that file. Texts then go through the
model's own tokenizer (truncated to its ``max_seq_length``), the int8 graph, mean pooling over the
attention mask and unit normalisation, as the model's modules do. Measured on GSM8K train questions
(benchmarks/bench_embed.py): Spearman 0.99 of pairwise similarities against fp32 PyTorch.
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

ONNX_FORMAT = 1  # bump when the export or the quantisation changes: the cached file is rebuilt


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


def _export(path: Path, out: Path) -> None:
    import torch
    import transformers
    from transformers import AutoModel

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    class Encoder(torch.nn.Module):  # keyword arguments: the positional order of forward() varies between models
        def __init__(self) -> None:
            super().__init__()
            self.model = AutoModel.from_pretrained(str(path)).eval()

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            Encoder().eval(), (ids, torch.ones_like(ids)), str(out),
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
            dynamic_axes={k: {0: "batch", 1: "seq"} for k in ("input_ids", "attention_mask", "last_hidden_state")},
            opset_version=17, dynamo=False,
        )


def int8_model(path: Path, fingerprint: str, cache_dir: Path) -> Path:
    """The int8 ONNX file of the model at ``path``: built once (export, then quantisation) into a
    temporary folder and renamed into place, so concurrent builds never leave a torn file."""
    target = cache_dir / f"{fingerprint[:24]}-v{ONNX_FORMAT}" / "model_int8.onnx"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with _quiet():
            _export(path, tmp / "model.onnx")
            quantize_dynamic(str(tmp / "model.onnx"), str(tmp / "model_int8.onnx"), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(tmp / "model_int8.onnx", target)
    except Exception as e:  # noqa: BLE001 - export or quantisation failed: one line, with the way around it
        raise EmbedderError(
            f"cannot build the int8 ONNX model of {str(path)!r} (--precision fp32 avoids it): {type(e).__name__}: {' '.join(str(e).split())[:200]}"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


class OnnxEncoder:
    """``encode(texts)`` like a SentenceTransformer's, on the int8 graph: unit-norm float32 rows."""

    def __init__(self, path: Path, onnx_file: Path, max_seq_length: int, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or max(1, min(8, os.cpu_count() or 1))
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_seq_length)
        self.tokenizer.no_padding()
        self.max_seq_length = max_seq_length
        self.dim = int(self.session.get_outputs()[0].shape[-1])

    def encode(self, texts: Sequence[str], batch_size: int = 64, **_: Any) -> np.ndarray:
        """Unit-norm float32 embeddings, one text per run: onnxruntime quantises activations per run, so
        in a batch a text's vector would depend on its neighbours and their padding (cosine 0.99 to
        itself, measured); alone it is the same wherever it comes, and no padding is computed.
        (``batch_size`` and a SentenceTransformer's other keywords are accepted and have no effect.)"""
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, enc in enumerate(self.tokenizer.encode_batch(list(texts))):
            ids = np.array([enc.ids], np.int64)
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
            v = hidden[0].mean(0)
            out[i] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out
