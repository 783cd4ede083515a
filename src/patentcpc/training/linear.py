"""Linear kinds (``tfidf``, ``scheme``): fit, calibrate (on ``--eval-data`` or out-of-fold
scores), evaluate and save."""

from __future__ import annotations

import dataclasses
import os

from patentcpc.config import TrainConfig, to_dict
from patentcpc.data import PatentData
from patentcpc.models import model_class
from patentcpc.results import TrainResult
from patentcpc.training import evaluate_model, load_for_model, training_kind


def train_linear(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                 output: str | os.PathLike | None = None, resume: bool = False) -> TrainResult:
    """A linear kind (``tfidf``, ``scheme``): the model class supplies its training documents and its
    default regularisation; ``resume`` has nothing to resume (training takes seconds)."""
    cls = model_class(training_kind(cfg))
    from patentcpc.io import check_output_dir  # noqa: PLC0415

    if output is not None:  # before the work: never into a folder patentcpc did not write
        check_output_dir(output, "model", [data, eval_data])
    if cfg.linear.C is None:  # not set by the user: the strength tuned for this kind (saved resolved)
        cfg = dataclasses.replace(cfg, linear=dataclasses.replace(cfg.linear, C=cls.default_C()))
    texts, labels, text_view, train_info, train_data = cls.training_documents(cfg, data)
    if cfg.linear.learner == "omikuji":  # label trees instead of one-vs-rest (same TF-IDF view)
        cls = model_class("omikuji")
    model = cls.fit(texts, labels, cfg.linear, seed=cfg.seed, manifest_fields={
        "label_level": cfg.data.level, "text_view": text_view, "training_data": train_info,
        "config": to_dict(cfg), "extra": {"model_name": cfg.model}})
    metrics: dict = {}
    overlap = None
    ev = load_for_model(eval_data, cfg.data, model) if eval_data else None
    calibrate_linear(model, cfg, texts, labels, ev)
    if cfg.explain.index and train_data is not None:
        from patentcpc.explain import ExplainIndex  # noqa: PLC0415

        model.explain_index = ExplainIndex.build(train_data, cfg.explain.snippet_chars)
    if ev is not None:
        if train_data is not None:
            from patentcpc.overlap import find_overlap  # noqa: PLC0415

            overlap = find_overlap(train_data, ev)
        metrics = evaluate_model(model, ev)
        model.manifest.metrics = {"eval_data": str(eval_data), **metrics}
        if overlap is not None and overlap.any:
            model.manifest.metrics["eval_overlap"] = overlap.to_dict()
    if output is not None:
        model.save(output)
    return TrainResult(model, metrics, str(output) if output is not None else None, overlap)


def calibrate_linear(model, cfg: TrainConfig, texts, labels, ev: PatentData | None) -> None:
    """Calibrator and thresholds of a linear model: on ``ev`` (``--eval-data``) if given, else on
    out-of-fold scores of the training data (``calibration.cv_folds`` folds)."""
    from patentcpc.calibration import calibrate_model, out_of_fold_scores  # noqa: PLC0415
    from patentcpc.models.linear import LinearCPCModel  # noqa: PLC0415

    if cfg.calibration.method == "none":
        return
    if ev is not None:
        calibrate_model(model, model.raw_scores(ev.texts), ev.labels, cfg.calibration)
    elif cfg.model != "scheme" and len(texts) >= 2 * cfg.calibration.cv_folds:
        def fit(t, g):
            return LinearCPCModel.fit(t, g, cfg.linear, seed=cfg.seed)

        raw = out_of_fold_scores(fit, texts, labels, model.labels, cfg.calibration.cv_folds, cfg.seed)
        calibrate_model(model, raw, labels, cfg.calibration)
