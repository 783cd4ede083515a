"""CPU deployment: export a transformer model to ONNX and run it with ONNX Runtime.

:func:`export_onnx` writes ``model.onnx`` (inputs ``input_ids``, ``attention_mask``, dynamic batch
and sequence axes; output ``logits``) and, with ``quantize=True``, ``model.int8.onnx`` (dynamic
int8 quantization of the weights). :func:`onnx_session` opens such a graph with ONNX Runtime and
:func:`onnx_logits` runs it in the engine's length-sorted batches. The ``onnx`` model kind
(:class:`patentcpc.kinds.onnx.model.OnnxCPCModel`, which reuses both) serves the result, so everything
that takes a model (the service, ``predict-batch``) takes it too. :func:`parity` is the largest logit
difference to PyTorch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from patentcpc.errors import ModelError

__all__ = ["PARITY_TEXTS", "export", "export_onnx", "int8_path", "onnx_logits", "onnx_session", "parity",
           "quantize_int8"]

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
    if model.network.views != "one":
        raise ModelError("ONNX export of a model of transformer.views first_line (two encoder passes a "
                         "document) is not supported: it runs in PyTorch")
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


def onnx_session(file: str | os.PathLike, threads: int | None = None, providers: Sequence[str] | None = None):
    """An ONNX Runtime session of the graph in ``file`` (all graph optimizations; the CPU unless
    ``providers``); a missing or unloadable file is a one-line :class:`ModelError`."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("ONNX models need onnxruntime: pip install 'patentcpc[onnx]'") from None
    file = Path(file)
    if not file.exists():
        raise ModelError(f"{file}: no ONNX file")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        opts.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(file), opts, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own untyped errors)
        raise ModelError(f"{file}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from None


def onnx_logits(session, tokenizer, texts: Sequence[str], n_labels: int, max_length: int, batch_size: int = 32,
                token_budget: int = 8192) -> np.ndarray:
    """Logits (``len(texts)`` x ``n_labels``) of an exported graph run by ``session``: the texts
    tokenized without padding, then the engine's length-sorted batches of at most ``batch_size``
    documents and ``token_budget`` padded tokens."""
    from patentcpc.kinds.transformer.engine import plan_batches

    texts = list(texts)
    out = np.zeros((len(texts), n_labels), dtype=np.float32)
    if not texts:
        return out
    pad_id = tokenizer.pad_token_id or 0
    ids = tokenizer(texts, truncation=True, max_length=max_length, padding=False)["input_ids"]
    for idx in plan_batches([len(x) for x in ids], batch_size, token_budget):
        width = max(len(ids[i]) for i in idx)
        batch = np.full((len(idx), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            batch[r, : len(ids[i])] = ids[i]
            mask[r, : len(ids[i])] = 1
        (logits,) = session.run(["logits"], {"input_ids": batch, "attention_mask": mask})
        out[idx] = logits
    return out


def parity(model, onnx_file: str | os.PathLike, texts: Sequence[str] | None = None) -> float:
    """Largest |logit difference| between ONNX Runtime and PyTorch on ``texts``."""
    from patentcpc.kinds.transformer.engine import predict_logits

    texts = list(texts or PARITY_TEXTS)
    ours = onnx_logits(onnx_session(onnx_file), model.tokenizer, texts, len(model.labels), model.max_length)
    return float(np.abs(ours - predict_logits(model, texts)).max())


def export(model, path: str | os.PathLike, opset: int = 17, quantize: bool = False,
           check: bool = True) -> tuple[Path, float | None]:
    """The transformer kind's ``onnx_export`` capability (``patentcpc export onnx``): :func:`export_onnx`,
    then (``check``) the largest ONNX Runtime vs PyTorch logit difference (:func:`parity`)."""
    path = export_onnx(model, path, opset=opset, quantize=quantize)
    return path, (parity(model, path) if check else None)
