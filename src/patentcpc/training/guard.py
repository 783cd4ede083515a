"""The check every training run makes before its model folder is written, and the run's phases.

:func:`check_model` scores the model about to be saved on the run's validation data and refuses it
(:class:`~patentcpc.errors.TrainingError`, the folder at ``--output`` stays as it was) when

* its f1@1 is below the figure the run reported during training by more than the noise of that
  figure (two binomial standard errors on the validation documents, at least 0.005),
* its scores carry no ranking (every code scores the same in most documents, or no score depends
  on the text), or
* its calibration map is not increasing (a higher raw score must never mean a lower probability).

``guard: warn`` (``--set guard=warn``) turns the refusal into a loud warning (the model is saved
and the problems are recorded in its manifest, ``extra["guard"]``).

:class:`Phases` times the named steps after the optimizer steps (probe, re-fit, calibration,
thresholds, saving), prints each one's name and time on stdout, and keeps them for the end report.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from patentcpc.errors import TrainingError

log = logging.getLogger(__name__)

GUARD_MODES = ("error", "warn")
MIN_TOLERANCE = 0.005


def noise(f1: float, n_docs: int) -> float:
    """How far an f1@1 of ``f1`` measured on ``n_docs`` documents may move by chance: two binomial
    standard errors (at least :data:`MIN_TOLERANCE`)."""
    if n_docs <= 0:
        return math.inf
    p = min(max(f1, 1.0 / n_docs), 1 - 1.0 / n_docs) if n_docs > 1 else 0.5
    return max(MIN_TOLERANCE, 2 * math.sqrt(p * (1 - p) / n_docs))


def score_problems(scores: np.ndarray) -> list[str]:
    """What makes a score matrix (documents x labels) useless for ranking: every code scoring the
    same in most documents, or every label's score the same for every document."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 2 or scores.shape[1] < 2:
        return []
    flat_rows = float(np.mean((scores.max(1) - scores.min(1)) <= 1e-9))
    if flat_rows > 0.5:
        return [f"every code scores the same in {flat_rows:.0%} of the validation documents "
                "(codes would come out in alphabetical order)"]
    if np.all(np.ptp(scores, axis=0) <= 1e-9):
        return ["no score depends on the text (every label scores the same for every document)"]
    return []


def check_model(model, texts: Sequence[str] | None, gold: Sequence[Sequence[str]], reported_f1: float | None,
                mode: str = "error", what: str = "the validation data", scores: np.ndarray | None = None,
                reported_as: str = "during training") -> dict:
    """Check ``model`` (about to be saved) on ``texts``/``gold`` against the f1@1 the run reported
    (``reported_f1``; None: no comparison); ``scores``: the model's (calibrated) scores of those
    documents when already computed (``texts`` may then be None). Raises :class:`TrainingError`
    with ``mode='error'``; with ``warn`` logs the problems. Returns the check's record (also stored
    in ``manifest.extra["guard"]``)."""
    from patentcpc.metrics import evaluate_scores

    if mode not in GUARD_MODES:
        raise TrainingError(f"guard must be one of {', '.join(GUARD_MODES)}, not '{mode}'")
    problems: list[str] = []
    cal = model.calibrator
    if cal is not None and cal.problem():
        problems.append(cal.problem())
    n = len(gold)
    record: dict = {"on": what, "n_docs": n}
    if n:
        if scores is None:
            scores = model.scores(list(texts))
        scores = np.asarray(scores)
        problems += score_problems(scores)
        measured = float(evaluate_scores(scores, gold, model.labels, model.thresholds, ks=(1,))["f1@1"])
        record["f1@1"] = measured
        if reported_f1 is not None and np.isfinite(reported_f1):
            tol = noise(reported_f1, n)
            record.update(reported_f1=float(reported_f1), tolerance=tol)
            if measured < reported_f1 - tol:
                problems.append(f"the model to save scores f1@1 {measured:.4f} on {what}, below the {reported_f1:.4f} "
                                f"reported {reported_as} by more than noise ({tol:.4f} on {n} documents)")
    record["problems"] = problems
    record["mode"] = mode
    model.manifest.extra = {**model.manifest.extra, "guard": record}
    if problems:
        msg = "; ".join(problems)
        if mode == "error":
            raise TrainingError(f"not saved: {msg} (the folder at the output path is unchanged; "
                                "--set guard=warn saves such a model anyway)")
        log.warning("SAVED A SUSPECT MODEL (guard=warn): %s", msg)
        print(f"WARNING: saving a suspect model (guard=warn): {msg}", file=sys.stderr, flush=True)
    return record


def _show() -> bool:
    return os.environ.get("PATENTCPC_PROGRESS", "1") == "1"


class Phases:
    """Named, timed steps of a run: ``with phases("calibration"): ...`` prints ``calibration…`` and
    ``calibration: 1.2 s`` on stdout (unless ``PATENTCPC_PROGRESS=0``; stderr is kept for the one
    line of an error) and keeps the time."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        if _show():
            print(f"{name}…", flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - start
            self.times[name] = round(self.times.get(name, 0.0) + dt, 3)
            if _show():
                print(f"{name}: {dt:.1f} s", flush=True)

    def report(self) -> str:
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.times.items())
