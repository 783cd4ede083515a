"""Linear kinds (``tfidf``, ``scheme``): fit (one-vs-rest or label trees, ``linear.learner``),
calibrate (on ``--eval-data``, a held-out part of large runs, or out-of-fold scores), evaluate and
save."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from patentcpc.config import TrainConfig, to_dict
from patentcpc.data import PatentData, load_for_model, pin_view_settings
from patentcpc.metrics import evaluate_model, evaluate_scores
from patentcpc.registry import get, select
from patentcpc.results import TrainResult
from patentcpc.training.guard import Phases, check_model


def train_linear(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                 output: str | os.PathLike | None = None, resume: bool = False) -> TrainResult:
    """A linear kind (``tfidf``, ``scheme``): the model class supplies its training documents and its
    default regularisation; ``resume`` has nothing to resume (training takes minutes at most)."""
    kind = select(cfg)  # linear, or a kind that reuses this trainer (scheme)
    cls = kind.model_class()
    from patentcpc.io import check_output_dir

    if output is not None:  # before the work: never into a folder patentcpc did not write
        check_output_dir(output, "model", [data, eval_data])
    if cfg.linear.C is None:  # not set by the user: the strength tuned for this kind (saved resolved)
        cfg = dataclasses.replace(cfg, linear=dataclasses.replace(cfg.linear, C=cls.default_C()))
    texts, labels, text_view, train_info, train_data = cls.training_documents(cfg, data)
    cfg = pin_view_settings(cfg, text_view)  # no title weight where the texts start with no title
    if cfg.linear.title_weight is None:  # else, unset: the weight chosen for this kind (saved resolved)
        cfg = dataclasses.replace(cfg, linear=dataclasses.replace(cfg.linear, title_weight=cls.default_title_weight()))
    # the cold-start scheme model keeps one-vs-rest unless a learner is named explicitly
    scheme_default = cls.from_scheme and cfg.linear.learner == "auto"
    learner = "ovr" if scheme_default else resolve_learner(cfg.linear, len(texts))
    label_docs = resolve_label_docs(cfg, learner, labels, cls.from_scheme)
    cfg = dataclasses.replace(cfg, linear=dataclasses.replace(cfg.linear, learner=learner,  # saved resolved
                                                              label_docs=label_docs))
    if learner == "omikuji":  # label trees instead of one-vs-rest (same TF-IDF view)
        cls = get("omikuji").model_class()
    held_out = None
    if not eval_data and not cls.from_scheme and cfg.calibration.method != "none" \
            and len(texts) > cfg.calibration.cv_max_docs:  # large: calibrate on a held-out part, fit once
        kept_texts, kept_labels, part = holdout_split(texts, labels, cfg.calibration.holdout_docs, cfg.seed)
        if part[0]:  # else (every document carries a rare label): out-of-fold scores as below
            texts, labels, held_out = kept_texts, kept_labels, part
            train_info = {**train_info, "n_calibration_holdout": len(part[0])}
    phases = Phases()
    with phases(f"fit ({learner}, {len(texts)} documents)"):
        model = cls.fit(texts, labels, cfg.linear, seed=cfg.seed, manifest_fields={
            "label_level": cfg.data.level, "text_view": text_view, "training_data": train_info,
            "config": to_dict(cfg, kind.config), "extra": {"model_name": cfg.model, "learner": learner}})
    metrics: dict = {}
    overlap = None
    ev = load_for_model(eval_data, cfg.data, model) if eval_data else None
    with phases("calibration and thresholds"):
        cal_data = calibrate_linear(model, cfg, texts, labels, ev, held_out)
    if cfg.explain.index and train_data is not None:
        from patentcpc.explain import ExplainIndex

        model.explain_index = ExplainIndex.build(train_data, cfg.explain.snippet_chars)
    with phases("check before saving"):  # the calibrated model against its own raw scores
        if cal_data is not None:
            raw, gold, what = cal_data
            reported = evaluate_scores(np.asarray(raw), gold, model.labels, 0.0, ks=(1,))["f1@1"]
            check_model(model, None, gold, reported, cfg.guard, what=what, scores=model.calibrate(np.asarray(raw)),
                        reported_as="by the uncalibrated model")
        else:
            check_model(model, None, [], None, cfg.guard)
    if ev is not None:
        if train_data is not None:
            from patentcpc.overlap import find_overlap

            overlap = find_overlap(train_data, ev)
        metrics = evaluate_model(model, ev)
        model.manifest.metrics = {"eval_data": str(eval_data), "thresholds_tuned_on_this_data": True, **metrics}
        if overlap is not None and overlap.any:
            model.manifest.metrics["eval_overlap"] = overlap.to_dict()
    if output is not None:
        with phases("saving"):
            model.save(output)
    return TrainResult(model, metrics, str(output) if output is not None else None, overlap,
                       phases=dict(phases.times),
                       measured_on=f"{eval_data} (the thresholds and calibration were tuned on it: optimistic)"
                       if ev is not None else None)


def resolve_learner(lcfg, n_docs: int) -> str:
    """``linear.learner`` with ``auto`` resolved: one-vs-rest below ``tree_min_docs`` documents,
    Omikuji's label trees from there (benchmarks/scale.md)."""
    if lcfg.learner != "auto":
        return lcfg.learner
    return "omikuji" if n_docs >= lcfg.tree_min_docs else "ovr"


def resolve_label_docs(cfg: TrainConfig, learner: str, labels=(), from_scheme: bool = False) -> str:
    """``linear.label_docs`` resolved: ``auto`` is ``seen`` for a one-vs-rest ``tfidf`` model whose
    training ``labels`` are CPC codes of one level (section, class or subclass) with the IPC scheme
    installed, else ``none``; an explicit
    ``seen``/``all`` where it cannot apply is a ConfigError. ``from_scheme``: a model trained on the
    scheme's documents alone (the ``scheme`` kind)."""
    from patentcpc.cpc import ipc_scheme_path
    from patentcpc.errors import ConfigError
    from patentcpc.scheme import labels_level

    value = cfg.linear.label_docs
    if value == "none":
        return value
    why = ("the scheme model is trained on label documents alone" if from_scheme
           else "they need linear.learner=ovr" if learner != "ovr"
           else "they work at section, class or subclass level" if cfg.data.level == "group"
           else "the training labels are not CPC codes of one level"
           if labels_level({c for ls in labels for c in ls}) is None
           else "they need the IPC scheme: pip install 'patentcpc[scheme]'" if ipc_scheme_path() is None
           else None)
    if why is None:
        return "seen" if value == "auto" else value
    if value == "auto":
        return "none"
    raise ConfigError(f"linear.label_docs={value}: {why}")


def holdout_split(texts, labels, n_holdout: int, seed: int, min_label_count: int = 10):
    """(texts, labels) without a seeded random sample of ``min(n_holdout, len // 10)`` documents,
    and that sample as (texts, labels): the calibration data of a large linear run. The sample is
    drawn only from documents whose every label occurs at least ``min_label_count`` times, so no
    rare label leaves the training part (and the model's vocabulary) with it."""
    from collections import Counter

    n = len(texts)
    k = max(1, min(n_holdout, n // 10))
    counts = Counter(c for ls in labels for c in set(ls))
    eligible = np.array([i for i, ls in enumerate(labels) if ls and all(counts[c] >= min_label_count for c in ls)],
                        dtype=np.int64)
    rng = np.random.default_rng(seed)
    held = np.sort(rng.permutation(eligible)[:k])
    mask = np.ones(n, dtype=bool)
    mask[held] = False
    keep = np.flatnonzero(mask)
    return ([texts[i] for i in keep], [labels[i] for i in keep],
            ([texts[i] for i in held], [labels[i] for i in held]))


def calibrate_linear(model, cfg: TrainConfig, texts, labels, ev: PatentData | None,
                     held_out: tuple[list[str], list[list[str]]] | None = None):
    """Calibrator and thresholds of a linear model: on ``ev`` (``--eval-data``) if given, else on
    ``held_out`` (texts, labels) if given (large runs), else on out-of-fold scores of the training
    data (``calibration.cv_folds`` folds, each fold fitted like ``model``). Returns what it was
    fitted on, (raw scores, gold labels, a name), or None (not calibrated)."""
    from patentcpc.calibration import calibrate_model, out_of_fold_scores

    if cfg.calibration.method == "none":
        return None
    if ev is not None:
        raw, gold, what = model.raw_scores(ev.texts), ev.labels, "the evaluation data"
    elif held_out is not None:
        raw, gold, what = model.raw_scores(held_out[0]), held_out[1], "the calibration hold-out"
    elif not type(model).from_scheme and len(texts) >= 2 * cfg.calibration.cv_folds:
        def fit(t, g):
            return type(model).fit(t, g, cfg.linear, seed=cfg.seed)

        raw = out_of_fold_scores(fit, texts, labels, model.labels, cfg.calibration.cv_folds, cfg.seed)
        gold, what = labels, "out-of-fold scores of the training data"
    else:
        return None
    calibrate_model(model, raw, gold, cfg.calibration)
    return raw, gold, what
