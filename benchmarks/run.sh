#!/usr/bin/env bash
# Run every benchmark: ./benchmarks/run.sh [extra args for bench_engine.py, e.g. --sizes 100k,1M]
# engine overhead at scale, concurrency efficiency, calls and tokens per 1,000 samples, TUI
# responsiveness, balance routing, the 100k report (about 6 minutes on its own), Ray overhead.
# SKIP_<NAME>=1 skips one (STARTUP, LAUNCH, CONCURRENCY, CALLS, TUI, BALANCE, EMBED, REPORT, RAY, EMBEDDED, DEDUP).
# Results: a table on stdout per benchmark and benchmarks/out/*.json. Run it on a quiet machine:
# every figure is wall time on shared cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
"$PY" benchmarks/bench_engine.py "$@"
# start-up of the command (--help, --version) as real processes; SKIP_STARTUP=1 skips it
if [ -z "${SKIP_STARTUP:-}" ]; then
  "$PY" benchmarks/bench_startup.py
fi
# launch to first request, last answer to exit, and wall at 1k/10k/100k rows against a 200 ms fake server
if [ -z "${SKIP_LAUNCH:-}" ]; then
  "$PY" benchmarks/bench_launch.py
fi
# concurrency efficiency of the real LLM path (the http transport, then litellm) against tests/faultserver.py;
# its own arguments go in BENCH_CONCURRENCY_ARGS (e.g. "--levels 256 --baseline"); SKIP_CONCURRENCY=1 skips it
if [ -z "${SKIP_CONCURRENCY:-}" ]; then
  "$PY" benchmarks/bench_concurrency.py ${BENCH_CONCURRENCY_ARGS:-}
fi
# calls and tokens per 1,000 samples of a default GSM8K-style run (server's counts); SKIP_CALLS=1 skips it
if [ -z "${SKIP_CALLS:-}" ]; then
  "$PY" benchmarks/bench_calls.py
fi
# TUI responsiveness: event -> screen and key -> screen on a 4,681-node tree
if [ -z "${SKIP_TUI:-}" ]; then
  "$PY" benchmarks/bench_tui.py
fi
# balance: routing rows/s (--route embed) and LLM calls per 1,000 rows (--route llm) on GSM8K train
if [ -z "${SKIP_BALANCE:-}" ]; then
  if [ -f ../shared/data/gsm8k/train.jsonl ]; then
    "$PY" benchmarks/bench_balance.py
  else
    echo "bench_balance: ../shared/data/gsm8k/train.jsonl not found; skipped" >&2
  fi
fi
# embedding backends (fp32, bf16, int8 ONNX, a static table): texts/s and Spearman against fp32 on GSM8K train
if [ -z "${SKIP_EMBED:-}" ]; then
  if [ -f ../shared/data/gsm8k/train.jsonl ]; then
    "$PY" benchmarks/bench_embed.py
  else
    echo "bench_embed: ../shared/data/gsm8k/train.jsonl not found; skipped" >&2
  fi
fi
# the full report for 100k samples, cold and warm embedding cache, plus fp32 vs bf16 throughput
if [ -z "${SKIP_REPORT:-}" ]; then
  "$PY" benchmarks/bench_report.py
fi
# Ray dispatch overhead and the embedded model on two workers (needs the [ray] extra)
if [ -z "${SKIP_RAY:-}" ]; then
  if "$PY" -c "import ray" 2>/dev/null; then
    "$PY" benchmarks/bench_ray.py
  else
    echo "bench_ray: Ray is not installed (pip install 'treesynth[ray]'); skipped" >&2
  fi
fi
# the embedded model on the tree's hard steps (pivots, criterion, rows) over four tasks; SKIP_EMBEDDED=1 skips it
if [ -z "${SKIP_EMBEDDED:-}" ]; then
  "$PY" benchmarks/bench_embedded.py --seeds 2
fi
# the embedded model's decoder: tokens/s by decoding slots, and the README's run (about 6 min); SKIP_EMBEDDED=1 skips it
if [ -z "${SKIP_EMBEDDED:-}" ]; then
  "$PY" benchmarks/bench_local_decode.py
fi
# semantic dedup throughput and memory at 100k and 1M rows with precomputed embeddings (the 1M row takes ~25 min)
if [ -z "${SKIP_DEDUP:-}" ]; then
  "$PY" benchmarks/bench_dedup.py --rows 100000 1000000 --batches 5 seed
fi
