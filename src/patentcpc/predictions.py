"""Scores to ranked CPC codes: :class:`Prediction` and :func:`rank`, the one place that decides
which codes a score matrix yields (used by ``CPCModel.predict``, the CLI, the batch predictor and
the service through :func:`patentcpc.streaming.format_predictions`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from patentcpc.cpc import ancestors, title
from patentcpc.errors import ConfigError
from patentcpc.metrics import top_k_indices


@dataclass(frozen=True)
class Prediction:
    """One CPC code for one document.

    ``score``: the model's score (a probability for most kinds, a margin for linear SVMs);
    ``assigned``: the score reaches the decision threshold (the model's, or the one given to
    ``predict``); ``title``: the scheme's title (None where unknown); ``path``: the code's
    ancestors, section first, ending with the code itself.
    """

    code: str
    score: float
    title: str | None
    assigned: bool
    path: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"code": self.code, "score": self.score, "title": self.title, "assigned": self.assigned,
                "path": list(self.path)}


NO_CODE = "no code assigned"


def assigned_mask(scores: np.ndarray, thresholds: np.ndarray, abstain_below: float | None = None) -> np.ndarray:
    """Which codes are assigned (documents x labels, bool): every code at or above its threshold,
    and the best code of a document even below its threshold, unless that best score is below
    ``abstain_below`` (then the document gets only the codes above their thresholds, possibly
    none: "no code assigned"). ``abstain_below`` None or 0: the best code is always assigned."""
    scores = np.asarray(scores)
    above = scores >= np.asarray(thresholds)
    if scores.ndim == 2 and scores.shape[0] and scores.shape[1]:
        rows = np.arange(scores.shape[0])
        best = scores.argmax(axis=1)
        force = np.ones(len(rows), dtype=bool) if not abstain_below else scores[rows, best] >= abstain_below
        above[rows[force], best[force]] = True
    return above


def tune_abstention(scores: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str],
                    thresholds: np.ndarray) -> float:
    """The minimum best score below which a document gets no code, tuned on validation data: the
    value that maximizes micro F1 of the assigned codes (:func:`assigned_mask`), the lowest such
    value on ties (0.0: never abstain). Abstaining on a document whose best code is below its
    threshold removes one predicted code and, when that code is a gold one, one hit."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or not scores.shape[0] or not scores.shape[1]:
        return 0.0
    index = {c: j for j, c in enumerate(labels)}
    above = scores >= np.asarray(thresholds)
    rows = np.arange(scores.shape[0])
    best = scores.argmax(axis=1)
    top = scores[rows, best]
    n_gold = sum(len(set(g)) for g in gold)
    tp0 = 0
    hit = np.zeros(len(rows), dtype=bool)
    for i, codes in enumerate(gold):
        cols = [index[c] for c in set(codes) if c in index]
        tp0 += int(above[i, cols].sum()) if cols else 0
        hit[i] = best[i] in cols
    forced = ~above[rows, best]
    if not forced.any() or not n_gold:
        return 0.0
    order = np.argsort(-top[forced], kind="stable")  # forced documents, best score first
    t_sorted, h_sorted = top[forced][order], hit[forced][order]
    n0 = int(above.sum())
    # keeping the first m forced documents (abstaining on the rest): m = 0..len
    tp = tp0 + np.concatenate([[0], np.cumsum(h_sorted)])
    npred = n0 + np.arange(len(t_sorted) + 1)
    f1 = 2 * tp / (npred + n_gold)
    m = int(np.flatnonzero(f1 >= f1.max() - 1e-12)[-1])  # the most documents kept among the best
    if m == len(t_sorted):
        return 0.0
    # abstain below the last kept score (strictly above the first dropped one)
    cut = float(t_sorted[m])
    return float(np.nextafter(cut, np.inf)) if m == 0 else float((cut + t_sorted[m - 1]) / 2)


def set_abstention(model, scores: np.ndarray, gold: Sequence[Sequence[str]]) -> float:
    """Tune :func:`tune_abstention` on validation ``scores`` (the model's output scale) and store it
    in ``model.manifest.extra["abstain_below"]``; the same scores give the conformal table of
    ``predict(coverage=)`` (:func:`patentcpc.conformal.set_conformal`, ``extra["conformal"]``)."""
    from patentcpc.conformal import set_conformal

    t = tune_abstention(scores, gold, model.labels, model.thresholds)
    model.manifest.extra = {**model.manifest.extra, "abstain_below": t}
    set_conformal(model, scores, gold)
    return t


def rank(scores: np.ndarray, labels: Sequence[str], thresholds: np.ndarray, top_k: int | None = None,
         threshold: float | None = None, include_assigned: bool = False,
         abstain_below: float | None = None) -> list[list[Prediction]]:
    """One list per row of ``scores`` (documents x labels), best first:

    * ``top_k`` and ``threshold`` None: the codes whose score reaches their threshold;
    * ``top_k=k``: the k best codes, assigned or not (``Prediction.assigned`` says which);
    * ``threshold=t``: only codes scoring at least ``t`` (``t`` replaces ``thresholds``);
    * ``include_assigned``: the top k plus every assigned code.

    With the model's own thresholds, the best code of a document is assigned even below its
    threshold unless its score is below ``abstain_below`` (the model's tuned or a given minimum):
    then the document may get no code at all, an empty list without ``top_k`` (no code assigned).
    """
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k must be >= 1, not {top_k}")
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ConfigError(f"scores must be (documents, {len(labels)}), not {scores.shape}")
    if threshold is not None:
        above = scores >= np.full(len(labels), threshold, dtype=np.float64)
    else:
        above = assigned_mask(scores, np.asarray(thresholds), abstain_below)
    top = top_k_indices(scores, top_k) if top_k is not None else None
    out = []
    for i in range(scores.shape[0]):
        assigned = np.flatnonzero(above[i])
        if top is None:
            chosen = assigned.tolist()
        elif include_assigned:
            chosen = list(dict.fromkeys(top[i].tolist() + assigned.tolist()))
        elif threshold is not None:
            chosen = [j for j in top[i].tolist() if above[i, j]]
        else:
            chosen = top[i].tolist()
        chosen.sort(key=lambda j: (-scores[i, j], j))
        out.append([_prediction(labels[j], float(scores[i, j]), bool(above[i, j])) for j in chosen])
    return out


def set_predictions(sets, scores: np.ndarray, labels: Sequence[str], thresholds: np.ndarray,
                    abstain_below: float | None = None) -> list[list[Prediction]]:
    """The codes of each conformal set (:class:`patentcpc.conformal.LabelSet`) as Predictions,
    best first, ``assigned`` as :func:`rank` decides it."""
    above = assigned_mask(np.asarray(scores), np.asarray(thresholds), abstain_below)
    index = {c: j for j, c in enumerate(labels)}
    return [[_prediction(c, float(scores[i, index[c]]), bool(above[i, index[c]])) for c in s.codes]
            for i, s in enumerate(sets)]


def _prediction(code: str, score: float, assigned: bool) -> Prediction:
    try:
        path = tuple(ancestors(code))
    except ValueError:  # a label that is not a CPC symbol (a user's own vocabulary)
        path = (code,)
    return Prediction(code, score, title(code), assigned, path)
