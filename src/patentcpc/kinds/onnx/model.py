"""The ``onnx`` model kind: an exported transformer run with ONNX Runtime (CPU by default).

Two ways in, both through :func:`patentcpc.registry.load_model`:

* a folder whose manifest says ``kind: onnx`` (written by :meth:`OnnxCPCModel.save`)::

      manifest.json  config.yaml  model.onnx  encoder/ (tokenizer files only)

* a transformer folder plus ``onnx_file=`` (``patentcpc export onnx`` writes ``MODEL/onnx/model.onnx``):
  the transformer's manifest and tokenizer with the exported graph.

Same labels, thresholds and scores as the PyTorch model; batches are length-sorted under a token
budget like :func:`~patentcpc.kinds.transformer.engine.predict_logits`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from patentcpc.errors import ModelError
from patentcpc.models.artifact import Manifest, check_no_code_files, read_manifest
from patentcpc.models.base import CPCModel
from patentcpc.numeric import sigmoid

ONNX_FILE = "model.onnx"
TOKENIZER_DIR = "encoder"  # the transformer folder's name for it: a transformer folder serves too


class OnnxCPCModel(CPCModel):
    """A CPC model that runs an exported ONNX file with ONNX Runtime."""

    kind = "onnx"
    uses_inference_options = True

    def __init__(self, manifest: Manifest, session, tokenizer, max_length: int = 512, batch_size: int = 32,
                 token_budget: int = 8192, onnx_path: str | os.PathLike | None = None):
        super().__init__(manifest)
        self.session = session
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.pad_id = tokenizer.pad_token_id or 0
        self.onnx_path = Path(onnx_path) if onnx_path is not None else None

    # ----------------------------------------------------------------- loading
    @staticmethod
    def _session(file: Path, threads: int | None = None, providers: Sequence[str] | None = None):
        from patentcpc.kinds.transformer.export import onnx_session

        return onnx_session(file, threads, providers)

    @classmethod
    def load(cls, path: str | os.PathLike, manifest: Manifest, onnx_file: str | os.PathLike | None = None,
             threads: int | None = None, providers: Sequence[str] | None = None, **_: object) -> OnnxCPCModel:
        """Load an ``onnx`` folder, or (``onnx_file`` given) a transformer folder with that graph."""
        from patentcpc.kinds.transformer.model import load_tokenizer

        folder = Path(path)
        check_no_code_files(folder)
        file = Path(onnx_file) if onnx_file is not None else folder / ONNX_FILE
        if manifest.kind != cls.kind:  # a transformer folder and its export: the graph decides the kind
            manifest = dataclasses.replace(manifest, kind=cls.kind,
                                           extra={**manifest.extra, "exported_from": manifest.kind})
        session = cls._session(file, threads, providers)
        tok = load_tokenizer(str(folder / TOKENIZER_DIR))
        return cls(manifest, session, tok, int(manifest.extra.get("max_length", 512)), onnx_path=file)

    @classmethod
    def from_folder(cls, model_dir: str | os.PathLike, onnx_file: str | os.PathLike | None = None,
                    threads: int | None = None, providers: Sequence[str] | None = None) -> OnnxCPCModel:
        """The ONNX file (default ``MODEL/onnx/model.onnx``) with the folder's manifest and tokenizer."""
        manifest = read_manifest(model_dir)
        if onnx_file is None and manifest.kind != cls.kind:
            onnx_file = Path(model_dir) / "onnx" / ONNX_FILE
            if not onnx_file.exists():
                raise ModelError(f"{onnx_file}: no ONNX file (run `patentcpc export onnx --model {model_dir}`)")
        return cls.load(model_dir, manifest, onnx_file, threads, providers)

    def _save_weights(self, folder: Path) -> None:
        if self.onnx_path is None:
            raise ModelError("this ONNX model was built from a session, not a file: nothing to save")
        shutil.copyfile(self.onnx_path, folder / ONNX_FILE)
        self.tokenizer.save_pretrained(folder / TOKENIZER_DIR)

    # ----------------------------------------------------------------- inference
    def logits(self, texts: Sequence[str], options=None) -> np.ndarray:
        """The graph's logits in the transformer engine's batches (``onnx_logits`` of its export module)."""
        from patentcpc.kinds.transformer.export import onnx_logits

        batch_size = options.batch_size if options is not None else self.batch_size
        token_budget = options.token_budget if options is not None else self.token_budget
        return onnx_logits(self.session, self.tokenizer, texts, len(self.labels), self.max_length, batch_size,
                           token_budget)

    def raw_scores(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False,
                   options=None) -> np.ndarray:
        """Sigmoid probabilities, like the PyTorch model."""
        return sigmoid(self.logits(texts, options))
