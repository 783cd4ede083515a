#!/usr/bin/env bash
# GPU throughput benchmark, one call: bash benchmarks/gpu/run.sh OUTDIR [--smoke] [gpu_bench.py options]
# Runs from the source tree (PYTHONPATH=src); needs only torch, transformers and numpy.
# Writes OUTDIR/results.json, OUTDIR/results.md and OUTDIR/log.txt. See benchmarks/gpu/README.md.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 OUTDIR [--smoke] [options of gpu_bench.py]" >&2
  exit 2
fi
OUT=$1
shift
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
mkdir -p "$OUT"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python}
{
  echo "# $(date -u '+%Y-%m-%d %H:%M:%S UTC') $PY $HERE/gpu_bench.py $OUT $*"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi || echo "(no nvidia-smi)"
} >"$OUT/log.txt" 2>&1
"$PY" -u "$HERE/gpu_bench.py" "$OUT" "$@" 2>&1 | tee -a "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
