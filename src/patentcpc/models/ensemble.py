"""Ensembles: members' calibrated probabilities combined with weights tuned on held-out data.

``patentcpc train --model ensemble --members tfidf,PATH_OR_ID --data D --output E``: each member
spec is what ``--model`` accepts. The members are fitted on a training part of ``D``
(``1 - ensemble.valid_fraction``; with ``--eval-data`` on all of ``D``), the weights, the
ensemble's own calibrator and its thresholds on the held-out part (or ``--eval-data``), then the
members are re-fitted on all of ``D`` (``ensemble.refit``, default on; see benchmarks/ensemble.md).

Folder layout (beside ``manifest.json``)::

    ensemble.json     {"format": 1, "members": [{"folder": "member-0", "weight": 0.4, "spec": "tfidf"}, ...]}
    member-0/ ...     each a normal model folder (any kind)

The ensemble's raw score of a label is ``sum_m w_m p_m`` over the members' calibrated
probabilities (a member without the label contributes 0); its calibrator (in the manifest, like
every kind's) maps that to the final probability.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from patentcpc.errors import ModelError
from patentcpc.models.artifact import Manifest, atomic_write_text
from patentcpc.models.base import CPCModel

log = logging.getLogger(__name__)
ENSEMBLE_FILE = "ensemble.json"
_MEMBER_DIR = re.compile(r"^member-\d{1,3}$")


class EnsembleCPCModel(CPCModel):
    kind = "ensemble"

    def __init__(self, manifest: Manifest, members: list[CPCModel], weights: Sequence[float],
                 specs: Sequence[str] | None = None):
        super().__init__(manifest)
        if len(members) != len(weights) or not members:
            raise ModelError("an ensemble needs at least one member and one weight per member")
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.specs = list(specs or [m.kind for m in members])
        index = {c: j for j, c in enumerate(self.labels)}
        self._columns = [np.array([index[c] for c in m.labels], dtype=np.int64) for m in self.members]

    @staticmethod
    def union_labels(members: Sequence[CPCModel]) -> list[str]:
        return sorted({c for m in members for c in m.labels})

    def member_scores(self, texts: Sequence[str], batch_size: int = 64) -> list[np.ndarray]:
        """Each member's (calibrated) scores, aligned on the ensemble's label columns."""
        out = []
        for m, cols in zip(self.members, self._columns, strict=True):
            s = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
            if len(texts):
                s[:, cols] = m.scores(list(texts), batch_size=batch_size)
            out.append(s)
        return out

    def scores(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Weighted mean of the members' probabilities (then the ensemble's calibrator)."""
        return combine(self.member_scores(texts, batch_size), self.weights).astype(np.float32)

    # ----------------------------------------------------------------- persistence
    def _save_weights(self, folder: Path) -> None:
        entries = []
        for i, (m, w, spec) in enumerate(zip(self.members, self.weights, self.specs, strict=True)):
            name = f"member-{i}"
            m.save(folder / name)
            entries.append({"folder": name, "weight": float(w), "spec": spec, "kind": m.kind})
        atomic_write_text(folder / ENSEMBLE_FILE, json.dumps({"format": 1, "members": entries}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> EnsembleCPCModel:
        from patentcpc.models import load_model  # noqa: PLC0415

        folder = Path(path)
        file = folder / ENSEMBLE_FILE
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
            entries = doc["members"]
            names = [e["folder"] for e in entries]
            weights = [float(e["weight"]) for e in entries]
            specs = [str(e.get("spec", "")) for e in entries]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{file}: not a readable ensemble description ({str(exc).splitlines()[0]})") from None
        if doc.get("format") != 1 or not entries:
            raise ModelError(f"{file}: unsupported format or no members")
        for name in names:  # only member-N folders inside this one: nothing outside is ever read
            if not isinstance(name, str) or not _MEMBER_DIR.match(name):
                raise ModelError(f"{file}: member folder '{name}' is not of the form member-N")
        if not all(np.isfinite(weights)) or min(weights) < 0:
            raise ModelError(f"{file}: member weights must be finite and >= 0")
        members = [load_model(folder / name, **kwargs) for name in names]
        model = cls(manifest, members, weights, specs)
        if model.labels != cls.union_labels(members) and not set(cls.union_labels(members)) <= set(model.labels):
            raise ModelError(f"{folder}: the members' labels are not covered by the manifest's")
        return model


def combine(member_scores: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum() if w.sum() > 0 else 1.0
    return sum(wi * s for wi, s in zip(w, member_scores, strict=True)) / total


def weight_grid(n: int, step: float) -> list[tuple[float, ...]]:
    """Every weight vector on the simplex with the given grid step (n members)."""
    k = int(round(1 / step))
    if n == 1:
        return [(1.0,)]
    out = []
    for combo in itertools.product(range(k + 1), repeat=n - 1):
        if sum(combo) <= k:
            out.append(tuple(c / k for c in combo) + ((k - sum(combo)) / k,))
    return out


def tune_weights(member_scores: Sequence[np.ndarray], gold: Sequence[Sequence[str]], labels: Sequence[str],
                 step: float = 0.05) -> tuple[tuple[float, ...], list[dict]]:
    """The grid weights maximizing F1@1 on held-out data (ties: label ranking average
    precision, then the more even weights). Returns (weights, the grid's results)."""
    from sklearn.metrics import label_ranking_average_precision_score  # noqa: PLC0415

    from patentcpc.calibration import multi_hot  # noqa: PLC0415
    from patentcpc.metrics import precision_recall_f1_at_k  # noqa: PLC0415

    y = multi_hot(gold, labels)
    keep = y.sum(1) > 0
    results = []
    for w in weight_grid(len(member_scores), step):
        s = combine(member_scores, w)
        f1 = precision_recall_f1_at_k(s, gold, labels, (1,))["f1@1"]
        lrap = float(label_ranking_average_precision_score(y[keep], s[keep])) if keep.any() else 0.0
        results.append({"weights": list(w), "f1@1": f1, "lrap": lrap})
    best = max(results, key=lambda r: (round(r["f1@1"], 9), round(r["lrap"], 9), -np.std(r["weights"])))
    return tuple(best["weights"]), results


# ----------------------------------------------------------------------------- training


def fit_ensemble(members: list[CPCModel], held, cfg, specs: Sequence[str],
                 manifest_fields: dict | None = None) -> EnsembleCPCModel:
    """Weights, calibrator and thresholds of an ensemble of fitted ``members`` on held-out data
    ``held`` (a PatentData)."""
    from patentcpc.calibration import calibrate_model  # noqa: PLC0415

    labels = EnsembleCPCModel.union_labels(members)
    fields = dict(manifest_fields or {})
    manifest = Manifest(kind="ensemble", labels=labels, score_type="probability", threshold=0.5, **fields)
    model = EnsembleCPCModel(manifest, members, [1.0] * len(members), specs)
    per_member = model.member_scores(held.texts)
    weights, grid = tune_weights(per_member, held.labels, labels, cfg.ensemble.weight_step)
    model.weights = np.asarray(weights)
    raw = combine(per_member, weights)
    model.manifest.extra = {**model.manifest.extra, "ensemble": {
        "members": list(specs), "weights": list(weights), "n_heldout": len(held),
        "heldout_f1@1": {"ensemble": max(r["f1@1"] for r in grid),
                         **{f"member-{i}": r["f1@1"] for i, r in enumerate(
                             [next(g for g in grid if g["weights"][i] == 1.0) for i in range(len(members))])}}}}
    if cfg.calibration.method != "none":
        calibrate_model(model, raw, held.labels, cfg.calibration, "probability")
    return model


def with_members(model: EnsembleCPCModel, members: list[CPCModel]) -> EnsembleCPCModel:
    """The same weights, calibrator and thresholds over other (re-fitted) members."""
    labels = EnsembleCPCModel.union_labels(members)
    manifest = dataclasses.replace(model.manifest, labels=labels)
    if labels != model.labels and model.manifest.label_thresholds is not None:
        # thresholds follow their labels; new labels get the global one
        old = dict(zip(model.labels, model.manifest.label_thresholds, strict=True))
        manifest.label_thresholds = [old.get(c, model.manifest.threshold) for c in labels]
    cal = dict(model.manifest.extra.get("calibration") or {})
    if labels != model.labels and cal.get("label_a") is not None:  # per-label maps follow their labels
        for key in ("label_a", "label_b"):
            old_maps = dict(zip(model.labels, cal[key], strict=True))
            cal[key] = [old_maps.get(c) for c in labels]
        manifest.extra = {**manifest.extra, "calibration": cal}
    return EnsembleCPCModel(manifest, members, model.weights, model.specs)
