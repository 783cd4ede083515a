"""What a training run returns (shared by :mod:`patentcpc.training` and :mod:`patentcpc.training.finetune`,
which therefore need not import each other)."""

from __future__ import annotations

from dataclasses import dataclass

from patentcpc.models.base import CPCModel


@dataclass
class TrainResult:
    model: CPCModel
    metrics: dict
    output: str | None
    overlap: object = None  # patentcpc.overlap.Overlap of --eval-data with the training data, if any
    phases: dict | None = None  # name -> seconds of the run's timed steps after the optimizer steps
    measured_on: str | None = None  # what ``metrics`` were measured on (and whether it tuned the thresholds)
