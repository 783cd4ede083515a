"""Held-out estimate of a transformer trained with ``patentcpc train``'s settings on the shared
abstracts (or titles): a stratified 80/20 split (seed 42) of the file, training on the 80% (which
itself holds out 10% for validation, as ``train`` does by default), evaluation on the 20%.

    python benchmarks/training_holdout.py --model <MiniLM folder> [--set transformer.loss=focal ...]
        [--data ../shared/data/uspto-abstracts/patents.jsonl] [--tag NAME]

One JSON line per run is appended to benchmarks/training_results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "uspto-abstracts" / "patents.jsonl"


KEYS = ("f1@1", "precision@1", "f1@3", "micro_f1", "macro_f1", "section_accuracy@1", "class_accuracy@1")


def write_training_file(data, path: Path, augment_scheme: bool = False) -> Path:
    """The training part of a split as a JSONL file ``train`` reads (raw CPC lists joined by commas);
    with ``augment_scheme``, plus one document per subclass of the training labels that the IPC
    scheme has: its class and subclass titles (``patentcpc.scheme.scheme_documents``)."""
    from patentcpc.io import write_jsonl

    rows = [{"id": r["id"], "text": r["text"], "cpc_ids": ",".join(r["labels"])} for r in data.dataset]
    if augment_scheme:
        from patentcpc.scheme import scheme_documents

        wanted = {code for labels in data.labels for code in labels}
        for text, (code,) in zip(*scheme_documents("subclass", max_subgroups=0), strict=True):
            if code in wanted:  # the first document of a subclass is its title document
                wanted.discard(code)
                rows.append({"id": f"scheme-{code}", "text": text, "cpc_ids": code})
    write_jsonl(iter(rows), path)
    return path


def holdout_split(data_path: str, seed: int, test_fraction: float):
    """The stratified (1 - test_fraction, test_fraction) split every training benchmark uses."""
    from patentcpc.data import load_data, split_data

    return split_data(load_data(data_path), (1 - test_fraction, test_fraction), seed)


def add_split_args(ap: argparse.ArgumentParser) -> None:
    """The options that pick the data and the split, shared by every training benchmark."""
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--test-fraction", type=float, default=0.2)


@dataclass
class SplitRun:
    """One fine-tuning on the training part of a split: the model, the split's parts and the
    training/validation parts ``train`` itself used."""

    cfg: object
    model: object
    train: object
    test: object
    fit_part: object
    valid: object
    train_seconds: float


def fine_tune_on_split(args: argparse.Namespace, forced: list[str] = ()) -> SplitRun:
    """Fine-tune ``args.model`` (or a random-init ``args.arch``) with ``train``'s settings,
    ``args.sets`` and then ``forced`` overrides, on the training part of the split ``args``
    describes (plus the IPC-title documents with ``args.augment_scheme``)."""
    import patentcpc
    from patentcpc.api import train_config
    from patentcpc.training.batches import load_train_eval

    train, test = holdout_split(args.data, args.seed, args.test_fraction)
    cli: dict = {"seed": args.seed}
    if args.model:
        cli["model"] = args.model
    if getattr(args, "arch", None):
        cli["transformer"] = {"arch": args.arch}
    cfg = train_config(cli, [*args.sets, *forced])
    with tempfile.TemporaryDirectory() as tmp:
        train_file = str(write_training_file(train, Path(tmp) / "train.jsonl", getattr(args, "augment_scheme", False)))
        t0 = time.time()
        model = patentcpc.train(cfg, data=train_file, output=Path(tmp) / "model")
        train_s = time.time() - t0
        fit_part, valid = load_train_eval(cfg, train_file, None)  # the same config and seed: the same parts
    return SplitRun(cfg, model, train, test, fit_part, valid, train_s)


def append_result(rec: dict) -> None:
    print(json.dumps(rec))
    with open(HERE / "training_results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(rec) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--arch", default=None)
    add_split_args(ap)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--tag", default="")
    ap.add_argument("--augment-scheme", action="store_true",
                    help="add one IPC-title document per training subclass to the training file")
    args = ap.parse_args()

    import torch

    import patentcpc

    run = fine_tune_on_split(args)
    test_metrics = patentcpc.evaluate(run.model, run.test)
    append_result({"tag": args.tag, "data": Path(args.data).name,
                   "model": run.cfg.model if not args.arch else args.arch,
                   "overrides": args.sets + (["augment_scheme"] if args.augment_scheme else []),
                   "n_train": len(run.train), "n_test": len(run.test), "train_seconds": round(run.train_seconds, 1),
                   **{k: round(float(test_metrics[k]), 4) for k in KEYS},
                   "training": run.model.manifest.extra.get("training", {}),
                   "device": "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)",
                   "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})


if __name__ == "__main__":
    main()
