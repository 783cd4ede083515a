"""Batch prediction beyond one machine with Ray Data (optional extra: ``pip install patentcpc[distributed]``).

:func:`predict_parquet_ray` reads Parquet shards (``id`` and ``text`` columns, or the fields of
the model's text view), runs :class:`RayPredictor` actors over them with ``map_batches`` (one
model per actor, on a GPU each when ``num_gpus=1``) and writes Parquet shards of
``id``, ``labels`` (above threshold) and ``predictions_json`` (the ranked codes as JSON text).

Without Ray, shard by hand: every worker (``torchrun --nproc-per-node N`` or ``accelerate launch``)
predicts the files whose index modulo the world size is its rank; see docs/inference.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from patentcpc.errors import ConfigError, PatentCPCError


class RayPredictor:
    """A Ray Data callable class: loads the model once per actor, predicts numpy batches."""

    def __init__(self, model_dir: str, top_k: int = 5, batch_size: int = 64, token_budget: int = 16384,
                 text_fields: Sequence[str] | None = None):
        from patentcpc.api import load_model
        from patentcpc.inference_options import InferenceOptions

        self.model = load_model(model_dir)
        self.options = InferenceOptions(batch_size=batch_size, token_budget=token_budget)
        self.top_k = top_k
        view = self.model.manifest.text_view
        self.fields = list(text_fields or view.get("fields") or ["text"])
        self.joiner = view.get("joiner", "\n")

    def texts(self, batch: dict) -> list[str]:
        if "text" in batch and "text" not in self.fields:
            return [str(t) for t in batch["text"]]
        missing = [f for f in self.fields if f not in batch]
        if missing:
            raise PatentCPCError(f"input shards lack the column(s) {', '.join(missing)}")
        rows = zip(*(batch[f] for f in self.fields), strict=True)
        return [self.joiner.join(str(v) for v in row if v is not None and str(v)) for row in rows]

    def __call__(self, batch: dict) -> dict:
        from patentcpc.streaming import format_predictions

        texts = self.texts(batch)
        results = format_predictions(self.model, self.model.predict_scores(texts, options=self.options), self.top_k)
        ids = batch["id"] if "id" in batch else np.arange(len(texts))
        return {"id": np.asarray([str(i) for i in ids], dtype=object),
                "labels": np.asarray([json.dumps(r["labels"]) for r in results], dtype=object),
                "predictions_json": np.asarray([json.dumps(r["predictions"], ensure_ascii=False) for r in results],
                                               dtype=object)}


def predict_parquet_ray(model_dir: str | os.PathLike, inputs: str | Sequence[str], output_dir: str | os.PathLike,
                        top_k: int = 5, num_actors: int = 1, num_gpus: float = 0.0, batch_rows: int = 1024,
                        batch_size: int = 64, token_budget: int = 16384, address: str | None = None) -> int:
    """Predict Parquet shards with Ray Data; returns the number of documents written.

    ``num_actors`` model replicas (``num_gpus`` each: 1 on a GPU cluster, 0 on CPUs), each fed
    ``batch_rows`` rows at a time; ``address`` joins an existing cluster (default: a local one).
    """
    try:
        import ray
    except ImportError:
        raise ConfigError("Ray is not installed: pip install 'patentcpc[distributed]'") from None
    if num_actors < 1 or batch_rows < 1:
        raise ConfigError("num_actors and batch_rows must be >= 1")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
    ds = ray.data.read_parquet(inputs if isinstance(inputs, str) else list(inputs))
    preds = ds.map_batches(RayPredictor, fn_constructor_args=(str(model_dir), top_k, batch_size, token_budget),
                           batch_size=batch_rows, batch_format="numpy", concurrency=num_actors,
                           num_gpus=num_gpus)
    preds.write_parquet(str(output_dir))
    import pyarrow.dataset as pads

    return pads.dataset(str(output_dir), format="parquet").count_rows()
