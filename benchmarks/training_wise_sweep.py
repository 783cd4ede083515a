"""WiSE-FT mixing-coefficient sweep on one holdout split (same protocol as ``training_holdout.py``).

Fine-tunes once with ``train``'s settings but no interpolation and no head re-fit
(``transformer.wise_alpha=null``, ``transformer.refit_head=false``: the settings of the runs in
benchmarks/training.md, made before the re-fit became a default), then
for each alpha loads ``(1 - alpha) * start + alpha * fine-tuned`` (``patentcpc.training.head.wise_start``:
the pretrained encoder with a probe head fitted on the training part) and scores both the
validation part ``train`` held out and the 20 % test part. alpha 0 is the linear probe on frozen
embeddings (LP), alpha 1 plain fine-tuning.

    python benchmarks/training_wise_sweep.py --model <MiniLM folder> --seed 3

Appends one JSON line per split to benchmarks/training_results.jsonl.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from training_holdout import add_split_args, append_result, fine_tune_on_split  # noqa: E402

ALPHAS = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    add_split_args(ap)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--start-on-all", action="store_true",
                    help="fit the start's probe head on the validation part too (its valid scores are then biased)")
    args = ap.parse_args()

    from datasets import concatenate_datasets

    from patentcpc import evaluate
    from patentcpc.cpc import LabelVocab
    from patentcpc.training.batches import encode, multi_hot
    from patentcpc.training.head import interpolate_weights, wise_start

    run = fine_tune_on_split(args, ["transformer.wise_alpha=null", "transformer.refit_head=false"])
    cfg, model, fit_part, valid, test = run.cfg, run.model, run.fit_part, run.valid, run.test
    vocab = LabelVocab.from_label_lists(fit_part.labels + valid.labels, cfg.data.level)
    assert vocab.labels == list(model.labels), "label vocabulary differs from the trained model's"
    ds = encode(model, fit_part, vocab)
    if args.start_on_all:
        ds = concatenate_datasets([ds, encode(model, valid, vocab)])
    tuned = model.network_state()
    start = wise_start(model, cfg.model, ds, multi_hot(ds["label_ids"], len(vocab)), cfg.transformer)
    sweep = []
    for alpha in ALPHAS:
        model.load_network_state(interpolate_weights(start, tuned, alpha))
        v, t = evaluate(model, valid), evaluate(model, test)
        sweep.append({"alpha": alpha, "valid_f1@1": round(float(v["f1@1"]), 4),
                      "test_f1@1": round(float(t["f1@1"]), 4), "test_precision@1": round(float(t["precision@1"]), 4),
                      "test_section_accuracy@1": round(float(t["section_accuracy@1"]), 4)})
        print(sweep[-1], flush=True)
    tag = "WiSE-FT alpha sweep" + (", start probe on train + validation" if args.start_on_all else "")
    append_result({"tag": f"{tag}, split seed {args.seed}", "data": Path(args.data).name,
                   "model": cfg.model, "overrides": args.sets, "n_train": len(run.train), "n_valid": len(valid),
                   "n_test": len(test), "train_seconds": round(run.train_seconds, 1), "sweep": sweep,
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})


if __name__ == "__main__":
    main()
