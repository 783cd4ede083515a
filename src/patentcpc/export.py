"""CPU deployment: export a transformer model to ONNX and run it with ONNX Runtime.

:func:`export_onnx` writes ``model.onnx`` (inputs ``input_ids``, ``attention_mask``, dynamic batch
and sequence axes; output ``logits``) and, with ``quantize=True``, ``model.int8.onnx`` (dynamic
int8 quantization of the weights). :class:`OnnxCPCModel` is a :class:`~patentcpc.models.base.CPCModel`
over an ONNX file: same labels, thresholds and scores as the PyTorch model, sorted token-budgeted
batches like :func:`~patentcpc.inference.predict_logits`, so everything that takes a model (the
service, ``predict-batch``) takes it too. :func:`parity` is the largest logit difference to PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from patentcpc.errors import ModelError
from patentcpc.inference import plan_batches
from patentcpc.models.base import CPCModel

# the second text is longer than ModernBERT's local attention window, so that the traced graph
# and the parity check cover sliding-window masks
PARITY_TEXTS = (
    "A plough with adjustable soil working tines for tractors.",
    "Semiconductor transistor with a gate oxide layer on a silicon substrate, and a method of etching the "
    "wafer to form the device, wherein the etching uses a plasma of fluorine compounds. " * 8,
    "Wireless base station.",
)


def export_onnx(model, path: str | os.PathLike, opset: int = 17, quantize: bool = False) -> Path:
    """Write ``model`` (a TransformerCPCModel) as ONNX at ``path``; with ``quantize`` also
    ``<stem>.int8.onnx``. Returns ``path``."""
    import torch  # noqa: PLC0415

    if getattr(model, "kind", "") != "transformer":
        raise ModelError(f"ONNX export needs a transformer model, not '{getattr(model, 'kind', '?')}'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = model.network.to("cpu").eval()
    enc = model.tokenizer(list(PARITY_TEXTS[:2]), padding=True, truncation=True, max_length=model.max_length,
                          return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"])
    from patentcpc.io import atomic_path  # noqa: PLC0415

    try:
        with atomic_path(path) as tmp, torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(
                net, args, str(tmp), input_names=["input_ids", "attention_mask"], output_names=["logits"],
                dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                              "logits": {0: "batch"}},
                opset_version=opset, dynamo=False)
    finally:
        model.network.to(model.device)
    if quantize:
        quantize_int8(path, int8_path(path))
    return path


def int8_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".int8.onnx")


def quantize_int8(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Dynamic int8 quantization of the weights of MatMul/Gemm (activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic  # noqa: PLC0415

    from patentcpc.io import atomic_path  # noqa: PLC0415

    with atomic_path(dst) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
    return Path(dst)


class OnnxCPCModel(CPCModel):
    """A CPC model that runs an exported ONNX file with ONNX Runtime (CPU by default)."""

    kind = "onnx"

    def __init__(self, manifest, session, tokenizer, max_length: int = 512, batch_size: int = 32,
                 token_budget: int = 8192):
        super().__init__(manifest)
        self.session = session
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.token_budget = token_budget
        self.pad_id = tokenizer.pad_token_id or 0

    @classmethod
    def from_folder(cls, model_dir: str | os.PathLike, onnx_file: str | os.PathLike | None = None,
                    threads: int | None = None, providers: Sequence[str] | None = None) -> OnnxCPCModel:
        """The ONNX file (default ``MODEL/onnx/model.onnx``) with the folder's manifest and tokenizer."""
        import onnxruntime as ort  # noqa: PLC0415

        from patentcpc.models.artifact import read_manifest  # noqa: PLC0415
        from patentcpc.models.transformer import ENCODER_DIR, load_tokenizer  # noqa: PLC0415

        manifest = read_manifest(model_dir)
        file = Path(onnx_file) if onnx_file else Path(model_dir) / "onnx" / "model.onnx"
        if not file.exists():
            raise ModelError(f"{file}: no ONNX file (run `patentcpc export onnx --model {model_dir}`)")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        session = ort.InferenceSession(str(file), opts, providers=list(providers or ["CPUExecutionProvider"]))
        tok = load_tokenizer(str(Path(model_dir) / ENCODER_DIR))
        return cls(manifest, session, tok, int(manifest.extra.get("max_length", 512)))

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=False)["input_ids"]
        for idx in plan_batches([len(x) for x in ids], self.batch_size, self.token_budget):
            width = max(len(ids[i]) for i in idx)
            batch = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for r, i in enumerate(idx):
                batch[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            (logits,) = self.session.run(["logits"], {"input_ids": batch, "attention_mask": mask})
            out[idx] = logits
        return out

    def scores(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Sigmoid probabilities, like the PyTorch model."""
        return 1.0 / (1.0 + np.exp(-self.logits(texts)))


def parity(model, onnx_file: str | os.PathLike, texts: Sequence[str] | None = None) -> float:
    """Largest |logit difference| between ONNX Runtime and PyTorch on ``texts``."""
    import onnxruntime as ort  # noqa: PLC0415

    from patentcpc.inference import predict_logits  # noqa: PLC0415

    texts = list(texts or PARITY_TEXTS)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    onnx_model = OnnxCPCModel(model.manifest, session, model.tokenizer, model.max_length)
    return float(np.abs(onnx_model.logits(texts) - predict_logits(model, texts)).max())
