#!/usr/bin/env bash
# The GPU check of tunelab (benchmarks/gpu_check.py has the details).
#
#   bash benchmarks/gpu_check.sh --prepare     # here: .gpu_carry/ = minilm (fp16 storage) + SST-2 (~50 MB)
#   bash benchmarks/gpu_check.sh               # on the GPU machine (carry .gpu_carry): <= 8 min, table to $OUT
#   bash benchmarks/gpu_check.sh --cpu-smoke   # every stage at tiny sizes on CPU (< 5 min)
#
# PYTHON picks the interpreter (default: .venv/bin/python when the repo has one, else python3).
# Extra arguments go to gpu_check.py (--budget S, --batch N, --bert-batch N, --out DIR, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export TOKENIZERS_PARALLELISM=false
if [ "${1:-}" = "--prepare" ]; then
  # the real minilm package must resolve: no carried copy on the path here
  PYTHONPATH=src exec "$PYTHON" benchmarks/gpu_check.py "$@"
fi
export PYTHONPATH="src:.gpu_carry/pkgs${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" benchmarks/gpu_check.py "$@"
