"""What every model kind shares: the base class (:mod:`.base`, predict = scores -> calibration ->
ranked codes), the model folder's manifest and checks (:mod:`.artifact`) and the encoder + linear head
surface the fine-tuning loop uses (:mod:`.network`). The kinds themselves are in :mod:`patentcpc.kinds`,
found through :mod:`patentcpc.registry` (``patentcpc.load_model`` loads any of them)."""

from __future__ import annotations

from patentcpc.models.artifact import Manifest, read_manifest
from patentcpc.models.base import CPCModel

__all__ = ["CPCModel", "Manifest", "read_manifest"]
