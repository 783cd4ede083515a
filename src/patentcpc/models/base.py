"""What every patentcpc model offers: scores and ranked codes for texts, a manifest, save and load.

The protocol of a model kind (registered in :mod:`patentcpc.models`): a subclass sets ``kind``,
implements :meth:`CPCModel.scores`, :meth:`CPCModel._save_weights` and :meth:`CPCModel.load`;
everything else (``predict``, ``predict_scores``, ``labels``, ``thresholds``, ``save``) is shared.
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
    """Base class. Subclasses set ``kind``, implement :meth:`scores`, :meth:`_save_weights` and
    :meth:`load`."""

    kind: ClassVar[str] = ""
    # whether :meth:`scores` takes ``options`` (an InferenceOptions: batching, autocast, ...)
    uses_inference_options: ClassVar[bool] = False

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

    def predict_scores(self, texts: Sequence[str], batch_size: int | None = None, progress: bool = False,
                       options=None) -> np.ndarray:
        """Score matrix (documents x labels, columns in :attr:`labels` order); higher means more
        likely. ``options``: an :class:`~patentcpc.inference.InferenceOptions` for the kinds that
        batch (transformer, ONNX); the others ignore it."""
        kwargs: dict = {"progress": progress}
        if batch_size is not None:
            kwargs["batch_size"] = batch_size
        if options is not None and self.uses_inference_options:
            kwargs["options"] = options
        return self.scores([texts] if isinstance(texts, str) else list(texts), **kwargs)

    def predict(self, texts: Sequence[str], top_k: int | None = None, threshold: float | None = None, *,
                batch_size: int | None = None, include_assigned: bool = False) -> list[list[Prediction]]:
        """One list of :class:`~patentcpc.predictions.Prediction` per text, best first.

        With neither ``top_k`` nor ``threshold``: the codes the model assigns (score at or above
        its decision thresholds). ``top_k``: at most the k best codes, assigned or not.
        ``threshold``: only codes scoring at least that (it replaces the model's thresholds).
        ``include_assigned``: the top k plus every assigned code. A single string counts as one text.
        """
        from patentcpc.predictions import rank  # noqa: PLC0415

        scores = self.predict_scores(texts, batch_size=batch_size)
        return rank(scores, self.labels, self.thresholds, top_k, threshold, include_assigned)

    def save(self, path: str | os.PathLike) -> None:
        """Write the model folder (manifest, config, weights) atomically: a model already at
        ``path`` is replaced in one rename, or left as it was if anything fails."""
        from patentcpc.models.artifact import atomic_dir, write_manifest  # noqa: PLC0415

        with atomic_dir(path, kind="model") as tmp:
            self._save_weights(tmp)
            write_manifest(tmp, self.manifest)

    def _save_weights(self, folder: Path) -> None:
        raise NotImplementedError

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, **kwargs) -> CPCModel:
        raise NotImplementedError
