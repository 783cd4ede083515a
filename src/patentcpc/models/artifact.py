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
from patentcpc.io import atomic_dir, atomic_write_text  # noqa: F401  (re-exported: one implementation)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CHECKPOINTS_DIR = "checkpoints"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".joblib", ".ckpt", ".skops")


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
        from pydantic import ValidationError  # noqa: PLC0415

        from patentcpc.validation import validation_message  # noqa: PLC0415

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
    from typing import Annotated, Any, Literal  # noqa: PLC0415

    from pydantic import BaseModel, ConfigDict, Field, model_validator  # noqa: PLC0415

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
    """Refuse a model folder holding pickle-based weights (``*.bin``, ``*.pt``, ``*.pkl``, ...):
    patentcpc never writes them and never loads them. ``checkpoints/`` (training state, read only
    by ``train --resume``) is not part of a model."""
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):
        if Path(root) == folder and CHECKPOINTS_DIR in dirs:
            dirs.remove(CHECKPOINTS_DIR)
        for name in files:
            if name.lower().endswith(PICKLE_SUFFIXES):
                rel = Path(root, name).relative_to(folder)
                raise ModelError(f"{folder}: holds {rel}, a pickle-based weight file that patentcpc does not load "
                                 "(only safetensors, JSON and ONNX); remove it or re-save the model")


def read_manifest(path: str | os.PathLike) -> Manifest:
    folder = Path(path)
    file = folder / MANIFEST
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    if not file.exists():
        raise ModelError(f"{folder}: not a patentcpc model folder (no {MANIFEST})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(f"{file}: not valid JSON ({str(exc)[:200]})") from None
    return Manifest.from_dict(data, str(file))


def write_manifest(folder: str | os.PathLike, manifest: Manifest) -> None:
    folder = Path(folder)
    atomic_write_text(folder / MANIFEST, json.dumps(manifest.to_dict(), indent=2, default=_json_default) + "\n")
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(_plain(manifest.config), sort_keys=False))


def _json_default(o):
    import numpy as np  # noqa: PLC0415

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _plain(obj):
    return json.loads(json.dumps(obj, default=_json_default))
