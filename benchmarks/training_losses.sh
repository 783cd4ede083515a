#!/usr/bin/env bash
# Loss comparison at equal budget (same model, data, epochs, learning rates, seed): bce, weighted
# (balanced and inverse-sqrt class weights), focal, hierarchical. Results are appended to
# benchmarks/training_results.jsonl by training_holdout.py (80/20 split of the data, seed 42).
#   bash benchmarks/training_losses.sh [--arch modernbert-tiny | --model DIR] [--data FILE] [--set ...]
set -euo pipefail
cd "$(dirname "$0")/.."
for loss in "bce" "weighted" "weighted inv_sqrt" "focal" "hierarchical"; do
  set -- "$@"
  name=${loss%% *}
  extra=()
  if [[ "$loss" == "weighted inv_sqrt" ]]; then extra=(--set transformer.class_weight=inv_sqrt); fi
  python benchmarks/training_holdout.py "$@" --set "transformer.loss=$name" "${extra[@]}" --tag "losses: $loss"
done
