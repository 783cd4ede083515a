"""Training the transformer kind: the shared fine-tuning loop (:class:`patentcpc.training.finetune.Trainer`)
building a :class:`~patentcpc.kinds.transformer.model.TransformerCPCModel`."""

from __future__ import annotations

import os

from patentcpc.config import TrainConfig
from patentcpc.kinds.transformer import KIND
from patentcpc.kinds.transformer.model import TransformerCPCModel
from patentcpc.results import TrainResult
from patentcpc.training.finetune import Trainer


def train_transformer(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                      output: str | os.PathLike | None = None, resume: bool = False,
                      callbacks: list | None = None) -> TrainResult:
    """Fine-tune ``cfg.model`` (or a random-init ``cfg.transformer.arch``) on ``data``; see
    :mod:`patentcpc.training.finetune`. Returns a :class:`~patentcpc.results.TrainResult`."""
    return Trainer(cfg, data, eval_data, output, resume, callbacks, model_factory=TransformerCPCModel.create,
                   config_sections=KIND.config).run()
