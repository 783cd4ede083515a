"""The issue's done-means check for calibration: TF-IDF models trained with the defaults (the
``train_model`` path of ``patentcpc train --model tfidf``) on 5 seeded 80/20 splits of
uspto-abstracts, saved, loaded back with ``patentcpc.load_model`` and asked for the top-1 code of
every held-out patent (``.predict(texts, top_k=1)``); ECE@1 (10 equal-width bins) and AUROC@1 per split and pooled.

    PYTHONPATH=src python benchmarks/calibration_done.py /tmp/cal [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import patentcpc
from patentcpc.calibration import auroc, ece
from patentcpc.config import TrainConfig
from patentcpc.data import load_data, split_data
from patentcpc.metrics import precision_recall_f1_at_k
from patentcpc.registry import train_model

DATA = "../shared/data/uspto-abstracts/patents.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("work", nargs="?", type=Path, default=None)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = ap.parse_args()
    data = load_data(DATA)
    work = args.work or Path(tempfile.mkdtemp())
    confs, hits, f1s = [], [], []
    for seed in args.seeds:
        train, test = split_data(data, (0.8, 0.2), seed)
        path = work / f"s{seed}" / "train.jsonl"
        from patentcpc.io import write_jsonl

        write_jsonl(({"patent_id": r["id"], "text": r["text"], "cpc_ids": ",".join(r["labels"])}
                     for r in train.dataset), path)
        folder = work / f"s{seed}" / "tfidf_default"
        train_model(TrainConfig(model="tfidf"), str(path), None, folder)
        m = patentcpc.load_model(folder)
        res = m.predict(test.texts, top_k=1)
        conf = np.array([r[0].score for r in res])
        hit = np.array([r[0].code in g for r, g in zip(res, test.labels, strict=True)], float)
        assert all(len(r) == 1 for r in res) and conf.min() >= 0 and conf.max() <= 1
        f1 = precision_recall_f1_at_k(m.predict_scores(test.texts), test.labels, m.labels, (1,))["f1@1"]
        confs.append(conf)
        hits.append(hit)
        f1s.append(f1)
        print(f"split {seed}: n {len(conf)}  P@1 {hit.mean():.3f}  F1@1 {f1:.3f}  mean prob {conf.mean():.3f}  "
              f"ECE@1 {ece(conf, hit):.3f}  AUROC@1 {auroc(conf, hit):.3f}", flush=True)
    conf, hit = np.concatenate(confs), np.concatenate(hits)
    print(f"pooled: n {len(conf)}  P@1 {hit.mean():.3f}  mean prob {conf.mean():.3f}  ECE@1 {ece(conf, hit):.3f}  "
          f"AUROC@1 {auroc(conf, hit):.3f}")
    e = [ece(c, h) for c, h in zip(confs, hits, strict=True)]
    a = [auroc(c, h) for c, h in zip(confs, hits, strict=True)]
    print(f"per split: ECE@1 {np.mean(e):.3f} ± {np.std(e, ddof=1):.3f}  "
          f"AUROC@1 {np.mean(a):.3f} ± {np.std(a, ddof=1):.3f}  F1@1 {np.mean(f1s):.3f}")


if __name__ == "__main__":
    main()
