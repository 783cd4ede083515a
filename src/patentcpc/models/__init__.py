"""Model kinds and loading. ``load_model(folder)`` reads the manifest and dispatches on its
``kind`` to a loader registered here: nothing in the folder decides which code runs."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from patentcpc.errors import ModelError
from patentcpc.folder_files import check_folder_file
from patentcpc.models.artifact import Manifest, check_no_code_files, read_manifest
from patentcpc.models.base import CPCModel

MODEL_KINDS: dict[str, str] = {
    "linear": "patentcpc.models.linear:LinearCPCModel",
    "scheme": "patentcpc.models.scheme:SchemeCPCModel",
    "omikuji": "patentcpc.models.omikuji:OmikujiCPCModel",
    "transformer": "patentcpc.models.transformer:TransformerCPCModel",
    "onnx": "patentcpc.models.onnx:OnnxCPCModel",
    "ensemble": "patentcpc.models.ensemble:EnsembleCPCModel",
    "causal_lm": "patentcpc.models.causal_lm:CausalLMCPCModel",
    "router": "patentcpc.models.router:RouterCPCModel",
}


def model_class(kind: str) -> type[CPCModel]:
    if kind not in MODEL_KINDS:
        raise ModelError(f"unknown model kind '{kind}' (known: {', '.join(MODEL_KINDS)})")
    module, name = MODEL_KINDS[kind].split(":")
    return getattr(importlib.import_module(module), name)


def load_model(path: str | os.PathLike, onnx_file: str | os.PathLike | None = None, **kwargs) -> CPCModel:
    """Load a patentcpc model folder (any kind). ``onnx_file``: run a transformer folder as that
    exported ONNX graph (the ``onnx`` kind, e.g. ``MODEL/onnx/model.onnx``). Other keyword
    arguments go to the kind's loader (``device``, ``dtype`` for transformers, ``threads`` for ONNX)."""
    manifest = read_manifest(path)
    # every kind, every member: no pickle, no link leaving the folder, no special or oversized file
    check_no_code_files(path)
    if onnx_file is not None:
        check_folder_file(Path(onnx_file).parent, Path(onnx_file).name, what="its folder")
        model = model_class("onnx").load(path, manifest, onnx_file=onnx_file, **kwargs)
    else:
        model = model_class(manifest.kind).load(path, manifest, **kwargs)
    model.source_path = os.fspath(path)  # where its optional files (explain/) are read from
    return model


__all__ = ["CPCModel", "Manifest", "MODEL_KINDS", "load_model", "model_class", "read_manifest"]
