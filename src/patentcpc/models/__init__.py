"""Model kinds and loading. ``load_model(folder)`` reads the manifest and dispatches on its
``kind`` to a loader registered here: nothing in the folder decides which code runs."""

from __future__ import annotations

import importlib
import os

from patentcpc.errors import ModelError
from patentcpc.models.artifact import Manifest, read_manifest
from patentcpc.models.base import CPCModel

MODEL_KINDS: dict[str, str] = {
    "linear": "patentcpc.models.linear:LinearCPCModel",
    "omikuji": "patentcpc.models.omikuji:OmikujiCPCModel",
    "transformer": "patentcpc.models.transformer:TransformerCPCModel",
}


def model_class(kind: str) -> type[CPCModel]:
    if kind not in MODEL_KINDS:
        raise ModelError(f"unknown model kind '{kind}' (known: {', '.join(MODEL_KINDS)})")
    module, name = MODEL_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def load_model(path: str | os.PathLike, **kwargs) -> CPCModel:
    """Load a patentcpc model folder (any kind)."""
    manifest = read_manifest(path)
    return model_class(manifest.kind).load(path, manifest, **kwargs)


__all__ = ["CPCModel", "Manifest", "MODEL_KINDS", "load_model", "model_class", "read_manifest"]
