"""Embedding backends on this machine: texts/s, share of the cores' fp32 peak, and the report's figures
against plain fp32 PyTorch; then ``treesynth report`` on GSM8K train with the default settings.

    python benchmarks/bench_embed.py                      # everything (about 10 minutes on 2 quiet cores)
    python benchmarks/bench_embed.py --skip-report        # only the backends
    python benchmarks/bench_embed.py --backends onnx --batch-tokens 512,1024,2048   # the fp32 batch budget
    python benchmarks/bench_embed.py --only-report [--report-precisions auto,int8]   # reuses the last full run's reference

Texts: GSM8K train questions (../shared/data/gsm8k/train.jsonl, 7,473 rows). Each backend of the
default model (all-MiniLM-L6-v2) embeds all of them through the product's own ``Embedder.encode``
after a warm-up; per backend: texts/s, useful GFLOP/s and its share of the fp32 peak, the report's
mean pairwise cosine similarity and Vendi score (``analytics.metrics``, on the float16-rounded vectors
a report uses) and their distance from the reference, and the Spearman correlation of all pairwise
similarities among a fixed 1,000-text sample.

Backends:
  torch    fp32, plain sentence-transformers (PyTorch): the reference
  onnx     fp32 through onnxruntime (fused attention, length-bucketed batches): the default
  int8     onnxruntime with int8 weights, one text per run (--precision int8: approximate)
  bf16     PyTorch in bfloat16 (--precision bf16: approximate; fast only with AMX)
  static   not a product backend: each vocabulary token's contextless vector, averaged

FLOPs per text (no padding counted): for T word pieces through l layers of width d and feed-forward
width f, T·l·(2·(4d² + 2df)) for the matrix products with the weights plus T²·l·4d for attention
(QKᵀ and AV). Peak: physical cores × clock (``cpu MHz`` of /proc/cpuinfo, or lscpu's maximum) × fp32
FLOP per cycle for the widest vector unit (AVX-512: 64, AVX2 with FMA: 32 (two 256-bit FMA pipes),
AVX: 16, else 8).

The report: ``treesynth report train.jsonl --field question`` in a fresh process with an empty
embedding cache (the ONNX graph already built, as after a first use), wall time, and its mean cosine
and Vendi score from metrics.json against the reference's.

Results: tables on stdout and benchmarks/out/embed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
GSM = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
OUT = ROOT / "benchmarks" / "out"
BACKENDS = {  # name: (precision, backend)
    "torch": ("fp32", "torch"), "onnx": ("fp32", "onnxruntime"), "int8": ("int8", None), "bf16": ("bf16", None),
}


def load_texts(n: int) -> list[str]:
    with open(GSM) as f:
        return [json.loads(line)["question"] for line in f][:n]


# ---------------------------------------------------------------------------
# the machine


def cpu_peak() -> dict:
    """Physical cores, clock and fp32 FLOP/cycle/core of this machine, and their product."""
    from treesynth.core.embed_onnx import cpu_threads
    from treesynth.core.embeddings import _cpu_flags

    flags = _cpu_flags()
    if "avx512f" in flags:
        isa, per_cycle = "AVX-512", 64
    elif "avx2" in flags and "fma" in flags:
        isa, per_cycle = "AVX2+FMA", 32
    elif "avx" in flags:
        isa, per_cycle = "AVX", 16
    else:
        isa, per_cycle = "SSE", 8
    mhz = 0.0
    model = ""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        mhz = max(float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M))
        model = (re.findall(r"^model name\s*:\s*(.*)$", text, re.M) or [""])[0].strip()
    except (OSError, ValueError):
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"CPU max MHz:\s*([\d.]+)", lscpu)
        if m:
            mhz = max(mhz, float(m.group(1)))
    except (OSError, subprocess.SubprocessError):
        pass
    cores = cpu_threads()
    return {"cpu": model, "cores": cores, "ghz": round(mhz / 1000, 3), "isa": isa, "flop_per_cycle": per_cycle,
            "peak_gflops": round(cores * mhz / 1000 * per_cycle, 1)}


def text_flops(texts: list[str]) -> tuple[float, float]:
    """(FLOPs to embed ``texts`` without padding, mean word pieces per text) for the default model."""
    from tokenizers import Tokenizer

    from treesynth.core.embeddings import resolve_model

    _, path = resolve_model(None)
    cfg = json.loads((path / "config.json").read_text())
    d, f, layers = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(256)
    T = np.array([len(e.ids) for e in tok.encode_batch(texts)], dtype=np.float64)
    flops = float((T * layers * 2 * (4 * d * d + 2 * d * f)).sum() + (T * T * layers * 4 * d).sum())
    return flops, float(T.mean())


# ---------------------------------------------------------------------------
# the backends


class Product:
    """The product's own ``Embedder`` (core/embeddings.py) for one precision and backend."""

    def __init__(self, precision: str, backend: str | None, batch_tokens: int | None = None) -> None:
        from treesynth.core.embeddings import Embedder

        self.e = Embedder(precision=precision, backend=backend, cache=False)
        m = self.e.load()
        if batch_tokens and hasattr(m, "max_tokens"):
            m.max_tokens = batch_tokens

    def __call__(self, texts: list[str]) -> np.ndarray:
        return self.e.encode(texts)


class Static:
    """Each vocabulary token's output vector with no context (its position in [CLS] token [SEP], fp32
    PyTorch), centred on the vocabulary's mean; a text is the normalised mean of its tokens' vectors."""

    def __init__(self) -> None:
        import torch
        from tokenizers import Tokenizer

        from treesynth.core.embeddings import Embedder

        e = Embedder(precision="fp32", backend="torch", cache=False)
        model = e.load()[0].auto_model
        self.tok = Tokenizer.from_file(str(e.path / "tokenizer.json"))
        self.tok.no_truncation()
        vocab = self.tok.get_vocab_size()
        cls, sep = self.tok.token_to_id("[CLS]"), self.tok.token_to_id("[SEP]")
        table = np.zeros((vocab, 384), np.float32)
        with torch.no_grad():
            for a in range(0, vocab, 512):
                ids = torch.tensor([[cls, i, sep] for i in range(a, min(vocab, a + 512))])
                table[a : a + len(ids)] = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[:, 1, :].numpy()
        self.table = table - table.mean(0)

    def __call__(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), np.float32)
        for i, enc in enumerate(self.tok.encode_batch(texts, add_special_tokens=False)):
            if enc.ids:
                out[i] = self.table[enc.ids].mean(0)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def spearman_pairs(A: np.ndarray, B: np.ndarray) -> float:
    from scipy.stats import spearmanr

    iu = np.triu_indices(len(A), 1)
    return float(spearmanr((A @ A.T)[iu], (B @ B.T)[iu]).statistic)


def figures(X: np.ndarray) -> tuple[float, float]:
    from treesynth.analytics import metrics as M

    return M.mean_pairwise_cosine(X), M.vendi_score(X)


def bench_backends(args: argparse.Namespace, texts: list[str], peak: dict) -> list[dict]:
    from treesynth.core.embeddings import quantise

    flops, tokens = text_flops(texts)
    print(f"{len(texts):,} texts, {tokens:.1f} word pieces each, {flops / len(texts) / 1e9:.2f} GFLOP per text; "
          f"peak {peak['peak_gflops']} GFLOP/s = {peak['cores']} cores x {peak['ghz']} GHz x {peak['flop_per_cycle']} "
          f"({peak['isa']}) -> at most {peak['peak_gflops'] * 1e9 / (flops / len(texts)):.0f} texts/s", flush=True)
    rng = np.random.default_rng(0)
    sample = rng.choice(len(texts), size=min(args.pairs_sample, len(texts)), replace=False)
    want = [b for b in args.backends.split(",") if b]
    runs = [("torch", None)] + [(b, t) for b in want if b != "torch" for t in (args.batch_tokens if b == "onnx" else [None])]
    rows: list[dict] = []
    ref: np.ndarray | None = None
    for name, budget in runs:
        t0 = time.perf_counter()
        enc = Static() if name == "static" else Product(*BACKENDS[name], batch_tokens=budget)
        setup = time.perf_counter() - t0
        enc(texts[:256])  # warm: first runs of each shape allocate
        walls = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            X = enc(texts)
            walls.append(time.perf_counter() - t0)
        wall = min(walls)
        X = quantise(X)
        if ref is None:
            ref = X
        cos, vendi = figures(X)
        cos_ref, vendi_ref = figures(ref)
        gflops = flops / wall / 1e9
        row = {"backend": name + (f" (batch {budget} tokens)" if budget else ""), "texts": len(texts), "setup_s": round(setup, 1),
               "wall_s": round(wall, 2), "walls_s": [round(w, 2) for w in walls], "texts_per_s": round(len(texts) / wall, 1),
               "gflops": round(gflops, 1), "share_of_peak": round(gflops / peak["peak_gflops"], 3),
               "mean_cosine": round(cos, 5), "vendi": round(vendi, 3), "d_mean_cosine": round(cos - cos_ref, 7),
               "d_vendi": round(vendi - vendi_ref, 5), "spearman_vs_torch": round(spearman_pairs(ref[sample], X[sample]), 5)}
        row["within_bar"] = bool(abs(row["d_mean_cosine"]) <= 0.003 and abs(row["d_vendi"]) <= 0.5)
        rows.append(row)
        print(f"{row['backend']:28s} {row['texts_per_s']:>7.1f} texts/s  {gflops:6.1f} GFLOP/s ({row['share_of_peak']:.0%} of peak)  "
              f"mean cos {cos:.4f} ({row['d_mean_cosine']:+.4f})  Vendi {vendi:.2f} ({row['d_vendi']:+.2f})  "
              f"spearman {row['spearman_vs_torch']:.4f}  (setup {setup:.1f} s)", flush=True)
        del enc
    return rows


# ---------------------------------------------------------------------------
# the report, as a user runs it


def bench_report(args: argparse.Namespace, reference: dict | None) -> list[dict]:
    out: list[dict] = []
    if reference is None:  # the reference's figures over the same texts (PyTorch fp32)
        from treesynth.core.embeddings import Embedder

        t0 = time.perf_counter()
        cos, vendi = figures(Embedder(precision="fp32", backend="torch", cache=False).embed(load_texts(10**9)))
        reference = {"mean_cosine": cos, "vendi": vendi}
        print(f"reference (PyTorch fp32, {time.perf_counter() - t0:.0f} s): mean cos {cos:.4f}, Vendi {vendi:.2f}", flush=True)
    onnx_cache = Path(os.environ.get("TREESYNTH_CACHE_DIR") or Path.home() / ".cache" / "treesynth") / "onnx"
    for precision in args.report_precisions.split(","):
        with tempfile.TemporaryDirectory(prefix="bench-embed-") as tmp:
            cache = Path(tmp) / "cache"
            cache.mkdir()
            if onnx_cache.is_dir():  # the graphs a first use built: reused, so the wall time is a normal report's
                (cache / "onnx").symlink_to(onnx_cache, target_is_directory=True)
            env = {**os.environ, "TREESYNTH_CACHE_DIR": str(cache), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
            cmd = [sys.executable, "-m", "treesynth.cli", "report", str(GSM), "--field", "question", "--out", str(Path(tmp) / "r.html")]
            if precision != "auto":
                cmd += ["--precision", precision]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - t0
            if p.returncode != 0:
                print(p.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"treesynth report failed ({p.returncode})")
            doc = json.loads((Path(tmp) / "r.metrics.json").read_text())
        m = doc["datasets"][0]["metrics"]
        cos, vendi = m["mean_cosine_similarity"]["value"], m["vendi_score"]["value"]
        row = {"precision": precision, "backend": doc["embedder"]["backend"], "approximate": doc["embedder"]["approximate"],
               "rows_embedded": doc["datasets"][0]["embedded"]["rows"], "wall_s": round(wall, 1), "stages_s": doc["timings_s"],
               "mean_cosine": round(cos, 5), "vendi": round(vendi, 3), "reference_mean_cosine": round(reference["mean_cosine"], 5),
               "reference_vendi": round(reference["vendi"], 3), "d_mean_cosine": round(cos - reference["mean_cosine"], 7),
               "d_vendi": round(vendi - reference["vendi"], 5)}
        out.append(row)
        print(f"treesynth report --precision {precision} ({row['backend']}): {wall:.1f} s wall (embed {doc['timings_s'].get('embed', 0):.1f} s), "
              f"mean cos {cos:.4f} ({row['d_mean_cosine']:+.4f}), Vendi {vendi:.2f} ({row['d_vendi']:+.2f}), "
              f"approximate: {row['approximate']}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=7473, help="texts (default: all 7,473)")
    ap.add_argument("--pairs-sample", type=int, default=1000)
    ap.add_argument("--backends", default="torch,onnx,int8", help="of torch,onnx,int8,bf16,static (torch always runs: the reference)")
    ap.add_argument("--batch-tokens", default="", help="onnx: padded tokens per batch to try, e.g. 512,1024,2048 (default: the product's)")
    ap.add_argument("--repeats", type=int, default=1, help="timed passes per backend (the fastest counts)")
    ap.add_argument("--skip-report", action="store_true")
    ap.add_argument("--only-report", action="store_true")
    ap.add_argument("--report-precisions", default="auto", help="treesynth report runs, e.g. auto,int8")
    args = ap.parse_args()
    args.batch_tokens = [int(x) for x in args.batch_tokens.split(",") if x] or [None]
    peak = cpu_peak()
    result: dict = {"machine": peak, "load_before": os.getloadavg()}
    reference = None
    if args.only_report and (OUT / "embed.json").is_file():  # the last full backends run's reference, and its table kept
        last = json.loads((OUT / "embed.json").read_text())
        rows = last.get("backends") or []
        if rows and rows[0]["backend"] == "torch" and rows[0]["texts"] >= 7473:
            reference = {"mean_cosine": rows[0]["mean_cosine"], "vendi": rows[0]["vendi"]}
            result["backends"] = rows
    if not args.only_report:
        rows = bench_backends(args, load_texts(args.n), peak)
        result["backends"] = rows
        if args.n >= 7473:
            reference = {"mean_cosine": rows[0]["mean_cosine"], "vendi": rows[0]["vendi"]}
    if not args.skip_report:
        result["report"] = bench_report(args, reference)
    result["load_after"] = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "embed.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {OUT / 'embed.json'} (load average {result['load_before'][0]:.2f} -> {result['load_after'][0]:.2f})")


if __name__ == "__main__":
    main()
