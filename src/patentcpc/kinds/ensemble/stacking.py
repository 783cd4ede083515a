"""Stacking: a linear model on per-(document, label) features of an ensemble's inputs.

For every document and label, each input (a member's calibrated probabilities, or a neighbour
vote) gives three features: the label's probability ``p``, the log of its rank in the document
(1 = the input's top code) and its gap to the best *other* label of the document (``p - max other
p``: positive only for the input's top code, the top-1 margin there). One more feature is the
label's training frequency, ``log(1 + number of training documents carrying it)``.

Training (:func:`fit_stacker`) uses cross-fitted inputs (every document scored by members that did
not see it), the documents' gold codes and, per document, the label counts of the data its
members were trained on; the rows are each document's *candidates*: the union of every input's
top ``top_k`` codes. The model is a standardised L2 logistic regression ("is this code one of the
document's gold codes"), so a fitted :class:`Stacker` is a few arrays, stored as JSON in the
ensemble's folder (no pickle). At prediction time it scores every label of the document, candidates
or not (the features exist for every label; codes far down every input's ranking get low scores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from patentcpc.errors import ModelError

FORMAT = 1
PER_INPUT = ("p", "log_rank", "gap")
CHUNK = 1024  # documents whose (labels x features) block is built at once
MAX_FIT_DOCS = 50_000  # the stacker is fitted on a seeded sample of at most this many documents


def _fit_rows(rows: np.ndarray) -> np.ndarray:
    """``rows``, or a seeded sample of :data:`MAX_FIT_DOCS` of them (sorted) where there are more."""
    if len(rows) <= MAX_FIT_DOCS:
        return rows
    return np.sort(np.random.default_rng(0).choice(rows, MAX_FIT_DOCS, replace=False))


def _rows(log_counts: np.ndarray, rows: slice) -> np.ndarray:
    c = np.asarray(log_counts, dtype=np.float64)
    return c[rows] if c.ndim == 2 else c


def features(inputs: Sequence[np.ndarray], log_counts: np.ndarray) -> np.ndarray:
    """(documents, labels, 3 * inputs + 1) features of every (document, label) pair. ``inputs``:
    each input's (documents, labels) scores; ``log_counts``: (labels,) or (documents, labels)
    values of ``log1p(training count)``."""
    n, n_labels = inputs[0].shape
    cols = []
    for s in inputs:
        s = np.asarray(s, dtype=np.float64)
        order = np.argsort(-s, axis=1, kind="stable")
        rank = np.empty_like(order)
        rank[np.arange(n)[:, None], order] = np.arange(1, n_labels + 1)[None, :]
        if n_labels > 1:
            top2 = np.take_along_axis(s, order[:, :2], axis=1)
            best_other = np.where(rank == 1, top2[:, 1:2], top2[:, :1])
        else:
            best_other = np.zeros_like(s)
        cols += [s, np.log(rank), s - best_other]
    cols.append(np.broadcast_to(np.asarray(log_counts, dtype=np.float64), (n, n_labels)))
    return np.stack(cols, axis=-1)


def candidates(inputs: Sequence[np.ndarray], top_k: int) -> np.ndarray:
    """(documents, labels) boolean mask: the union of every input's ``top_k`` codes."""
    mask = np.zeros(inputs[0].shape, dtype=bool)
    k = min(top_k, inputs[0].shape[1])
    for s in inputs:
        top = np.argpartition(-np.asarray(s), k - 1, axis=1)[:, :k]
        np.put_along_axis(mask, top, True, axis=1)
    return mask


@dataclass
class Stacker:
    """A fitted stacker: standardisation, coefficients and intercept of the logistic regression."""

    n_inputs: int
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    top_k: int = 20
    C: float = 1.0

    @property
    def feature_names(self) -> list[str]:
        return [f"input-{i}-{f}" for i in range(self.n_inputs) for f in PER_INPUT] + ["log_count"]

    def scores(self, inputs: Sequence[np.ndarray], log_counts: np.ndarray) -> np.ndarray:
        """Probability of every (document, label) pair being a gold code."""
        if len(inputs) != self.n_inputs:
            raise ModelError(f"the stacker was fitted on {self.n_inputs} inputs, not {len(inputs)}")
        out = np.zeros(np.shape(inputs[0]), dtype=np.float64)
        for start in range(0, len(out), CHUNK):
            rows = slice(start, start + CHUNK)
            f = features([np.asarray(s)[rows] for s in inputs], _rows(log_counts, rows))
            z = (f - self.mean) / self.scale @ self.coef + self.intercept
            out[rows] = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        return out

    def to_dict(self) -> dict:
        return {"kind": "stack", "format": FORMAT, "n_inputs": self.n_inputs, "features": self.feature_names,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "coef": self.coef.tolist(),
                "intercept": float(self.intercept), "top_k": self.top_k, "C": self.C}

    @classmethod
    def from_dict(cls, d: object, where: str = "stacker") -> Stacker:
        try:
            if not isinstance(d, dict) or d.get("kind") != "stack" or d.get("format") != FORMAT:
                raise ValueError("not a stacker of a known format")
            n = int(d["n_inputs"])
            arrays = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef")]
            intercept = float(d["intercept"])
            top_k, c = int(d.get("top_k", 20)), float(d.get("C", 1.0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: not a readable stacker ({str(exc).splitlines()[0]})") from None
        width = len(PER_INPUT) * n + 1
        if n < 1 or any(a.shape != (width,) for a in arrays) or not all(np.isfinite(a).all() for a in arrays):
            raise ModelError(f"{where}: a stacker of {n} inputs needs {width} finite values per array")
        if not np.isfinite(intercept) or (arrays[1] <= 0).any():
            raise ModelError(f"{where}: the stacker's intercept must be finite and its scales > 0")
        return cls(n, arrays[0], arrays[1], arrays[2], intercept, top_k, c)


def fit_stacker(inputs: Sequence[np.ndarray], gold: np.ndarray, log_counts: np.ndarray, top_k: int = 20,
                C: float = 1.0) -> Stacker:  # noqa: N803
    """Fit a :class:`Stacker` on cross-fitted ``inputs`` ((documents, labels) each), the multi-hot
    ``gold`` (documents, labels) and ``log_counts`` (see :func:`features`), on each document's
    candidates (:func:`candidates`); above :data:`MAX_FIT_DOCS` documents, on a seeded sample of them."""
    from sklearn.linear_model import LogisticRegression

    if len(gold) > MAX_FIT_DOCS:  # a few features: 50,000 documents' candidates are plenty, and memory stays bounded
        keep = _fit_rows(np.arange(len(gold)))
        return fit_stacker([np.asarray(s)[keep] for s in inputs], np.asarray(gold)[keep], _rows(log_counts, keep),
                           top_k, C)
    mask = candidates(inputs, top_k)
    n = len(mask)
    x = np.concatenate([features([np.asarray(s)[r] for s in inputs], _rows(log_counts, r))[mask[r]]
                        for r in (slice(i, i + CHUNK) for i in range(0, max(n, 1), CHUNK))])
    y = np.asarray(gold, dtype=bool)[mask]
    mean, scale = x.mean(0), x.std(0)
    scale[~(scale > 1e-12)] = 1.0
    if y.all() or not y.any():  # one class only: a constant probability
        coef, intercept = np.zeros(x.shape[1]), float(np.log((y.mean() + 1e-6) / (1 - y.mean() + 1e-6)))
    else:
        lr = LogisticRegression(C=C, max_iter=2000).fit((x - mean) / scale, y)
        coef, intercept = lr.coef_[0].astype(np.float64), float(lr.intercept_[0])
    return Stacker(len(inputs), mean, scale, coef, intercept, top_k, C)


def crossfit_scores(inputs: Sequence[np.ndarray], gold: np.ndarray, log_counts: np.ndarray, folds: np.ndarray,
                    top_k: int = 20, C: float = 1.0) -> np.ndarray:  # noqa: N803
    """Cross-fitted stacker probabilities: the documents of each fold (``folds``: one id per
    document) scored by a stacker fitted (:func:`fit_stacker`) on the other folds (on a seeded
    sample of :data:`MAX_FIT_DOCS` of them, drawn before any copy); with a single fold, the
    in-sample scores of one stacker fitted on all. Costs one stacker fit per fold."""
    folds = np.asarray(folds)
    if folds.shape != (len(gold),):
        raise ValueError(f"folds: one fold id per document ({len(gold)}), not shape {folds.shape}")
    ids = np.unique(folds)
    if len(ids) < 2:
        return fit_stacker(inputs, gold, log_counts, top_k, C).scores(inputs, log_counts)
    out = np.zeros(np.shape(inputs[0]), dtype=np.float64)
    for f in ids:
        rest = _fit_rows(np.flatnonzero(folds != f))
        held = np.flatnonzero(folds == f)
        part = fit_stacker([np.asarray(s)[rest] for s in inputs], np.asarray(gold)[rest], _rows(log_counts, rest),
                           top_k, C)
        out[held] = part.scores([np.asarray(s)[held] for s in inputs], _rows(log_counts, held))
    return out
