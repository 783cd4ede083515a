"""The public Python API (also available as ``patentcpc.<name>``)::

    import patentcpc

    model = patentcpc.load_model("patentcpc-models/scheme-subclass")   # a folder, or a hub id
    for p in model.predict(["A plough with adjustable tines ..."], top_k=3)[0]:
        print(p.code, round(p.score, 3), p.title)

    model = patentcpc.train(model="tfidf", data="train.jsonl", output="my-model")
    print(patentcpc.evaluate(model, "test.jsonl")["f1@1"])

``train`` takes the configuration the CLI takes (:class:`~patentcpc.config.TrainConfig`, or its
YAML file, or a dict of the same keys) plus ``--set``-style overrides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from patentcpc.config import TrainConfig
from patentcpc.errors import ConfigError, ModelError
from patentcpc.models.base import CPCModel
from patentcpc.predictions import Prediction
from patentcpc.registry import load_model as _load_folder

__all__ = ["CPCModel", "Prediction", "TrainConfig", "evaluate", "load_model", "train"]


def load_model(path_or_hub_id: str | os.PathLike, **kwargs: Any) -> CPCModel:
    """A model folder (any kind), or a Hugging Face Hub model repository holding one.

    Keyword arguments go to the kind's loader: ``device`` / ``dtype`` (transformer),
    ``onnx_file`` (run a transformer folder as its ONNX export), ``threads`` (ONNX).
    An unreachable hub fails within seconds with a hint (use a folder, or ``HF_HUB_OFFLINE=1``).
    """
    from patentcpc.hub import is_hub_id

    path = Path(path_or_hub_id)
    if path.exists() or not is_hub_id(path_or_hub_id):
        return _load_folder(path, **kwargs)
    return _load_folder(_download(str(path_or_hub_id)), **kwargs)


def _download(repo_id: str) -> Path:
    from patentcpc.hub import check_hub

    check_hub(repo_id, "model")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id))
    except Exception as exc:  # noqa: BLE001  (the hub client's many error types)
        raise ModelError(f"{repo_id}: cannot download the model folder ({str(exc).splitlines()[0]})") from None


def train_config(config: TrainConfig | Mapping | str | os.PathLike | None = None,
                 overrides: Sequence[str] | None = None, **fields: Any) -> TrainConfig:
    """The resolved configuration: defaults <- ``config`` (object, dict or YAML file) <- ``fields``
    (top-level keys: ``model="tfidf"``, ``linear={"C": 1.0}``, ...) <- ``overrides``
    (``["transformer.epochs=2"]``, as ``--set``)."""
    from patentcpc.config import apply_overrides, from_dict, load_yaml, merge, to_dict

    if config is None:
        base: dict = {}
    elif isinstance(config, TrainConfig):
        base = to_dict(config)
    elif isinstance(config, Mapping):
        base = dict(config)
    elif isinstance(config, str | os.PathLike):
        base = load_yaml(config)
    else:
        raise ConfigError(f"config must be a TrainConfig, a dict or a YAML file, not {type(config).__name__}")
    data = apply_overrides(merge(base, fields), list(overrides) if overrides else None)
    return from_dict(TrainConfig, data)


def train(config: TrainConfig | Mapping | str | os.PathLike | None = None, *, data: str | None = None,
          eval_data: str | None = None, output: str | os.PathLike | None = None,
          overrides: Sequence[str] | None = None, resume: bool = False, **fields: Any) -> CPCModel:
    """Train a model as ``patentcpc train`` does and return it (saved to ``output`` if given; a
    transformer needs ``output`` for its checkpoints). The evaluation metrics on ``eval_data`` (or
    on the validation split of a transformer) are in ``model.manifest.metrics``."""
    from patentcpc.registry import train_model

    cfg = train_config(config, overrides, **fields)
    kwargs = {"resume": True} if resume else {}
    return train_model(cfg, data, eval_data, output, **kwargs).model


def evaluate(model: CPCModel | str | os.PathLike, data, *, batch_size: int | None = None,
             progress: bool = False, **data_options: Any) -> dict:
    """Metrics of ``model`` (or a model folder) on labelled ``data`` (a file, folder or hub id, or a
    loaded :class:`~patentcpc.data.PatentData`): P/R/F1@1,3,5, micro/macro P/R/F1, section and
    class accuracy@1, ``n_docs``; for a model with a conformal table, its label sets' coverage, mean
    size and unsure share at 0.8, 0.9 and 0.95 (``conformal_coverage@0.9``, ...). ``data_options``:
    the CLI's data options (``text_fields``, ``label_field``, ``id_field``, ``on_bad_row``,
    ``hf_split``)."""
    from patentcpc.config import DataConfig, from_dict
    from patentcpc.data import load_for_model
    from patentcpc.metrics import evaluate_scores

    if not isinstance(model, CPCModel):
        model = load_model(model)
    if isinstance(data, str | os.PathLike):
        options = {k: v for k, v in data_options.items() if v is not None}
        options["level"] = model.manifest.label_level
        data = load_for_model(str(data), from_dict(DataConfig, options, "data"), model)
    elif data_options:
        raise ConfigError("data options apply to a file, not to loaded data")
    from patentcpc.conformal import evaluate_sets

    scores = model.predict_scores(data.texts, batch_size=batch_size, progress=progress)
    return {**evaluate_scores(scores, data.labels, model.labels, model.thresholds),
            **evaluate_sets(model, scores, data.labels)}
