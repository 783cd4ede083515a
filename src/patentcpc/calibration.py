"""Calibrated probabilities for every model kind.

A :class:`Calibrator` maps a model's raw scores (LinearSVC margins, sigmoid outputs, ensemble
averages) to probabilities in [0, 1]. It is fitted at training time on validation scores (held-out
or out-of-fold) against the gold labels, stored in the manifest (``extra["calibration"]``, plain
JSON numbers) and applied by :class:`patentcpc.models.base.CPCModel` to whatever ``scores`` a kind
computes, so it is the same layer for linear, transformer, ensemble and any later kind.

Methods (``method``): ``platt`` (sigmoid(a z + b)), ``temperature`` (sigmoid(z / T)), ``isotonic``
(a monotone step function, linearly interpolated), ``none``. ``scope``: ``shared`` (one map for
every label) or ``per_label`` (a Platt map per label with enough validation positives, the shared
map for the rest). ``z`` is the raw score itself for margins and its logit for probabilities.
``fit_on``: ``all`` label/document pairs or the ``top`` ``top_k`` candidates of every document (the
ones predictions show). The defaults were chosen by measurement (benchmarks/calibration.md).

Also here: :func:`top1_ece` (expected calibration error of the top-1 prediction, equal-width bins)
and :func:`top1_auroc` (how well the top-1 probability ranks hits above misses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from patentcpc.config import CALIBRATION_METHODS as METHODS
from patentcpc.config import CALIBRATION_SCOPES as SCOPES
from patentcpc.errors import ModelError
from patentcpc.metrics import (  # noqa: F401  (re-exported: top-1 reliability)
    auroc,
    ece,
    reliability_bins,
    top1_auroc,
    top1_confidence,
    top1_ece,
)
from patentcpc.numeric import sigmoid

_EPS = 1e-6
_MIN_SLOPE = 1e-6  # a fitted map's slope must exceed this: probabilities rise with the raw score


def to_z(raw: np.ndarray, score_type: str) -> np.ndarray:
    """The calibrators' input: margins as they are, probabilities as logits."""
    raw = np.asarray(raw, dtype=np.float64)
    if score_type == "probability":
        p = np.clip(raw, _EPS, 1 - _EPS)
        return np.log(p) - np.log1p(-p)
    return raw


def fit_platt(z: np.ndarray, y: np.ndarray, fit_bias: bool = True, l2: float = 0.0,
              max_iter: int = 100) -> tuple[float, float]:
    """Maximum-likelihood ``(a, b)`` of ``P(y=1|z) = sigmoid(a z + b)`` by Newton's method
    (``fit_bias=False``: ``b = 0``, temperature scaling with ``T = 1 / a``); ``l2`` shrinks ``a``
    and ``b`` (per-label maps on few positives)."""
    z = np.asarray(z, dtype=np.float64).ravel()
    w = fit_logistic(z[:, None], y, fit_bias, l2, max_iter)
    return (float(w[0]), float(w[1]) if fit_bias else 0.0)


def fit_logistic(x: np.ndarray, y: np.ndarray, fit_bias: bool = True, l2: float = 0.0,
                 max_iter: int = 100) -> np.ndarray:
    """Unpenalized (or ``l2``) logistic regression weights by damped Newton steps; the bias last."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if fit_bias:
        x = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x.shape[1])
    if fit_bias:
        prior = np.clip(y.mean(), _EPS, 1 - _EPS) if len(y) else 0.5
        w[-1] = np.log(prior / (1 - prior))
    else:
        w[0] = 1.0
    for _ in range(max_iter):
        p = sigmoid(x @ w)
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + (l2 + 1e-9) * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        # damped Newton: never let the log-likelihood get worse (separable data diverge slowly)
        t = 1.0
        nll = _nll(x, y, w, l2)
        while t > 1e-4 and _nll(x, y, w - t * step, l2) > nll + 1e-12:
            t /= 2
        w = w - t * step
        if np.max(np.abs(t * step)) < 1e-9:
            break
    return w


def gap_to_best_other(z: np.ndarray) -> np.ndarray:
    """For every cell, its score minus the best score of the other labels in its row (the lead of
    the top-1 code over the runner-up; how far behind the best every other code is)."""
    z = np.asarray(z, dtype=np.float64)
    if z.shape[1] < 2:
        return np.zeros_like(z)
    order = np.sort(z, axis=1)
    best, second = order[:, -1:], order[:, -2:-1]
    other = np.where(z >= best, second, best)
    return z - other


def _nll(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> float:
    s = x @ w
    return float(np.sum(np.logaddexp(0, s) - y * s) + 0.5 * l2 * w @ w)


@dataclass
class Calibrator:
    """A fitted map from raw scores to probabilities (see the module docstring)."""

    method: str = "platt"
    scope: str = "shared"
    score_type: str = "margin"
    a: float = 1.0
    b: float = 0.0
    c: float = 0.0  # "platt-gap": weight of gap_to_best_other(z)
    x: list[float] = field(default_factory=list)  # isotonic knots
    y: list[float] = field(default_factory=list)
    label_a: list[float] | None = None  # per-label Platt (None entries use the shared map)
    label_b: list[float] | None = None
    info: dict = field(default_factory=dict)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "none":
            return raw
        z = to_z(raw, self.score_type)
        if self.method == "isotonic":
            out = np.interp(z, np.asarray(self.x), np.asarray(self.y))
        elif self.method == "platt-gap" and z.ndim == 2:
            out = sigmoid(self.a * z + self.c * gap_to_best_other(z) + self.b)
        else:
            out = sigmoid(self.a * z + self.b)
        if self.scope == "per_label" and self.label_a is not None and z.ndim == 2:
            for j, (a, b) in enumerate(zip(self.label_a, self.label_b or [], strict=False)):
                if a is not None:
                    out[:, j] = sigmoid(a * z[:, j] + b)
        if self.method != "isotonic":  # a fitted sigmoid never claims certainty (and a threshold of
            out = np.clip(out, _EPS, 1 - _EPS)  # 1.0 would leave no room above it)
        return out

    def problem(self) -> str | None:
        """Why this map is unusable (it does not rise with the raw score, or it is constant), or None."""
        if self.method == "isotonic":
            ys = np.asarray(self.y, dtype=np.float64)
            if len(ys) > 1 and np.any(np.diff(ys) < -1e-12):
                return "the isotonic calibration map decreases"
            if len(ys) and float(ys.max() - ys.min()) <= 1e-9:
                return f"the calibration map is constant ({float(ys[0]):.3g} for every score)"
            return None
        if self.method == "none":
            return None
        slope = self.a + (self.c if self.method == "platt-gap" else 0.0)
        if not slope > 0 or (self.method == "platt-gap" and self.c < 0):
            return f"the calibration map decreases ({self.method} slope a = {self.a:.3g}" + (
                f", c = {self.c:.3g})" if self.method == "platt-gap" else ")")
        bad = [j for j, a in enumerate(self.label_a or []) if a is not None and not a > 0]
        if bad:
            return f"{len(bad)} per-label calibration map(s) decrease"
        return None

    def to_dict(self) -> dict:
        d = {"method": self.method, "scope": self.scope, "score_type": self.score_type, "info": self.info}
        if self.method == "isotonic":
            d.update(x=[float(v) for v in self.x], y=[float(v) for v in self.y])
        elif self.method != "none":
            d.update(a=self.a, b=self.b)
            if self.method == "platt-gap":
                d["c"] = self.c
        if self.label_a is not None:
            d.update(label_a=self.label_a, label_b=self.label_b)
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "calibration") -> Calibrator:
        if not isinstance(d, dict) or d.get("method") not in METHODS or d.get("scope", "shared") not in SCOPES:
            raise ModelError(f"{where}: not a calibration map (method must be one of {', '.join(METHODS)})")
        try:
            cal = cls(method=d["method"], scope=d.get("scope", "shared"), score_type=d.get("score_type", "margin"),
                      a=float(d.get("a", 1.0)), b=float(d.get("b", 0.0)), c=float(d.get("c", 0.0)),
                      x=[float(v) for v in d.get("x", [])], y=[float(v) for v in d.get("y", [])],
                      label_a=d.get("label_a"), label_b=d.get("label_b"), info=dict(d.get("info", {})))
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where}: bad calibration numbers ({exc})") from None
        if cal.method == "isotonic" and (len(cal.x) != len(cal.y) or not cal.x):
            raise ModelError(f"{where}: isotonic map needs as many x as y knots (at least one)")
        return cal


def _pairs(z: np.ndarray, y: np.ndarray, fit_on: str, top_k: int, *more: np.ndarray) -> tuple[np.ndarray, ...]:
    if fit_on == "all" or z.shape[1] <= top_k:
        return (z.ravel(), y.ravel(), *(m.ravel() for m in more))
    idx = np.argpartition(-z, top_k - 1, axis=1)[:, :top_k]
    rows = np.arange(z.shape[0])[:, None]
    return (z[rows, idx].ravel(), y[rows, idx].ravel(), *(m[rows, idx].ravel() for m in more))


def fit_calibrator(raw: np.ndarray, y: np.ndarray, score_type: str, method: str = "platt",
                   scope: str = "shared", fit_on: str = "top", top_k: int = 5, min_support: int = 10,
                   per_label_l2: float = 1.0) -> Calibrator:
    """Fit a calibrator on validation ``raw`` scores (docs x labels) and the 0/1 gold ``y``."""
    if method not in METHODS:
        raise ModelError(f"calibration.method must be one of {', '.join(METHODS)}, not '{method}'")
    if scope not in SCOPES:
        raise ModelError(f"calibration.scope must be one of {', '.join(SCOPES)}, not '{scope}'")
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    info = {"n_docs": int(raw.shape[0]), "fit_on": fit_on, "top_k": top_k}
    if method == "none" or raw.size == 0:
        return Calibrator(method="none", scope="shared", score_type=score_type, info=info)
    z = to_z(raw, score_type)
    zs, ys = _pairs(z, y, fit_on, top_k)
    info["n_pairs"] = int(len(zs))
    cal = None
    if method == "platt-gap":
        zs_, ys_, gs = _pairs(z, y, fit_on, top_k, gap_to_best_other(z))
        a, c, b = fit_logistic(np.stack([zs_, gs], 1), ys_)
        if c >= 0 and a + c > _MIN_SLOPE:  # increasing in the cell's own score (d/dz = a + c)
            cal = Calibrator(method=method, scope="shared", score_type=score_type, a=float(a), b=float(b),
                             c=float(c), info=info)
        else:
            info["refused"] = {"method": method, "a": float(a), "c": float(c)}
            method = "platt"
    if cal is None and method in ("platt", "temperature"):
        a, b = fit_platt(zs, ys, fit_bias=method == "platt")
        if a > _MIN_SLOPE:
            cal = Calibrator(method=method, scope="shared", score_type=score_type, a=a, b=b, info=info)
        else:  # a decreasing (or flat) map would rank the best codes last: refuse it
            info.setdefault("refused", {"method": method, "a": float(a)})
            method = "isotonic"
    if cal is None:  # isotonic: non-decreasing by construction
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip").fit(zs, ys)
        cal = Calibrator(method="isotonic", scope="shared", score_type=score_type,
                         x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist(), info=info)
        if "refused" in info:
            info["fallback"] = "isotonic"
    if scope == "per_label":
        cal.scope = "per_label"
        label_a: list = [None] * z.shape[1]
        label_b: list = [None] * z.shape[1]
        for j in range(z.shape[1]):
            if y[:, j].sum() >= min_support:
                a, b = fit_platt(z[:, j], y[:, j], l2=per_label_l2)
                if a > _MIN_SLOPE:  # a decreasing label map is refused: the shared map serves it
                    label_a[j], label_b[j] = a, b
        cal.label_a, cal.label_b = label_a, label_b
        info["n_label_maps"] = sum(v is not None for v in label_a)
    return cal


def multi_hot(gold: Sequence[Sequence[str]], labels: Sequence[str]) -> np.ndarray:
    index = {c: j for j, c in enumerate(labels)}
    y = np.zeros((len(gold), len(labels)), dtype=np.float64)
    for i, codes in enumerate(gold):
        for c in codes:
            if c in index:
                y[i, index[c]] = 1.0
    return y


# ----------------------------------------------------------------------------- training-time fitting


def calibrate_model(model, raw: np.ndarray, gold: Sequence[Sequence[str]], cfg=None, raw_score_type: str | None = None,
                    threshold_min_support: int = 50) -> np.ndarray:
    """Fit ``model``'s calibrator on validation ``raw`` scores and ``gold`` labels (stored in its
    manifest), then tune its global and per-label thresholds on the calibrated scale. Returns the
    calibrated validation scores. ``cfg`` is a :class:`~patentcpc.config.CalibrationConfig`; with
    ``cfg.known_only`` the calibrator is fitted only on the documents with at least one gold label
    the scoring model knew (``raw.known`` of :func:`out_of_fold_scores`, else the model's labels):
    the others can never be hits and are what a small training set's folds over-represent."""
    from patentcpc.config import CalibrationConfig
    from patentcpc.metrics import tune_global_threshold, tune_label_thresholds

    cfg = cfg or CalibrationConfig()
    labels = model.labels
    y = multi_hot(gold, labels)
    known = getattr(raw, "known", None)
    raw = np.asarray(raw)
    rows = np.ones(len(y), dtype=bool)
    if cfg.known_only:
        rows = (y.sum(1) > 0) if known is None else np.asarray(known, dtype=bool)
        if not rows.any():
            rows[:] = True
    cal = fit_calibrator(raw[rows], y[rows], raw_score_type or model.manifest.score_type, cfg.method, cfg.scope,
                         cfg.fit_on, cfg.top_k, cfg.min_support)
    cal.info["n_docs_excluded"] = int((~rows).sum())
    model.manifest.extra = {**model.manifest.extra, "calibration": cal.to_dict()}
    probs = model.calibrate(raw)
    if len(gold):
        threshold, _ = tune_global_threshold(probs, gold, labels)
        model.manifest.threshold = threshold
        model.manifest.label_thresholds = tune_label_thresholds(probs, gold, labels, threshold,
                                                                threshold_min_support).tolist()
        from patentcpc.predictions import set_abstention

        set_abstention(model, probs, gold)
    return probs


class OutOfFoldScores(np.ndarray):
    """Out-of-fold raw scores (an ndarray) that also carry ``known``: for every row, whether the
    model that scored it (its fold's) knew at least one of the row's gold labels.
    :func:`calibrate_model` fits the calibrator on those rows only (``calibration.known_only``)."""

    known: np.ndarray | None = None

    def __array_finalize__(self, obj) -> None:  # slices and copies keep no stale mask
        self.known = None


def out_of_fold_scores(fit, texts: Sequence[str], gold: Sequence[Sequence[str]], labels: Sequence[str],
                       folds: int = 5, seed: int = 42, stratify: bool = True) -> OutOfFoldScores:
    """Raw scores of every training document from a model fitted without it: ``fit(texts, gold)``
    returns a model (with ``labels`` and ``raw_scores``); labels a fold's model never saw get the
    row's lowest score. ``stratify``: folds by multi-label iterative stratification (as
    :func:`patentcpc.data.split_data` makes evaluation splits: every fold's model sees the rare
    labels of the others), else a seeded random partition. The result's ``known`` marks the rows
    whose fold model knew at least one of their gold labels."""
    n = len(texts)
    out = np.zeros((n, len(labels)), dtype=np.float64)
    known = np.zeros(n, dtype=bool)
    index = {c: j for j, c in enumerate(labels)}
    for test in _folds(gold, folds, seed, stratify):
        train = np.setdiff1d(np.arange(n), test)
        m = fit([texts[i] for i in train], [gold[i] for i in train])
        raw = np.asarray(m.raw_scores([texts[i] for i in test]), dtype=np.float64)
        block = np.repeat(raw.min(1, keepdims=True), len(labels), axis=1)
        cols = [index[c] for c in m.labels]
        block[:, cols] = raw
        out[test] = block
        seen = set(m.labels)
        known[test] = [not seen.isdisjoint(gold[i]) for i in test]
    res = out.view(OutOfFoldScores)
    res.known = known
    return res


STRATIFY_MAX_CELLS = 20_000_000  # documents x labels up to which out-of-fold folds are stratified


def _folds(gold: Sequence[Sequence[str]], folds: int, seed: int, stratify: bool) -> list[np.ndarray]:
    """The test rows of each fold (sorted); stratified up to :data:`STRATIFY_MAX_CELLS` documents
    x labels (e.g. 20k documents at subclass level), a seeded random partition above."""
    n = len(gold)
    if stratify and n >= folds:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold
        from sklearn.preprocessing import MultiLabelBinarizer

        y = MultiLabelBinarizer(sparse_output=True).fit_transform(gold)
        if y.shape[1] and n * y.shape[1] <= STRATIFY_MAX_CELLS:  # iterative stratification: ~n x labels work
            y = y.toarray().astype(np.uint8)
            kf = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            parts = [np.sort(t) for _, t in kf.split(np.zeros(n), y)]
            if all(len(p) for p in parts):
                return parts
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(order[k::folds]) for k in range(folds)]
