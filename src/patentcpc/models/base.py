"""What every patentcpc model offers: scores for texts, a manifest, save and load."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np

from patentcpc.models.artifact import Manifest


class CPCModel:
    """Base class. Subclasses set ``kind``, implement :meth:`scores`, :meth:`_save_weights` and
    :meth:`load`."""

    kind: ClassVar[str] = ""

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

    def scores(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Score matrix (len(texts), len(labels)); higher means more likely."""
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> None:
        from patentcpc.models.artifact import atomic_dir, write_manifest  # noqa: PLC0415

        with atomic_dir(path, kind="model") as tmp:
            self._save_weights(tmp)
            write_manifest(tmp, self.manifest)

    def _save_weights(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> CPCModel:
        raise NotImplementedError
