"""The fine-tuned encoder kind (any other ``--model``: a hub id or folder of an encoder, or a random-init
``--arch`` preset): :mod:`.model` (encoder + linear head and its folder), :mod:`.engine` (its batched
inference), :mod:`.trainer` (the fine-tuning run, on the shared loop of :mod:`patentcpc.training`),
:mod:`.export` (ONNX), :mod:`.unpadded` (ModernBERT's unpadded attention)."""

from patentcpc.registry import Kind

KIND = Kind(
    name="transformer",
    fallback=True,
    model="patentcpc.kinds.transformer.model:TransformerCPCModel",
    trainer="patentcpc.kinds.transformer.trainer:train_transformer",
    config=("data", "transformer", "calibration", "explain"),
    capabilities={"resume": True, "onnx_export": "patentcpc.kinds.transformer.export:export",
                  "bench": "patentcpc.kinds.transformer.bench:bench_command",
                  "inference_options": True, "device": True,
                  "embedding_backbone": "patentcpc.kinds.transformer.model:embedding_backbone",
                  "explain_index": True, "member": True},
    description="a fine-tuned encoder (BERT, ModernBERT, ...) with a linear head",
)
