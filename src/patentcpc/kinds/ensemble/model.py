"""Ensembles: members' calibrated probabilities (and neighbour votes) combined with weights tuned
on data the members did not see.

``patentcpc train --model ensemble --members tfidf,PATH_OR_ID --data D --output E``: each member
spec is what ``--model`` accepts. Training (:mod:`patentcpc.kinds.ensemble.trainer`) cross-fits the
members (``ensemble.folds``) or holds out a part, tunes the weights, the ensemble's own calibrator
and its thresholds on the members' predictions for documents they were not trained on, then keeps
members trained on all of ``D`` (see benchmarks/ensemble.md).

With ``ensemble.neighbours`` (off by default), every encoder member (a transformer) also brings a
*neighbour vote* (:class:`~patentcpc.kinds.ensemble.neighbours.NeighbourVote`): the codes of the training
documents nearest to the text in that member's own embedding space, from the same encoder pass as
its scores, as one more weighted input.

With ``ensemble.bagging``, a cross-fitted member is saved as a *bag* (:func:`bag`): an
equal-weight ensemble folder of its fold models and its all-data model, so the member's
probability is their mean.

Folder layout (beside ``manifest.json``)::

    ensemble.json     {"format": 2, "members": [{"folder": "member-0", "weight": 0.4, "spec": "tfidf"},
                        {"folder": "member-1", "weight": 0.35, "spec": "...",
                         "neighbours": {"file": "neighbours-1.safetensors", "weight": 0.25}}]}
    member-0/ ...     each a normal model folder (any kind; a bag is an ensemble folder)
    neighbours-1.safetensors

The ensemble's raw score of a label is ``sum_i w_i p_i`` over its inputs (members' calibrated
probabilities, neighbour votes; an input without the label contributes 0, or its own lowest score
on the document where that is below 0, see :func:`aligned`); its calibrator (in the manifest, like
every kind's) maps that to the final probability.

With ``ensemble.fusion=stack`` the raw score is instead a *stacker*'s probability
(:mod:`patentcpc.kinds.ensemble.stacking`: a logistic regression on each input's probability, rank and gap
to the best other label, and the label's training count), fitted on the same cross-fitted inputs;
``ensemble.json`` is then format 3 with a ``fusion`` entry (the stacker's arrays and the label
counts, JSON); the calibrator, thresholds and conformal table are fitted on its cross-fitted output
(one stacker per fold, fitted on the other folds: :func:`fit_ensemble_scored`).
A folder without a ``fusion`` entry (format 1 or 2) is a weighted mean, as it always was.
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
from patentcpc.folder_files import read_folder_json
from patentcpc.kinds.ensemble.neighbours import NeighbourVote
from patentcpc.kinds.ensemble.stacking import Stacker
from patentcpc.models.artifact import Manifest, atomic_write_text, read_manifest
from patentcpc.models.base import CPCModel

log = logging.getLogger(__name__)
ENSEMBLE_FILE = "ensemble.json"
_MEMBER_DIR = re.compile(r"^member-\d{1,3}$")
_NEIGHBOUR_FILE = re.compile(r"^neighbours-\d{1,3}\.safetensors$")
MAX_GRID = 2000  # weight vectors tried at most (the grid step doubles until it fits)
# how a code a member does not know is scored (:func:`aligned`): "lowest" since 0.2.0; a folder
# written before (no "unknown_codes" in ensemble.json) keeps "zero", what its fusion was fitted on
UNKNOWN_CODES = ("lowest", "zero")


class EnsembleCPCModel(CPCModel):
    kind = "ensemble"

    def __init__(self, manifest: Manifest, members: list[CPCModel], weights: Sequence[float],
                 specs: Sequence[str] | None = None, neighbours: Sequence[NeighbourVote | None] | None = None,
                 neighbour_weights: Sequence[float] | None = None, stacker: Stacker | None = None,
                 label_counts: dict[str, float] | None = None, unknown_codes: str = "lowest"):
        super().__init__(manifest)
        if unknown_codes not in UNKNOWN_CODES:
            raise ModelError(f"unknown_codes must be one of {', '.join(UNKNOWN_CODES)}, not '{unknown_codes}'")
        self.unknown_codes = unknown_codes
        if len(members) != len(weights) or not members:
            raise ModelError("an ensemble needs at least one member and one weight per member")
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.specs = list(specs or [m.kind for m in members])
        self.neighbours = list(neighbours or [None] * len(members))
        self.neighbour_weights = np.asarray(neighbour_weights if neighbour_weights is not None
                                            else [0.0] * len(members), dtype=np.float64)
        if len(self.neighbours) != len(members) or len(self.neighbour_weights) != len(members):
            raise ModelError("an ensemble needs one neighbour entry (or None) per member")
        index = {c: j for j, c in enumerate(self.labels)}
        self._columns = [np.array([index[c] for c in m.labels], dtype=np.int64) for m in self.members]
        self.stacker = stacker
        self.label_counts = dict(label_counts or {})
        if stacker is not None and stacker.n_inputs != len(self.input_names):
            raise ModelError(f"the stacker was fitted on {stacker.n_inputs} inputs, the ensemble has "
                             f"{len(self.input_names)}")

    @property
    def fusion(self) -> str:
        """``weights`` (weighted mean of the inputs) or ``stack`` (:mod:`patentcpc.kinds.ensemble.stacking`)."""
        return "weights" if self.stacker is None else "stack"

    @property
    def log_counts(self) -> np.ndarray:
        """``log(1 + training count)`` of every label (the stacker's frequency feature)."""
        return np.log1p(np.array([self.label_counts.get(c, 0.0) for c in self.labels], dtype=np.float64))

    def fuse(self, inputs: Sequence[np.ndarray], log_counts: np.ndarray | None = None) -> np.ndarray:
        """The raw (uncalibrated) ensemble score of the inputs: their weighted mean, or the
        stacker's probability (``log_counts``: per label or per document and label; default the
        ensemble's own)."""
        if self.stacker is None:
            return combine(inputs, self.input_weights)
        return self.stacker.scores(inputs, self.log_counts if log_counts is None else log_counts)

    def explain_members(self) -> list:
        """The members (a bag: its all-data model only, the last one)."""
        return self.members[-1:] if self.is_bag else list(self.members)

    @property
    def is_bag(self) -> bool:
        """Whether this ensemble is a *bag* (:func:`bag`): several fits of one member spec."""
        return _bag_manifest(self.manifest)

    @staticmethod
    def union_labels(members: Sequence[CPCModel]) -> list[str]:
        return sorted({c for m in members for c in m.labels})

    @property
    def input_names(self) -> list[str]:
        """The weighted inputs: ``member-i`` for every member, ``member-i-neighbours`` for every
        neighbour vote (in this order; :attr:`input_weights` and :meth:`inputs` follow it)."""
        return ([f"member-{i}" for i in range(len(self.members))]
                + [f"member-{i}-neighbours" for i, v in enumerate(self.neighbours) if v is not None])

    @property
    def input_weights(self) -> np.ndarray:
        extra = [w for v, w in zip(self.neighbours, self.neighbour_weights, strict=True) if v is not None]
        return np.concatenate([self.weights, np.asarray(extra, dtype=np.float64)])

    @input_weights.setter
    def input_weights(self, weights: Sequence[float]) -> None:
        w = [float(x) for x in weights]
        n = len(self.members)
        self.weights = np.asarray(w[:n], dtype=np.float64)
        rest = iter(w[n:])
        self.neighbour_weights = np.asarray([next(rest) if v is not None else 0.0 for v in self.neighbours])

    def inputs(self, texts: Sequence[str], batch_size: int = 64, skip_unweighted: bool = False) -> list[np.ndarray]:
        """Each input's scores on the ensemble's label columns (:attr:`input_names` order);
        ``skip_unweighted``: inputs of weight 0 are zeros, not computed."""
        texts = list(texts)
        scores, votes = [], []
        for m, cols, vote, w, wv in zip(self.members, self._columns, self.neighbours, self.weights,
                                        self.neighbour_weights, strict=True):
            use_vote = bool(texts) and vote is not None and not (skip_unweighted and wv == 0)
            own = None  # the member's scores on its labels, where computed
            if use_vote:
                own, emb = m.scores_and_embeddings(texts, batch_size=batch_size)
                votes.append(vote.aligned(emb, self.labels))
            elif texts and not (skip_unweighted and w == 0):
                own = m.scores(texts, batch_size=batch_size)
            s = (aligned(own, cols, len(self.labels), self.unknown_codes) if own is not None
                 else np.zeros((len(texts), len(self.labels)), dtype=np.float64))
            if vote is not None and not use_vote:
                votes.append(np.zeros_like(s))
            scores.append(s)
        return scores + votes

    def member_scores(self, texts: Sequence[str], batch_size: int = 64) -> list[np.ndarray]:
        """Each member's (calibrated) scores, aligned on the ensemble's label columns."""
        return self.inputs(texts, batch_size)[: len(self.members)]

    def raw_scores(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Weighted mean of the inputs, or the stacker's probability (then the ensemble's calibrator);
        a weighted mean skips the inputs of weight 0 (the stacker reads every input)."""
        return self.fuse(self.inputs(texts, batch_size, skip_unweighted=self.stacker is None)).astype(np.float32)

    # ----------------------------------------------------------------- persistence
    def _save_weights(self, folder: Path) -> None:
        entries = []
        for i, (m, w, spec, vote, wv) in enumerate(zip(self.members, self.weights, self.specs, self.neighbours,
                                                       self.neighbour_weights, strict=True)):
            name = f"member-{i}"
            m.save(folder / name)
            entry = {"folder": name, "weight": float(w), "spec": spec, "kind": m.kind}
            if vote is not None:
                vote.save(folder / f"neighbours-{i}.safetensors")
                entry["neighbours"] = {"file": f"neighbours-{i}.safetensors", "weight": float(wv)}
            entries.append(entry)
        doc: dict = {"format": 2, "members": entries, "unknown_codes": self.unknown_codes}
        if self.stacker is not None:  # format 3: a reader that does not know stacking refuses the folder
            doc = {"format": 3, "members": entries, "unknown_codes": self.unknown_codes,
                   "fusion": {**self.stacker.to_dict(), "label_counts": {c: float(self.label_counts.get(c, 0.0))
                                                                         for c in self.labels}}}
        atomic_write_text(folder / ENSEMBLE_FILE, json.dumps(doc, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> EnsembleCPCModel:
        from patentcpc.registry import load_model

        folder = Path(path)
        file = folder / ENSEMBLE_FILE
        doc = read_folder_json(folder, ENSEMBLE_FILE, error=ModelError, what="the model folder")
        try:
            entries = doc["members"]
            names = [e["folder"] for e in entries]
            weights = [float(e["weight"]) for e in entries]
            specs = [str(e.get("spec", "")) for e in entries]
            votes = [e.get("neighbours") for e in entries]
            vote_files = [v["file"] if v is not None else None for v in votes]
            vote_weights = [float(v["weight"]) if v is not None else 0.0 for v in votes]
            unknown = doc.get("unknown_codes", "zero")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{file}: not a readable ensemble description ({str(exc).splitlines()[0]})") from None
        if doc.get("format") not in (1, 2, 3) or not isinstance(entries, list) or not entries:
            raise ModelError(f"{file}: unsupported format or no members")
        if unknown not in UNKNOWN_CODES:
            raise ModelError(f"{file}: unknown_codes must be one of {', '.join(UNKNOWN_CODES)}")
        stacker, counts = None, None
        if doc.get("format") == 3:
            fusion = doc.get("fusion")
            stacker = Stacker.from_dict(fusion, str(file))
            counts = fusion.get("label_counts")
            if not isinstance(counts, dict) or not all(
                    isinstance(v, int | float) and np.isfinite(v) and v >= 0 for v in counts.values()):
                raise ModelError(f"{file}: the stacker's label_counts must map labels to counts >= 0")
        for name in names:  # only member-N folders inside this one: nothing outside is ever read
            if not isinstance(name, str) or not _MEMBER_DIR.match(name):
                raise ModelError(f"{file}: member folder '{name}' is not of the form member-N")
        for name in vote_files:
            if name is not None and (not isinstance(name, str) or not _NEIGHBOUR_FILE.match(name)):
                raise ModelError(f"{file}: neighbour file '{name}' is not of the form neighbours-N.safetensors")
        if not all(np.isfinite(weights + vote_weights)) or min(weights + vote_weights) < 0:
            raise ModelError(f"{file}: member weights must be finite and >= 0")
        for name in names:  # a real folder: no link can make loading loop or leave this folder
            if (folder / name).is_symlink() or not (folder / name).is_dir():
                raise ModelError(f"{file}: member '{name}' is not a folder inside {folder}")
        for name in names:  # only a bag may be nested, one level deep: checked before any member loads
            member = read_manifest(folder / name)
            if member.kind == "ensemble" and (_bag_manifest(manifest) or not _bag_manifest(member)):
                raise ModelError(f"{file}: member '{name}' is an ensemble (only bags of one spec may be members)")
        members = [load_model(folder / name, **kwargs) for name in names]
        neighbours = [NeighbourVote.load(folder / f) if f is not None else None for f in vote_files]
        for m, vote in zip(members, neighbours, strict=True):
            if vote is not None and not hasattr(m, "scores_and_embeddings"):
                raise ModelError(f"{file}: a neighbour vote needs an encoder member, not '{m.kind}'")
        if not set(cls.union_labels(members)) <= set(manifest.labels):
            raise ModelError(f"{folder}: the members' labels are not covered by the manifest's")
        return cls(manifest, members, weights, specs, neighbours, vote_weights, stacker, counts, unknown)


def aligned(scores: np.ndarray, cols: np.ndarray, n_labels: int, unknown_codes: str = "lowest") -> np.ndarray:
    """A member's ``scores`` (documents x its labels) on the ensemble's ``n_labels`` columns
    (``cols``: where each of its labels goes). With ``unknown_codes="lowest"`` a code the member
    does not know ranks below every code it knows: 0 for a member whose scores are probabilities,
    just below the document's lowest score where that is below 0 (the cold-start ``scheme`` model's
    uncalibrated margins are all negative: a 0 there put the CPC-only codes it cannot know at the
    top of its ranking). ``"zero"``: 0 always (ensemble folders written before 0.2.0)."""
    scores = np.asarray(scores, dtype=np.float64)
    fill = np.zeros((len(scores), 1))
    if unknown_codes == "lowest" and scores.size:
        low = np.min(np.where(np.isnan(scores), np.inf, scores), axis=1, keepdims=True)
        fill = np.where(low < 0, np.nextafter(low, -np.inf), 0.0)
    out = np.repeat(fill, n_labels, axis=1)
    out[:, cols] = scores
    return out


def _thresholds_on(model: CPCModel, labels: Sequence[str]) -> list[float]:
    """``model``'s thresholds following their labels onto ``labels`` (new ones: its global one)."""
    own = dict(zip(model.labels, model.thresholds.tolist(), strict=True))
    return [float(own.get(c, model.manifest.threshold)) for c in labels]


def _bag_manifest(manifest: Manifest) -> bool:
    info = manifest.extra.get("ensemble")
    return isinstance(info, dict) and bool(info.get("bag_of"))


def bag(models: Sequence[CPCModel], spec: str) -> EnsembleCPCModel:
    """A *bag*: the equal-weight mean of several fits of one member spec (its fold models, then its
    all-data model, which lends the bag its text view, thresholds and level). No calibrator of its
    own: the mean of calibrated probabilities is a probability."""
    full = models[-1]
    labels = EnsembleCPCModel.union_labels(models)
    manifest = Manifest(kind="ensemble", labels=labels, label_level=full.manifest.label_level,
                        text_view=full.manifest.text_view, score_type="probability",
                        threshold=full.manifest.threshold, label_thresholds=_thresholds_on(full, labels),
                        training_data=full.manifest.training_data, config=full.manifest.config,
                        extra={"ensemble": {"bag_of": spec, "members": [spec] * len(models),
                                            "weights": [1.0] * len(models)}})
    return EnsembleCPCModel(manifest, list(models), [1.0] * len(models), [spec] * len(models))


def label_counts(gold: Sequence[Sequence[str]], scale: float = 1.0) -> dict[str, float]:
    """Number of documents carrying each code in ``gold``, times ``scale``."""
    from collections import Counter

    return {c: n * scale for c, n in Counter(c for g in gold for c in set(g)).items()}


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
    """The grid weights maximizing F1@1 + label ranking average precision on held-out data (ties:
    the more even weights). LRAP reads every gold code's rank, so on a hundred documents it picks
    steadier weights than F1@1 alone (benchmarks/ensemble.md). The grid step doubles until the
    grid has at most ``MAX_GRID`` points. Returns (weights, the grid's results)."""
    from patentcpc.calibration import multi_hot
    from patentcpc.metrics import label_ranking_average_precision, precision_recall_f1_at_k

    y = multi_hot(gold, labels)
    keep = y.sum(1) > 0
    y_kept = y[keep]  # the documents with a gold code: LRAP's rows at every grid point
    grid = weight_grid(len(member_scores), step)
    while len(grid) > MAX_GRID:
        step *= 2
        grid = weight_grid(len(member_scores), step)
    results = []
    for w in grid:
        s = combine(member_scores, w)
        f1 = precision_recall_f1_at_k(s, gold, labels, (1,))["f1@1"]
        lrap = label_ranking_average_precision(y_kept, s[keep]) if keep.any() else 0.0
        results.append({"weights": list(w), "f1@1": f1, "lrap": lrap})
    best = max(results, key=lambda r: (round(r["f1@1"] + r["lrap"], 9), -np.std(r["weights"])))
    return tuple(best["weights"]), results


# ----------------------------------------------------------------------------- training


def fit_ensemble(members: list[CPCModel], held, cfg, specs: Sequence[str], manifest_fields: dict | None = None,
                 **kwargs) -> EnsembleCPCModel:
    """:func:`fit_ensemble_scored`'s ensemble (the same arguments)."""
    return fit_ensemble_scored(members, held, cfg, specs, manifest_fields, **kwargs)[0]


def fit_ensemble_scored(members: list[CPCModel], held, cfg, specs: Sequence[str],
                        manifest_fields: dict | None = None, *,
                        neighbours: Sequence[NeighbourVote | None] | None = None,
                        inputs: Sequence[np.ndarray] | None = None,
                        held_counts: np.ndarray | None = None, counts: dict[str, float] | None = None,
                        folds: np.ndarray | None = None) -> tuple[EnsembleCPCModel, np.ndarray]:
    """Weights (or, with ``ensemble.fusion=stack``, the stacker), calibrator and thresholds of an
    ensemble of fitted ``members`` (and their neighbour votes) on data they were not trained on:
    ``held`` (``.labels``, and ``.texts`` unless ``inputs`` gives the inputs' scores on them,
    aligned on the members' union labels, e.g. cross-fitted ones). For the stacker's frequency
    feature: ``counts``, the label counts of the data the saved members were trained on (scaled to
    the tuning members' training size), and ``held_counts``, the ``log1p`` label counts the members
    that scored ``held`` were trained on (per label, or per held document and label for
    cross-fitted inputs; default ``counts``).

    A stacker is fitted on all of ``held``, but its calibrator, thresholds and conformal table are
    fitted on its *cross-fitted* output (:func:`~patentcpc.kinds.ensemble.stacking.crossfit_scores`:
    each of ``folds`` scored by a stacker fitted on the others; ``folds``: each held document's
    cross-fitting fold, default a seeded split into ``ensemble.folds`` folds, 5 when that is 0): its
    output on the documents it was fitted on is more confident than on new patents. Returns the
    ensemble and its calibrated scores on ``held`` (for a stacker, those cross-fitted ones: what
    the ensemble's held-out figures are computed on)."""
    from patentcpc.calibration import calibrate_model

    labels = EnsembleCPCModel.union_labels(members)
    fields = dict(manifest_fields or {})
    manifest = Manifest(kind="ensemble", labels=labels, score_type="probability", threshold=0.5, **fields)
    model = EnsembleCPCModel(manifest, members, [1.0] * len(members), specs, neighbours, [1.0] * len(members))
    inputs = list(inputs) if inputs is not None else model.inputs(held.texts)
    if cfg.ensemble.fusion == "weights":
        for spec, m in zip(specs, members, strict=True):
            if m.output_score_type != "probability":
                log.warning("ensemble: member %s gives uncalibrated %s scores, which a weighted mean adds to "
                            "probabilities; --set ensemble.fusion=stack reads them as features", spec,
                            m.output_score_type)
    weights, grid = tune_weights(inputs, held.labels, labels, cfg.ensemble.weight_step)
    model.input_weights = weights
    raw = combine(inputs, weights)
    alone = {name: next(g["f1@1"] for g in grid if g["weights"][i] == 1.0)
             for i, name in enumerate(model.input_names)}
    best = next(g for g in grid if g["weights"] == list(weights))
    f1_ens = best["f1@1"]
    if cfg.ensemble.fusion == "stack":
        from patentcpc.calibration import multi_hot
        from patentcpc.kinds.ensemble.stacking import crossfit_scores, fit_stacker
        from patentcpc.metrics import precision_recall_f1_at_k

        model.label_counts = dict(counts if counts is not None else label_counts(held.labels))
        logc = model.log_counts if held_counts is None else np.asarray(held_counts, dtype=np.float64)
        y = multi_hot(held.labels, labels)
        model.stacker = fit_stacker(inputs, y, logc, cfg.ensemble.stack_top_k, cfg.ensemble.stack_c)
        if folds is None:
            k = cfg.ensemble.folds if cfg.ensemble.folds >= 2 else 5
            folds = np.random.default_rng(cfg.seed).permutation(len(y)) % k
        raw = crossfit_scores(inputs, y, logc, folds, cfg.ensemble.stack_top_k, cfg.ensemble.stack_c)
        f1_ens = precision_recall_f1_at_k(raw, held.labels, labels, (1,))["f1@1"]
    model.manifest.extra = {**model.manifest.extra, "ensemble": {
        "members": list(specs), "inputs": model.input_names, "weights": list(weights), "n_heldout": len(held.labels),
        "fusion": model.fusion, "heldout_f1@1": {"ensemble": f1_ens, **alone}}}
    if cfg.calibration.method != "none":
        return model, calibrate_model(model, raw, held.labels, cfg.calibration, "probability")
    return model, model.calibrate(raw)


def with_members(model: EnsembleCPCModel, members: list[CPCModel],
                 neighbours: Sequence[NeighbourVote | None] | None = None,
                 counts: dict[str, float] | None = None) -> EnsembleCPCModel:
    """The same weights (or stacker), calibrator and thresholds over other (re-fitted) members and
    their neighbour votes (default: the old votes) and label counts (default: the old ones)."""
    labels = EnsembleCPCModel.union_labels(members)
    manifest = dataclasses.replace(model.manifest, labels=labels)
    if labels != model.labels and model.manifest.label_thresholds is not None:
        manifest.label_thresholds = _thresholds_on(model, labels)
    cal = dict(model.manifest.extra.get("calibration") or {})
    if labels != model.labels and cal.get("label_a") is not None:  # per-label maps follow their labels
        for key in ("label_a", "label_b"):
            old_maps = dict(zip(model.labels, cal[key], strict=True))
            cal[key] = [old_maps.get(c) for c in labels]
        manifest.extra = {**manifest.extra, "calibration": cal}
    return EnsembleCPCModel(manifest, members, model.weights, model.specs,
                            model.neighbours if neighbours is None else neighbours, model.neighbour_weights,
                            model.stacker, model.label_counts if counts is None else counts, model.unknown_codes)
