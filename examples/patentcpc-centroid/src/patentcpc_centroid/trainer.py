"""Training the centroid kind: ``patentcpc train --model centroid`` calls :func:`train_centroid`
(through the registry), as ``patentcpc.registry.train_model`` does."""

from __future__ import annotations

import os

import numpy as np

from patentcpc.calibration import calibrate_model
from patentcpc.config import TrainConfig, to_dict
from patentcpc.data import load_data, load_for_model
from patentcpc.errors import ConfigError, ModelError
from patentcpc.io import check_output_dir
from patentcpc.metrics import evaluate_model
from patentcpc.models.artifact import Manifest
from patentcpc.results import TrainResult
from patentcpc.training.guard import check_model
from patentcpc_centroid import KIND
from patentcpc_centroid.model import CentroidCPCModel, CentroidOptions, vectorizer


def train_centroid(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                   output: str | os.PathLike | None = None, **kwargs) -> TrainResult:
    """Fit one centroid per label on ``data``; with ``eval_data``, fit patentcpc's calibrator and
    thresholds on it and evaluate; save the model folder to ``output`` (atomically) if given.
    ``kwargs``: what patentcpc passes every trainer (``resume``: refused before this is called,
    the kind declares no "resume" capability)."""
    from sklearn.preprocessing import MultiLabelBinarizer

    options = CentroidOptions.from_config(cfg.options)  # a bad option: one line, before any work
    if not data:
        raise ConfigError("--data is required to train a centroid model")
    if output is not None:  # never into a folder patentcpc did not write, nor onto the input
        check_output_dir(output, "model", [data, eval_data])
    train = load_data(data, **cfg.data.load_kwargs())
    labels = sorted({code for codes in train.labels for code in codes})
    if len(labels) < 2:
        raise ModelError(f"{data}: training needs at least 2 distinct labels, found {len(labels)}")
    tfidf = vectorizer(options.ngram_max, options.max_features)
    try:
        x = tfidf.fit_transform(train.texts)  # documents x terms, rows of length 1
    except ValueError as exc:  # no words at all: scikit-learn's "empty vocabulary"
        raise ModelError(f"{data}: {exc}") from None
    y = MultiLabelBinarizer(classes=labels, sparse_output=True).fit_transform(train.labels)  # documents x labels
    centroids = np.asarray((y.T @ x).todense(), dtype=np.float32)  # each label's sum of its documents
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)

    manifest = Manifest(kind=KIND.name, labels=labels, label_level=cfg.data.level, text_view=train.text_view,
                        score_type="probability", threshold=0.5,
                        config=to_dict(cfg, KIND.config),  # the run's settings and this kind's sections
                        training_data={"source": str(data), "n_docs": len(train), "fingerprint": train.fingerprint()})
    model = CentroidCPCModel(manifest, tfidf, centroids, options.temperature)

    ev = load_for_model(eval_data, cfg.data, model) if eval_data else None  # the model's text view and level
    tuned = ev is not None and cfg.calibration.method != "none"
    if tuned:  # patentcpc's calibrator and decision thresholds, fitted on the evaluation data
        calibrate_model(model, model.raw_scores(ev.texts), ev.labels, cfg.calibration)
    checked = train if ev is None else ev
    # patentcpc's check before saving (flat scores, a decreasing calibrator); --set guard=warn saves anyway
    check_model(model, checked.texts, checked.labels, None, cfg.guard, what=str(eval_data or data))
    metrics = evaluate_model(model, ev) if ev is not None else {}
    if metrics:
        model.manifest.metrics = {"eval_data": str(eval_data), **metrics}
    if output is not None:
        model.save(output)
    return TrainResult(model, metrics, str(output) if output is not None else None,
                       measured_on=f"{eval_data} (the thresholds were tuned on it: optimistic)" if tuned else None)
