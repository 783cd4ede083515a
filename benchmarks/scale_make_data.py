"""Generate USPTO-3M-shaped data (``text,cpc_ids``) for the scale benchmarks (benchmarks/scale.md).

* labels: USPTO-3M's 665 CPC subclasses drawn with their own frequencies
  (``../shared/data/uspto-3m/label-counts.json``), 1-5 distinct labels a document (about 2.0 on
  average, as USPTO-3M's 6.13M assignments over 3.0M patents);
* text: about 60 words (30-90), a mix of common words (the shared abstracts' vocabulary, Zipf-like)
  and words tied to the labels: each subclass has 20 words of its own and each CPC class (3
  characters) 10 shared by its subclasses, so a model can learn the labels, and confuse siblings;
* files: ``train.csv`` (N rows), ``valid.csv`` and ``test.csv`` (N/10 each), written in chunks
  (bounded memory), everything sampled with vectorised NumPy (3M documents in a few minutes).

    python benchmarks/scale_make_data.py --n 300000 --output /tmp/scale/300k

Write outside the repository (about 480 bytes a document).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]


def load_counts(path: Path) -> tuple[list[str], np.ndarray]:
    d = json.loads(path.read_text())
    counts = d["counts"]
    labels = sorted(counts)
    return labels, np.array([counts[c] for c in labels], dtype=np.float64)


def pseudo_words(n: int, rng: np.random.Generator, taken: set[str]) -> list[str]:
    """n distinct pronounceable made-up words (3-4 syllables) not in ``taken``."""
    out: list[str] = []
    seen = set(taken)
    while len(out) < n:
        k = rng.integers(3, 5, size=n)
        syl = rng.integers(0, len(SYLLABLES), size=(n, 4))
        for i in range(n):
            w = "".join(SYLLABLES[s] for s in syl[i, : k[i]])
            if w not in seen:
                seen.add(w)
                out.append(w)
                if len(out) == n:
                    break
    return out


def common_words(shared: Path, rng: np.random.Generator, n: int = 3000) -> list[str]:
    abstracts = shared / "uspto-abstracts" / "patents.jsonl"
    words: dict[str, int] = {}
    if abstracts.exists():
        for line in abstracts.open(encoding="utf-8"):
            for w in re.findall(r"[a-z][a-z]+", json.loads(line)["abstract"].lower()):
                words[w] = words.get(w, 0) + 1
    ranked = sorted(words, key=lambda w: -words[w])[:n]
    if len(ranked) < n:
        ranked += pseudo_words(n - len(ranked), rng, set(ranked))
    return ranked


class Generator:
    def __init__(self, counts_file: Path, seed: int = 0, label_words: int = 20, class_words: int = 10,
                 label_share: float = 0.35):
        rng = np.random.default_rng(seed)
        self.labels, counts = load_counts(counts_file)
        self.p = counts / counts.sum()
        common = common_words(SHARED, rng)
        self.common = np.array(common, dtype=object)
        zipf = 1.0 / np.arange(1, len(common) + 1)
        self.common_p = zipf / zipf.sum()
        classes = sorted({c[:3] for c in self.labels})
        made = pseudo_words(len(self.labels) * label_words + len(classes) * class_words, rng, set(common))
        self.label_vocab = np.array(made[: len(self.labels) * label_words], dtype=object).reshape(-1, label_words)
        cls_vocab = np.array(made[len(self.labels) * label_words :], dtype=object).reshape(-1, class_words)
        cls_index = {c: i for i, c in enumerate(classes)}
        self.class_of = np.array([cls_index[c[:3]] for c in self.labels])
        self.cls_vocab = cls_vocab
        self.label_share = label_share
        # 1..5 labels; mean about 2.04 (USPTO-3M: 6,134,189 assignments on 3.0M patents)
        self.k_p = np.array([0.42, 0.28, 0.16, 0.09, 0.05])

    def chunk(self, n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
        k = rng.choice(5, size=n, p=self.k_p) + 1
        # 8 frequency-weighted draws a document; the first k distinct ones are its labels
        draws = rng.choice(len(self.labels), size=(n, 8), p=self.p)
        n_lab = np.empty(n, dtype=np.int64)
        lab_mat = np.full((n, 5), -1, dtype=np.int64)
        for i in range(n):  # 8 items a row: cheap
            u = pd_unique(draws[i])[: k[i]]
            lab_mat[i, : len(u)] = u
            n_lab[i] = len(u)
        # words
        n_words = rng.integers(30, 91, size=n)
        doc = np.repeat(np.arange(n), n_words)
        total = len(doc)
        is_label = rng.random(total) < self.label_share
        which = (rng.random(total) * n_lab[doc]).astype(np.int64)
        lab = lab_mat[doc, which]
        own = rng.random(total) < 0.7  # else the class's shared words
        w_label = self.label_vocab[lab, rng.integers(0, self.label_vocab.shape[1], total)]
        w_class = self.cls_vocab[self.class_of[lab], rng.integers(0, self.cls_vocab.shape[1], total)]
        w_common = self.common[rng.choice(len(self.common), size=total, p=self.common_p)]
        words = np.where(is_label, np.where(own, w_label, w_class), w_common)
        bounds = np.cumsum(n_words)[:-1]
        texts = [" ".join(ws) for ws in np.split(words, bounds)]
        names = np.array(self.labels, dtype=object)
        cpc = [",".join(names[lab_mat[i, : n_lab[i]]]) for i in range(n)]
        return texts, cpc

    def write(self, path: Path, n: int, seed: int, chunk: int = 100_000) -> None:
        rng = np.random.default_rng(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write("text,cpc_ids\n")
            for start in range(0, n, chunk):
                texts, cpc = self.chunk(min(chunk, n - start), rng)
                fh.write("".join(f'{t},"{c}"\n' for t, c in zip(texts, cpc, strict=True)))
        tmp.replace(path)


def pd_unique(a: np.ndarray) -> np.ndarray:
    """Distinct values in order of first appearance."""
    _, idx = np.unique(a, return_index=True)
    return a[np.sort(idx)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, required=True, help="training documents (valid/test get n/10)")
    ap.add_argument("--output", type=Path, required=True, help="folder for train.csv, valid.csv, test.csv")
    ap.add_argument("--counts", type=Path, default=SHARED / "uspto-3m" / "label-counts.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    gen = Generator(args.counts, args.seed)
    for name, n, seed in (("train", args.n, args.seed + 1), ("valid", args.n // 10, args.seed + 2),
                          ("test", args.n // 10, args.seed + 3)):
        gen.write(args.output / f"{name}.csv", n, seed)
        print(f"{name}.csv: {n} rows ({time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
