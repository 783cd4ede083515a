"""TF-IDF + fine-tuned all-MiniLM-L6-v2 ensemble on one seeded 80/20 split of uspto-abstracts.

The split folder (made by the commands in benchmarks/ensemble.md) holds ``train.jsonl`` (80 %),
``test.jsonl`` (20 %) and the ensemble's own inner split of ``train.jsonl`` (``part.jsonl`` /
``heldout.jsonl``: ``split_data(train, (0.8, 0.2), 42)``, what ``train --model ensemble`` does),
and MiniLM members fine-tuned with ``patentcpc train --model $MINILM`` on ``part.jsonl``
(``minilm_part``) and, for the re-fit, on ``train.jsonl`` (``minilm_train``). This script trains the
TF-IDF members, builds the ensemble with the library functions the ``train --model ensemble``
command calls (:func:`fit_ensemble` on the held-out part, :func:`with_members` for the re-fit),
saves it and evaluates every model on ``test.jsonl`` with ``patentcpc evaluate --json``.

    PYTHONPATH=src python benchmarks/ensemble_bench.py /tmp/cal/s0
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from patentcpc.calibration import calibrate_model
from patentcpc.config import TrainConfig
from patentcpc.data import load_data, split_data
from patentcpc.kinds.ensemble.model import fit_ensemble, with_members
from patentcpc.registry import load_model, train_model

KEYS = ("f1@1", "precision@1", "f1@3", "micro_f1", "mean_predicted_labels", "ece@1", "auroc@1")


def evaluate(folder: Path, test: Path) -> dict:
    r = subprocess.run([sys.executable, "-m", "patentcpc", "evaluate", "--model", str(folder), "--data", str(test),
                        "--json"], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def ensure_calibrated(folder: Path, data: Path) -> None:
    """A MiniLM member trained before calibration existed: fit its calibrator (and thresholds) on
    the validation split its trainer held out (split_data(part, (0.9, 0.1), 42))."""
    m = load_model(folder)
    if "calibration" in m.manifest.extra:
        return
    _, valid = split_data(load_data(data), (0.9, 0.1), 42)
    calibrate_model(m, m.raw_scores(valid.texts), valid.labels, raw_score_type="probability")
    m.manifest.extra["calibration"]["info"]["fitted_after_training"] = "benchmarks/ensemble_bench.py"
    from patentcpc.models.artifact import write_manifest

    write_manifest(folder, m.manifest)


def main() -> None:
    root = Path(sys.argv[1])
    test = root / "test.jsonl"
    cfg = TrainConfig(model="ensemble")
    results = {}
    tf_part = root / "tfidf_part"
    if not tf_part.exists():
        train_model(TrainConfig(model="tfidf"), str(root / "part.jsonl"), None, tf_part)
    ensure_calibrated(root / "minilm_part", root / "part.jsonl")
    members = [load_model(tf_part), load_model(root / "minilm_part")]
    held = load_data(root / "heldout.jsonl")
    ens = fit_ensemble(members, held, cfg, ["tfidf", "all-MiniLM-L6-v2"])
    print("weights", ens.weights.tolist(), ens.manifest.extra["ensemble"]["heldout_f1@1"], flush=True)
    ens.save(root / "ensemble_part")
    for name in ("tfidf_part", "minilm_part", "ensemble_part"):
        results[name] = evaluate(root / name, test)
        print(name, {k: round(results[name].get(k, float("nan")), 4) for k in KEYS}, flush=True)
    if (root / "minilm_train" / "manifest.json").exists():
        tf_train = root / "tfidf_train"
        if not tf_train.exists():
            train_model(TrainConfig(model="tfidf"), str(root / "train.jsonl"), None, tf_train)
        refit = with_members(ens, [load_model(tf_train), load_model(root / "minilm_train")])
        refit.manifest.extra["ensemble"]["refit_on_all"] = True
        refit.save(root / "ensemble_refit")
        for name in ("tfidf_train", "minilm_train", "ensemble_refit"):
            results[name] = evaluate(root / name, test)
            print(name, {k: round(results[name].get(k, float("nan")), 4) for k in KEYS}, flush=True)
    (root / "ensemble_results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
