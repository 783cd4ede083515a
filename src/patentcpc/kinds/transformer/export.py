"""CPU deployment: export a transformer model to ONNX and run it with ONNX Runtime.

:func:`export_onnx` writes ``model.onnx`` (inputs ``input_ids``, ``attention_mask``, dynamic batch
and sequence axes; output ``logits``) and, with ``quantize=True``, ``model.int8.onnx`` (dynamic
int8 quantization of the weights). :class:`~patentcpc.kinds.onnx.model.OnnxCPCModel` (the ``onnx``
model kind, registered in :mod:`patentcpc.models`) runs the result, so everything that takes a
model (the service, ``predict-batch``) takes it too. :func:`parity` is the largest logit difference to PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from patentcpc.errors import ModelError
from patentcpc.kinds.onnx.model import OnnxCPCModel

__all__ = ["PARITY_TEXTS", "OnnxCPCModel", "export", "export_onnx", "int8_path", "parity", "quantize_int8"]

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
    import torch

    from patentcpc.kinds.transformer.model import TransformerCPCModel

    if not isinstance(model, TransformerCPCModel):
        raise ModelError(f"ONNX export needs a transformer model, not '{getattr(model, 'kind', '?')}'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = model.network.to("cpu").eval()
    enc = model.tokenizer(list(PARITY_TEXTS[:2]), padding=True, truncation=True, max_length=model.max_length,
                          return_tensors="pt")
    args = (enc["input_ids"], enc["attention_mask"])
    from patentcpc.io import atomic_path

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
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from patentcpc.io import atomic_path

    with atomic_path(dst) as tmp:
        quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8)
    return Path(dst)


def parity(model, onnx_file: str | os.PathLike, texts: Sequence[str] | None = None) -> float:
    """Largest |logit difference| between ONNX Runtime and PyTorch on ``texts``."""
    import onnxruntime as ort

    from patentcpc.kinds.transformer.engine import predict_logits

    texts = list(texts or PARITY_TEXTS)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    onnx_model = OnnxCPCModel(model.manifest, session, model.tokenizer, model.max_length, onnx_path=onnx_file)
    return float(np.abs(onnx_model.logits(texts) - predict_logits(model, texts)).max())


def export(model, path: str | os.PathLike, opset: int = 17, quantize: bool = False,
           check: bool = True) -> tuple[Path, float | None]:
    """The transformer kind's ``onnx_export`` capability (``patentcpc export onnx``): :func:`export_onnx`,
    then (``check``) the largest ONNX Runtime vs PyTorch logit difference (:func:`parity`)."""
    path = export_onnx(model, path, opset=opset, quantize=quantize)
    return path, (parity(model, path) if check else None)
