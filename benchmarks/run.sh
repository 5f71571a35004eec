#!/usr/bin/env bash
# Run every benchmark: ./benchmarks/run.sh [extra args for bench_engine.py, e.g. --sizes 100k,1M]
# Results: a table on stdout and benchmarks/out/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
"$PY" benchmarks/bench_engine.py "$@"
