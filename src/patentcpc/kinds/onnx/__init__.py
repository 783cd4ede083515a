"""A transformer model run as its exported ONNX graph (``load_model(folder, onnx_file=...)`` or a folder
whose manifest says ``onnx``). Reuses :mod:`patentcpc.kinds.transformer` (its tokenizer, and from its
export module the ONNX Runtime session and the batched run of the graph)."""

from patentcpc.registry import Kind

KIND = Kind(
    name="onnx",
    model="patentcpc.kinds.onnx.model:OnnxCPCModel",
    capabilities={"inference_options": True, "device": True, "member": True},
    description="an exported transformer run by ONNX Runtime",
)
