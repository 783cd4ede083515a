"""patentcpc: assign Cooperative Patent Classification (CPC) codes to patent text.

The public API (see :mod:`patentcpc.api`)::

    import patentcpc
    model = patentcpc.load_model("my-model")            # a model folder or a hub id
    model.predict(["A plough with ..."], top_k=3)       # [[Prediction(code, score, title, ...)]]

Names are imported on first use, so ``import patentcpc`` stays light (no torch, no scikit-learn).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

__all__ = [
    "CPCModel",
    "ConfigError",
    "DataError",
    "ModelError",
    "PatentCPCError",
    "Prediction",
    "TrainConfig",
    "__version__",
    "evaluate",
    "load_model",
    "read_documents",
    "train",
]

_LAZY = {
    "CPCModel": "patentcpc.api",
    "Prediction": "patentcpc.api",
    "TrainConfig": "patentcpc.api",
    "evaluate": "patentcpc.api",
    "load_model": "patentcpc.api",
    "train": "patentcpc.api",
    "ConfigError": "patentcpc.errors",
    "DataError": "patentcpc.errors",
    "ModelError": "patentcpc.errors",
    "PatentCPCError": "patentcpc.errors",
    "read_documents": "patentcpc.documents",
}

if TYPE_CHECKING:
    from patentcpc.api import CPCModel, Prediction, TrainConfig, evaluate, load_model, train
    from patentcpc.documents import read_documents
    from patentcpc.errors import ConfigError, DataError, ModelError, PatentCPCError


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'patentcpc' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
