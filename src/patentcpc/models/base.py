"""What every patentcpc model offers: scores and ranked codes for texts, a manifest, save and load.

The protocol of a model kind (registered in :mod:`patentcpc.registry`): a subclass sets ``kind``,
implements :meth:`CPCModel.raw_scores`, :meth:`CPCModel._save_weights` and :meth:`CPCModel.load`;
everything else (``scores``, ``predict``, ``predict_scores``, ``labels``, ``thresholds``, ``save``)
is shared. The predict path, for every kind: ``predict`` -> ``predict_scores`` -> ``scores`` =
``calibrate(raw_scores(...))`` -> :func:`patentcpc.predictions.rank`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from patentcpc.models.artifact import Manifest

if TYPE_CHECKING:
    from patentcpc.predictions import Prediction


class CPCModel:
    """Base class. Subclasses set ``kind``, implement :meth:`raw_scores`, :meth:`_save_weights` and
    :meth:`load`.

    Calibration is one explicit step for every kind: :meth:`scores` is :meth:`calibrate` applied to
    the kind's :meth:`raw_scores`, through the calibrator stored in the manifest
    (``extra["calibration"]``, see :mod:`patentcpc.calibration`), i.e. probabilities once the
    model was trained with calibration. A kind overrides :meth:`raw_scores`, not :meth:`scores`; a
    kind built on members (ensemble, router) calls its members' :meth:`scores` (their calibrated
    scores) inside its own :meth:`raw_scores`."""

    kind: ClassVar[str] = ""
    # whether :meth:`raw_scores` takes ``options`` (an InferenceOptions: batching, autocast, ...)
    uses_inference_options: ClassVar[bool] = False

    @property
    def calibrator(self):
        """The fitted :class:`~patentcpc.calibration.Calibrator`, or None (raw scores)."""
        d = self.manifest.extra.get("calibration") if isinstance(self.manifest.extra, dict) else None
        if d is None:
            return None
        cached = getattr(self, "_calibrator_cache", None)
        if cached is None or cached[0] is not d:
            from patentcpc.calibration import Calibrator

            cached = (d, Calibrator.from_dict(d, f"{self.kind} manifest calibration"))
            self._calibrator_cache = cached
        return cached[1]

    @property
    def output_score_type(self) -> str:
        """``probability`` once calibrated, else the kind's own ``manifest.score_type``."""
        cal = self.calibrator
        return "probability" if cal is not None and cal.method != "none" else self.manifest.score_type

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """Raw scores of this model -> its calibrated scores (unchanged without a calibrator)."""
        cal = self.calibrator
        if cal is None:
            return np.asarray(raw)
        return cal.transform(raw).astype(np.float32)

    def __init__(self, manifest: Manifest):
        self.manifest = manifest

    @property
    def labels(self) -> list[str]:
        return self.manifest.labels

    @property
    def thresholds(self) -> np.ndarray:
        """Decision threshold of every label (per-label where tuned, else the global one)."""
        if self.manifest.label_thresholds is not None:
            return np.asarray(self.manifest.label_thresholds, dtype=np.float64)
        return np.full(len(self.labels), self.manifest.threshold, dtype=np.float64)

    def raw_scores(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Score matrix (len(texts), len(labels)) before calibration, in the kind's own scale
        (``manifest.score_type``); higher means more likely. What each kind implements."""
        raise NotImplementedError

    def scores(self, texts: Sequence[str], *args, **kwargs) -> np.ndarray:
        """Score matrix (len(texts), len(labels)); higher means more likely: :meth:`raw_scores` (same
        arguments: ``batch_size``, ``progress``, and a kind's own such as ``options``; a kind's own
        defaults apply where they are left out), then :meth:`calibrate`."""
        return self.calibrate(self.raw_scores(texts, *args, **kwargs))

    def predict_scores(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False,
                       options=None) -> np.ndarray:
        """Score matrix (documents x labels, columns in :attr:`labels` order); higher means more
        likely. ``options``: an :class:`~patentcpc.inference_options.InferenceOptions` for the kinds that
        batch (transformer, ONNX); the others ignore it."""
        kwargs: dict = {"progress": progress}
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        if options is not None and self.uses_inference_options:
            kwargs["options"] = options
        return self.scores([texts] if isinstance(texts, str) else list(texts), **kwargs)

    def evaluation_report(self) -> dict:
        """Kind-specific figures ``patentcpc evaluate`` adds after scoring data (the router: the share of
        documents it routed); none by default."""
        return {}

    def explain_members(self) -> list:
        """The models whose term weights explain this one's predictions (an ensemble: its members);
        none by default."""
        return []

    def term_weights(self):
        """(TF-IDF transform, coefficient matrix labels x features, feature names) for explanations
        by term (linear models), or None."""
        return None

    @property
    def abstain_below(self) -> float:
        """The minimum best score for a document to get a code at all (tuned on validation data at
        training time, ``manifest.extra["abstain_below"]``; 0.0 for models trained before: the best
        code is always assigned)."""
        extra = self.manifest.extra if isinstance(self.manifest.extra, dict) else {}
        value = extra.get("abstain_below")
        return float(value) if isinstance(value, (int, float)) and np.isfinite(value) else 0.0

    def predict(self, texts: Sequence[str], top_k: int | None = None, threshold: float | None = None, *,
                batch_size: int | None = None, include_assigned: bool = False,
                min_score: float | None = None, coverage: float | None = None) -> list[list[Prediction]]:
        """One list of :class:`~patentcpc.predictions.Prediction` per text, best first.

        With neither ``top_k`` nor ``threshold``: the codes the model assigns (score at or above
        its decision thresholds; the best code also below its threshold, unless its score is
        below ``min_score``, default the model's tuned :attr:`abstain_below`: then the list is
        empty, "no code assigned"). ``top_k``: at most the k best codes, assigned or not
        (``assigned`` False on all of them when nothing is assigned). ``threshold``: only codes
        scoring at least that (it replaces the model's thresholds). ``include_assigned``: the top k
        plus every assigned code. ``coverage`` (e.g. 0.9; not with ``top_k`` or ``threshold``): the
        conformal label set of each text, the smallest set holding one of its gold codes with that
        probability (:mod:`patentcpc.conformal`; :meth:`label_sets` also gives each set's size and
        whether it is unsure). A single string counts as one text; an empty (or blank) text is
        refused, as the CLI and the service refuse it.
        """
        from patentcpc.errors import ConfigError, DataError
        from patentcpc.predictions import rank
        from patentcpc.validation import check_text

        texts = [texts] if isinstance(texts, str) else list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DataError("texts", f"not a string but {type(text).__name__}", row=i + 1)
            try:  # what the CLI's --text refuses: not UTF-8 (lone surrogates), NUL characters
                check_text(text, "text")
            except ConfigError as exc:
                raise DataError("texts", str(exc).removeprefix("text: "), row=i + 1) from None
            if not text.strip():
                raise DataError("texts", "the text is empty (nothing to classify)", row=i + 1)
        if coverage is not None:
            from patentcpc.conformal import check_coverage, model_table

            check_coverage(coverage)
            if top_k is not None or threshold is not None or include_assigned:
                raise ConfigError("coverage gives the label set itself: leave out top_k, threshold and "
                                  "include_assigned")
            model_table(self)  # before scoring: a model without a conformal table is one line
        scores = self.predict_scores(texts, batch_size=batch_size)
        if coverage is not None:
            from patentcpc.conformal import label_sets
            from patentcpc.predictions import set_predictions

            return set_predictions(label_sets(self, scores, coverage), scores, self.labels, self.thresholds,
                                   self.abstain_below if min_score is None else float(min_score))
        floor = self.abstain_below if min_score is None else float(min_score)
        return rank(scores, self.labels, self.thresholds, top_k, threshold, include_assigned, abstain_below=floor)

    def label_sets(self, texts: Sequence[str], coverage: float = 0.9, *, batch_size: int | None = None):
        """The conformal label set of each text at ``coverage`` (a
        :class:`~patentcpc.conformal.LabelSet`: ``codes`` best first, ``size``, ``unsure``), from
        the table stored at training time; a one-line ConfigError for a model without one."""
        from patentcpc.conformal import check_coverage, label_sets, model_table

        check_coverage(coverage)
        model_table(self)
        texts = [texts] if isinstance(texts, str) else list(texts)
        return label_sets(self, self.predict_scores(texts, batch_size=batch_size), coverage)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model folder (manifest, config, weights) atomically: a model already at
        ``path`` is replaced in one rename, or left as it was if anything fails."""
        from patentcpc.explain import save_index
        from patentcpc.models.artifact import atomic_dir, write_manifest

        package = kind_package(type(self))
        if package is not None and isinstance(self.manifest.extra, dict):  # a third-party kind: whom to install
            self.manifest.extra["kind_package"] = package
        with atomic_dir(path, kind="model") as tmp:
            self._save_weights(tmp)
            save_index(self, tmp)
            write_manifest(tmp, self.manifest)

    def _save_weights(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> CPCModel:
        raise NotImplementedError


def kind_package(cls: type) -> str | None:
    """The distribution that provides a model class from outside patentcpc (None for patentcpc's own
    kinds): written into the manifest, so that loading the folder where it is not installed names
    the package to install."""
    top = cls.__module__.split(".")[0]
    if top == "patentcpc":
        return None
    from importlib.metadata import packages_distributions

    found = packages_distributions().get(top)
    return found[0] if found else top
