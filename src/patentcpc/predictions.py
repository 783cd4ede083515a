"""Scores to ranked CPC codes: :class:`Prediction` and :func:`rank`, the one place that decides
which codes a score matrix yields (used by ``CPCModel.predict``, the CLI, the batch predictor and
the service through :func:`patentcpc.inference.format_predictions`)."""

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


def rank(scores: np.ndarray, labels: Sequence[str], thresholds: np.ndarray, top_k: int | None = None,
         threshold: float | None = None, include_assigned: bool = False) -> list[list[Prediction]]:
    """One list per row of ``scores`` (documents x labels), best first:

    * ``top_k`` and ``threshold`` None: the codes whose score reaches their threshold;
    * ``top_k=k``: the k best codes, assigned or not (``Prediction.assigned`` says which);
    * ``threshold=t``: only codes scoring at least ``t`` (``t`` replaces ``thresholds``);
    * ``include_assigned``: the top k plus every assigned code.

    With the model's own thresholds, the best code of a document is always assigned (as in the CLI,
    the service and batch prediction).
    """
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k must be >= 1, not {top_k}")
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ConfigError(f"scores must be (documents, {len(labels)}), not {scores.shape}")
    th = np.full(len(labels), threshold, dtype=np.float64) if threshold is not None else np.asarray(thresholds)
    above = scores >= th
    if threshold is None and scores.shape[0] and scores.shape[1]:
        above[np.arange(scores.shape[0]), scores.argmax(axis=1)] = True
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


def _prediction(code: str, score: float, assigned: bool) -> Prediction:
    try:
        path = tuple(ancestors(code))
    except ValueError:  # a label that is not a CPC symbol (a user's own vocabulary)
        path = (code,)
    return Prediction(code, score, title(code), assigned, path)
