"""Training entry point for every model kind: ``train_model(cfg, data, eval_data, output)``.

``cfg.model`` selects the kind through :data:`MODEL_NAMES`: ``tfidf`` (linear baseline), ``scheme``
(linear model trained on the IPC scheme's own text: no labelled data needed); anything else is a
transformer (a Hugging Face id or a local folder) trained by :mod:`patentcpc.training.transformer`.
Each kind's trainer is listed in :data:`TRAINERS` (imported only when that kind trains).

The package: :mod:`~patentcpc.training.linear` (TF-IDF / scheme), :mod:`~patentcpc.training.transformer`
(the :class:`~patentcpc.training.transformer.Trainer` of a fine-tuning run),
:mod:`~patentcpc.training.head` (probe start, WiSE-FT, head re-fit), :mod:`~patentcpc.training.batches`
(tokenized datasets, collation, label matrices), :mod:`~patentcpc.training.checkpoints` (run folder,
checkpoints, logs), :mod:`~patentcpc.training.ensemble`, :mod:`~patentcpc.training.router`.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable

from patentcpc.config import TrainConfig
from patentcpc.data import PatentData, load_data
from patentcpc.metrics import evaluate_scores
from patentcpc.models.base import CPCModel
from patentcpc.results import TrainResult

# cfg.model -> model kind; any other name is a transformer (hub id or folder)
MODEL_NAMES: dict[str, str] = {"tfidf": "linear", "scheme": "scheme", "ensemble": "ensemble", "router": "router"}
LINEAR_MODELS = ("tfidf", "scheme")
# models trained without labelled --data (the cold-start model learns from the IPC scheme's text)
DATA_FREE_MODELS = ("scheme",)
# model kind -> "module:function" of its trainer, all called as (cfg, data, eval_data, output, **kwargs)
TRAINERS: dict[str, str] = {
    "linear": "patentcpc.training.linear:train_linear",
    "scheme": "patentcpc.training.linear:train_linear",
    "transformer": "patentcpc.training.transformer:train_transformer",
    "ensemble": "patentcpc.training.ensemble:train_ensemble",
    "router": "patentcpc.training.router:train_router",
    "causal_lm": "patentcpc.llm.training:train_causal_lm",
}

__all__ = ["LINEAR_MODELS", "MODEL_NAMES", "TRAINERS", "TrainResult", "evaluate_model", "load_for_model",
           "train_model", "trainer_for", "training_kind"]


def training_kind(cfg: TrainConfig) -> str:
    """The model kind ``cfg.model`` trains: a named kind, else ``causal_lm`` for a decoder (an LLM
    ``--arch`` preset or a decoder-only hub id/folder), else ``transformer``. Decided once per
    (model, arch): a hub id is looked up at most once per process."""
    if cfg.model in MODEL_NAMES:
        return MODEL_NAMES[cfg.model]
    return _encoder_or_decoder(cfg.model, cfg.transformer.arch)


@functools.lru_cache(maxsize=64)
def _encoder_or_decoder(model: str | None, arch: str | None) -> str:
    from patentcpc.models.causal_lm import LLM_ARCH_PRESETS, is_decoder_spec  # noqa: PLC0415

    if (arch in LLM_ARCH_PRESETS) if arch else (model in LLM_ARCH_PRESETS or is_decoder_spec(model)):
        return "causal_lm"
    return "transformer"


def trainer_for(kind: str) -> Callable[..., TrainResult]:
    module, name = TRAINERS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def evaluate_model(model: CPCModel, data: PatentData, batch_size: int = 64, progress: bool = False) -> dict:
    """All summary metrics of ``model`` on labelled ``data``."""
    scores = model.scores(data.texts, batch_size=batch_size, progress=progress)
    return evaluate_scores(scores, data.labels, model.labels, model.thresholds)


def load_for_model(source: str, cfg_data, model: CPCModel | None = None, require_labels: bool = True,
                   **extra) -> PatentData:
    """Load data with the model's text view when the source has those fields (else auto-detect).
    ``extra``: more :func:`~patentcpc.data.load_data` keywords (``carry_title=True``)."""
    kwargs = cfg_data.load_kwargs() if cfg_data is not None else {}
    kwargs.update(extra)
    kwargs["require_labels"] = require_labels
    if model is not None:
        kwargs["level"] = model.manifest.label_level
        kwargs["preferred_text_fields"] = model.manifest.text_view.get("fields")
    return load_data(source, **kwargs)


def train_model(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                output: str | os.PathLike | None = None, **trainer_kwargs) -> TrainResult:
    """Train the model ``cfg.model`` describes, evaluate it on ``eval_data`` if given, save it to
    ``output`` (atomically) if given. ``trainer_kwargs`` go to the kind's trainer (``resume``,
    ``callbacks`` for transformers)."""
    return trainer_for(training_kind(cfg))(cfg, data, eval_data, output, **trainer_kwargs)
