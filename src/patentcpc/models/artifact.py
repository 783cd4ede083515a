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

Weights are safetensors (tensors) or skops (scikit-learn objects, loaded with an allow-list of
types): never plain pickle, and loading never runs code from the folder.
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
        if d.get("format_version") != FORMAT_VERSION:
            raise ModelError(f"{where}: unsupported format_version {d.get('format_version')!r} "
                             f"(this patentcpc reads {FORMAT_VERSION})")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise ModelError(f"{where}: {exc}") from None


def read_manifest(path: str | os.PathLike) -> Manifest:
    folder = Path(path)
    file = folder / MANIFEST
    if not folder.is_dir():
        raise ModelError(f"{folder}: model folder not found")
    if not file.exists():
        raise ModelError(f"{folder}: not a patentcpc model folder (no {MANIFEST})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{file}: not valid JSON ({exc})") from None
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
