"""Label sets with a coverage guarantee: split-conformal prediction on the model's calibration data.

At training time every kind scores data it was not fitted on, to fit its calibrator, thresholds and
abstention minimum (:func:`patentcpc.predictions.set_abstention`: ``--eval-data``, a validation
split, a calibration hold-out, or out-of-fold scores of the training data). The same scores, on the
model's output scale (calibrated probabilities once calibrated), give the conformal table stored
in ``manifest.extra["conformal"]`` (plain JSON numbers):

* **nonconformity score** of a calibration document ``i`` with gold codes ``G_i``:
  ``s_i = -max_{y in G_i} score_i(y)``, minus the model's score of its *best-scored gold code*
  (``1 - p(best gold code)`` up to a constant for a probability). A document none of whose gold
  codes the model knows has ``s_i = +inf`` (it cannot be covered). The table holds the ``n``
  values ``b_i = max_{y in G_i} score_i(y)`` sorted (the finite ones, rounded down to 1e-6, which
  only widens sets) and the count of uncoverable documents; above :data:`MAX_STORED` documents
  only every ``stride``-th value, and a threshold falls to the kept value at or below its rank
  (again only wider sets).
* **finite-sample correction**: for a target coverage ``1 - alpha`` the set threshold is
  ``q = the ceil((n + 1)(1 - alpha))-th smallest s_i`` (the ``ceil((n+1)(1-alpha))/n`` empirical
  quantile), i.e. the score threshold ``t = -q`` is the ``k``-th smallest ``b_i`` with
  ``k = floor((n + 1) alpha)``. When ``k < 1`` (too few calibration documents for that coverage)
  or the ``k``-th smallest is an uncoverable document, ``t = -inf``: every label.
* **the set** of a document: every code scoring at least ``t``, and always its best code (a set is
  never empty; adding a code only raises coverage). Under exchangeability of the calibration and
  test documents, ``P(the set holds a gold code) >= 1 - alpha`` (Vovk et al.; Angelopoulos & Bates
  2021, "A gentle introduction to conformal prediction", the LAC/threshold score of Sadinle et
  al. 2019, which gives the smallest mean set size for calibrated scores).

A set larger than ``unsure_above`` codes (default :data:`UNSURE_ABOVE`) marks the document
"unsure": the model cannot narrow it down at that coverage. benchmarks/accuracy.md measures the
coverage and the set sizes on seeded held-out splits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from patentcpc.errors import ConfigError, ModelError

SCORE = "best gold score (nonconformity: minus the score of the best-scored gold code)"
UNSURE_ABOVE = 5  # a set of more codes than this marks the document unsure (benchmarks/accuracy.md)
MAX_STORED = 20_000  # more calibration documents: every stride-th order statistic is kept (conservative)
_ROUND = 1e6


def check_coverage(coverage: float | None, where: str = "coverage") -> float | None:
    """``coverage`` as a float in (0, 1), or None; a :class:`ConfigError` otherwise."""
    if coverage is None:
        return None
    if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not math.isfinite(coverage) \
            or not 0 < coverage < 1:
        raise ConfigError(f"{where} must be a number between 0 and 1 (exclusive), e.g. 0.9, not {coverage!r}")
    return float(coverage)


def best_gold_scores(scores: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    """Per document, the highest score among its gold codes (-inf where the model knows none)."""
    index = {c: j for j, c in enumerate(labels)}
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(len(gold), -np.inf)
    for i, codes in enumerate(gold):
        cols = [index[c] for c in set(codes) if c in index]
        if cols:
            out[i] = scores[i, cols].max()
    return out


def fit_conformal(scores: np.ndarray, gold: Sequence[Sequence[str]], labels: Sequence[str]) -> dict:
    """The conformal table of validation ``scores`` (documents x ``labels``, the model's output
    scale) and their ``gold`` codes; documents without gold codes are left out."""
    rows = [i for i, g in enumerate(gold) if len(g)]
    b = best_gold_scores(np.asarray(scores)[rows], [gold[i] for i in rows], labels)
    finite = np.sort(np.floor(b[np.isfinite(b)] * _ROUND) / _ROUND)
    stride = max(1, -(-len(finite) // MAX_STORED))
    return {"score": SCORE, "n": len(rows), "n_uncoverable": int((~np.isfinite(b)).sum()), "stride": stride,
            "best_gold_scores": [float(x) for x in finite[::stride]]}


def threshold(table: dict, coverage: float) -> float:
    """The score threshold of ``coverage`` (see the module docstring); -inf means every label."""
    n = int(table["n"])
    alpha = 1.0 - coverage
    k = math.floor((n + 1) * alpha + 1e-9)
    unc = int(table.get("n_uncoverable", 0))
    if k < 1 or k <= unc:
        return -math.inf
    if k > int(table["n"]):  # a coverage near 0: no stored score is that low a
        return math.inf  # quantile, so each set is its document's best code alone (set_mask)
    # the (k - unc)-th smallest finite value; with a stride, the kept one at or below that rank
    return float(table["best_gold_scores"][(k - unc - 1) // int(table.get("stride", 1))])


def check_table(table: object, where: str = "conformal") -> dict:
    """A stored table, checked (a :class:`ModelError` naming ``where`` otherwise)."""
    ok = isinstance(table, dict) and isinstance(table.get("n"), int) and table["n"] >= 0 \
        and isinstance(table.get("n_uncoverable", 0), int) and isinstance(table.get("best_gold_scores"), list) \
        and isinstance(table.get("stride", 1), int) and table.get("stride", 1) >= 1
    if ok:
        vals, unc, stride = table["best_gold_scores"], table.get("n_uncoverable", 0), table.get("stride", 1)
        ok = all(isinstance(v, int | float) and math.isfinite(v) for v in vals) and 0 <= unc <= table["n"] \
            and len(vals) == -(-(table["n"] - unc) // stride) and vals == sorted(vals)
    if not ok:
        raise ModelError(f"{where}: the conformal table is malformed (n, n_uncoverable, sorted best_gold_scores)")
    return table


def set_mask(scores: np.ndarray, t: float) -> np.ndarray:
    """Documents x labels: the conformal set of each row (score >= ``t``, and the row's best)."""
    scores = np.asarray(scores)
    mask = scores >= t
    if scores.ndim == 2 and scores.shape[0] and scores.shape[1]:
        mask[np.arange(len(scores)), scores.argmax(axis=1)] = True
    return mask


def set_conformal(model, scores: np.ndarray, gold: Sequence[Sequence[str]]) -> dict:
    """Fit the conformal table on validation ``scores`` (the model's output scale) and store it in
    ``model.manifest.extra["conformal"]``."""
    table = fit_conformal(scores, gold, model.labels)
    model.manifest.extra = {**model.manifest.extra, "conformal": table}
    return table


def model_table(model) -> dict:
    """The model's conformal table; a one-line :class:`ConfigError` for a model trained without
    one (before conformal sets, or without calibration data)."""
    extra = model.manifest.extra if isinstance(model.manifest.extra, dict) else {}
    table = extra.get("conformal")
    if table is None:
        raise ConfigError("coverage: this model holds no conformal calibration data (trained before "
                          "conformal sets, or without calibration data); retrain it to use --coverage")
    return check_table(table, f"{model.kind} manifest")


@dataclass(frozen=True)
class LabelSet:
    """The conformal set of one document: ``codes`` (best first), its ``size``, ``unsure`` (more
    than ``unsure_above`` codes), the target ``coverage`` and the score ``threshold`` used."""

    codes: tuple[str, ...]
    scores: tuple[float, ...]
    coverage: float
    threshold: float
    unsure_above: int = UNSURE_ABOVE

    @property
    def size(self) -> int:
        return len(self.codes)

    @property
    def unsure(self) -> bool:
        return self.size > self.unsure_above

    def to_dict(self) -> dict:
        return {"codes": list(self.codes), "size": self.size, "unsure": self.unsure, "coverage": self.coverage}


def label_sets(model, scores: np.ndarray, coverage: float, unsure_above: int = UNSURE_ABOVE) -> list[LabelSet]:
    """The conformal set of every row of ``scores`` (the model's output scale) at ``coverage``."""
    coverage = check_coverage(coverage)
    t = threshold(model_table(model), coverage)
    scores = np.asarray(scores)
    mask = set_mask(scores, t)
    labels = model.labels
    out = []
    for i in range(scores.shape[0]):
        cols = np.flatnonzero(mask[i])
        cols = cols[np.argsort(-scores[i, cols], kind="stable")]
        out.append(LabelSet(tuple(labels[j] for j in cols), tuple(round(float(scores[i, j]), 6) for j in cols),
                            coverage, t, unsure_above))
    return out


EVAL_COVERAGES = (0.8, 0.9, 0.95)


def evaluate_sets(model, scores: np.ndarray, gold: Sequence[Sequence[str]],
                  coverages: Sequence[float] = EVAL_COVERAGES) -> dict:
    """For a model with a conformal table (else ``{}``), on labelled data: at each coverage, the
    share of documents whose set holds one of their gold codes (``conformal_coverage@C``; a
    document without gold codes the model knows counts as missed), the mean set size
    (``conformal_set_size@C``) and the share marked unsure (``conformal_unsure@C``)."""
    extra = model.manifest.extra if isinstance(model.manifest.extra, dict) else {}
    if extra.get("conformal") is None or not len(gold):
        return {}
    table = check_table(extra["conformal"], f"{model.kind} manifest")
    scores = np.asarray(scores)
    index = {c: j for j, c in enumerate(model.labels)}
    out: dict = {}
    for cov in coverages:
        mask = set_mask(scores, threshold(table, cov))
        hit = [any(c in index and mask[i, index[c]] for c in g) for i, g in enumerate(gold)]
        size = mask.sum(axis=1)
        out[f"conformal_coverage@{cov:g}"] = float(np.mean(hit))
        out[f"conformal_set_size@{cov:g}"] = float(size.mean())
        out[f"conformal_unsure@{cov:g}"] = float((size > UNSURE_ABOVE).mean())
    return out
