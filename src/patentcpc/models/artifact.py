"""The model folder: ``manifest.json`` + ``config.yaml`` + weights, written atomically.

Manifest fields (format version 1)::

    format_version   1
    kind             "linear" | "transformer" | ...  (selects the loader; no code is read from disk)
    label_level      section | class | subclass | group
    labels           the label vocabulary, column order of every score matrix
    text_view        {"fields": [...], "joiner": "\\n"}
    score_type       "probability" | "margin"
    threshold        global decision threshold
    label_thresholds per-label thresholds (optional, same order as labels)
    training_data    {"source", "fingerprint", "n_docs", "n_skipped"}
    metrics          final evaluation metrics (optional)
    config           the resolved training configuration
    patentcpc_version, created_at

The manifest is checked against a pydantic schema (types, allowed values, no unknown keys) before
anything else is read. Weights are safetensors and JSON (ONNX graphs for exported models): never
pickle, skops or joblib, and loading never runs or fetches code (:func:`check_no_code_files`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from patentcpc import __version__
from patentcpc.cpc import LabelVocab
from patentcpc.errors import ModelError
from patentcpc.folder_files import PICKLE_SUFFIXES, check_folder_tree, read_folder_json  # noqa: F401
from patentcpc.io import atomic_dir, atomic_write_text  # noqa: F401  (re-exported: one implementation)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECKPOINTS_DIR = "checkpoints"
OLD_LINEAR_WEIGHTS = "linear.skops"  # the linear model of patentcpc <= 0.1.0: never loaded (it can run code)


@dataclass
class Manifest:
    kind: str
    labels: list[str]
    label_level: str = "subclass"
    text_view: dict = field(default_factory=lambda: {"fields": ["text"], "joiner": "\n"})
    score_type: str = "probability"
    threshold: float = 0.5
    label_thresholds: list[float] | None = None
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    patentcpc_version: str = __version__
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @property
    def vocab(self) -> LabelVocab:
        return LabelVocab(self.labels, self.label_level)

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> Manifest:
        """Validate ``d`` against the manifest schema (types, allowed values, no unknown keys)."""
        if not isinstance(d, dict):
            raise ModelError(f"{where}: must be a JSON object")
        if type(d.get("format_version")) is not int or d["format_version"] != FORMAT_VERSION:
            raise ModelError(f"{where}: unsupported format_version {d.get('format_version')!r} "
                             f"(this patentcpc reads {FORMAT_VERSION})")
        from pydantic import ValidationError

        from patentcpc.validation import validation_message

        schema = _manifest_schema()
        try:
            checked = schema.model_validate(d).model_dump()
        except ValidationError as exc:
            raise ModelError(f"{where}: {validation_message(exc, list(schema.model_fields))}") from None
        return cls(**{k: checked[k] for k in cls.__dataclass_fields__})


_SCHEMA = None


def _manifest_schema():
    """The pydantic schema of ``manifest.json`` (built on first use: pydantic is not needed for --help)."""
    global _SCHEMA
    if _SCHEMA is not None:
        return _SCHEMA
    from typing import Annotated, Any, Literal

    from pydantic import BaseModel, ConfigDict, Field, model_validator

    finite = Annotated[float, Field(allow_inf_nan=False)]

    class TextView(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        fields: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
        joiner: str = "\n"

    class ManifestSchema(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        format_version: Literal[1]
        kind: Annotated[str, Field(min_length=1, max_length=64)]
        labels: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(min_length=1)
        label_level: Literal["section", "class", "subclass", "group"] = "subclass"
        text_view: TextView = Field(default_factory=lambda: TextView(fields=["text"]))
        score_type: Literal["probability", "margin"] = "probability"
        threshold: finite = 0.5
        label_thresholds: list[finite] | None = None
        training_data: dict[str, Any] = Field(default_factory=dict)
        metrics: dict[str, Any] = Field(default_factory=dict)
        config: dict[str, Any] = Field(default_factory=dict)
        extra: dict[str, Any] = Field(default_factory=dict)
        patentcpc_version: str = __version__
        created_at: str = ""

        @model_validator(mode="after")
        def _consistent(self):
            if len(set(self.labels)) != len(self.labels):
                raise ValueError("labels must not repeat")
            if self.label_thresholds is not None and len(self.label_thresholds) != len(self.labels):
                raise ValueError(f"label_thresholds must have one value per label ({len(self.labels)}), "
                                 f"not {len(self.label_thresholds)}")
            return self

    _SCHEMA = ManifestSchema
    return _SCHEMA


def check_no_code_files(folder: str | os.PathLike) -> None:
    """Check a model folder before anything in it is read (:func:`patentcpc.folder_files.check_folder_tree`):
    no pickle-based weights (``*.bin``, ``*.pt``, ``*.pkl``, ...: patentcpc never writes them and never
    loads them), no link leaving the folder, nothing but regular files, each within the size limit of
    its kind. ``checkpoints/`` (training state, read only by ``train --resume``) is not part of a model."""
    if os.path.lexists(Path(folder) / OLD_LINEAR_WEIGHTS):
        raise ModelError(f"{folder}: saved by an older patentcpc as {OLD_LINEAR_WEIGHTS}, a format that is no longer "
                         "loaded (it can run code); retrain the model with `patentcpc train`")
    check_folder_tree(folder, error=ModelError, what="the model folder", skip=(CHECKPOINTS_DIR,))


def read_manifest(path: str | os.PathLike) -> Manifest:
    folder = Path(path)
    file = folder / MANIFEST
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    if not file.exists():
        raise ModelError(f"{folder}: not a patentcpc model folder (no {MANIFEST})")
    data = read_folder_json(folder, MANIFEST, error=ModelError, what="the model folder")
    return Manifest.from_dict(data, str(file))


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> None:
    folder = Path(folder)
    atomic_write_text(folder / MANIFEST, json.dumps(manifest.to_dict(), indent=2, default=_json_default) + "\n")
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(_plain(manifest.config), sort_keys=False))


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _plain(obj):
    return json.loads(json.dumps(obj, default=_json_default))
