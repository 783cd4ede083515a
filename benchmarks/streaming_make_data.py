"""Generate a large synthetic CSV (``text,cpc_ids``) for the streaming benchmark.

Texts are abstract-length (about 110 words) bags of words sampled from the shared abstracts'
vocabulary; labels are 1-4 subclasses drawn with a Zipf-like skew from the subclasses of the shared
abstracts and titles. Written in chunks, so the generator itself needs little memory.

    python benchmarks/streaming_make_data.py --rows 1000000 --output /tmp/big.csv

Write the file outside the repository (it is about 800 MB for a million rows).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FALLBACK_WORDS = ["method", "system", "device", "data", "signal", "layer", "network", "wireless", "semiconductor",
                  "composition", "polymer", "vehicle", "engine", "sensor", "image", "memory", "processor"]
FALLBACK_CODES = ["G06F", "H04L", "A61K", "H04W", "H01L", "B29C", "C12N", "G01N", "Y02E", "A61B"]


def vocabulary(shared: Path) -> tuple[list[str], list[str]]:
    words: list[str] = []
    codes: set[str] = set()
    abstracts = shared / "uspto-abstracts" / "patents.jsonl"
    titles = shared / "uspto-titles" / "train.csv"
    if abstracts.exists():
        for line in abstracts.open(encoding="utf-8"):
            rec = json.loads(line)
            words.extend(re.findall(r"[A-Za-z][A-Za-z\-]+", rec["abstract"]))
            codes.update(re.findall(r"\b([A-HY]\d\d[A-Z])\b", rec["cpc"]))
    if titles.exists():
        with titles.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                codes.update(c.strip() for c in row["cpc_ids"].split(",") if c.strip())
    return (words or FALLBACK_WORDS), sorted(codes) or FALLBACK_CODES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--output", type=Path, required=True)
    ap.add_argument("--words", type=int, default=110, help="mean words per text")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shared", type=Path, default=SHARED)
    args = ap.parse_args()

    rng = np.random.default_rng(args.seed)
    words, codes = vocabulary(args.shared)
    words_arr = np.array(words, dtype=object)  # token stream: sampling keeps natural word frequencies
    codes_arr = np.array(codes, dtype=object)[rng.permutation(len(codes))]  # frequent codes in every section
    p = 1.0 / np.arange(1, len(codes) + 1) ** 1.1
    p /= p.sum()
    chunk = 20_000
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "cpc_ids"])
        for start in range(0, args.rows, chunk):
            n = min(chunk, args.rows - start)
            lengths = np.clip(rng.normal(args.words, 30, n).astype(int), 20, 400)
            tokens = words_arr[rng.integers(0, len(words_arr), lengths.sum())]
            n_labels = rng.integers(1, 5, n)
            labels = codes_arr[rng.choice(len(codes_arr), n_labels.sum(), p=p)]
            t = l_ = 0
            for i in range(n):
                text = " ".join(tokens[t : t + lengths[i]])
                t += lengths[i]
                labs = ",".join(dict.fromkeys(labels[l_ : l_ + n_labels[i]]))
                l_ += n_labels[i]
                w.writerow([text, labs])
    print(f"wrote {args.rows} rows to {args.output} ({args.output.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
