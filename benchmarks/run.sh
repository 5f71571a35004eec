#!/usr/bin/env bash
# Run every benchmark: ./benchmarks/run.sh [extra args for bench_engine.py, e.g. --sizes 100k,1M]
# (engine overhead at scale, concurrency efficiency, calls and tokens per 1,000 samples)
# Results: a table on stdout and benchmarks/out/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
"$PY" benchmarks/bench_engine.py "$@"
# concurrency efficiency of the real LLM path (the http transport, then litellm) against tests/faultserver.py;
# its own arguments go in BENCH_CONCURRENCY_ARGS (e.g. "--levels 256 --baseline"); SKIP_CONCURRENCY=1 skips it
if [ -z "${SKIP_CONCURRENCY:-}" ]; then
  "$PY" benchmarks/bench_concurrency.py ${BENCH_CONCURRENCY_ARGS:-}
fi
# calls and tokens per 1,000 samples of a default GSM8K-style run (server's counts); SKIP_CALLS=1 skips it
if [ -z "${SKIP_CALLS:-}" ]; then
  "$PY" benchmarks/bench_calls.py
fi
