"""Decoder-only LLM classifiers (an LLM ``--arch`` preset or a decoder hub id/folder): :mod:`.model`
(decoder + LoRA adapter + head, or instruction tuning) and :mod:`.trainer`. Reuses the fine-tuning
loop of :mod:`patentcpc.training` with its own model factory, and from :mod:`patentcpc.kinds.transformer`
its tokenizer loading and its batching plan (:func:`patentcpc.kinds.transformer.engine.plan_batches`)."""

from patentcpc.registry import Kind

KIND = Kind(
    name="causal_lm",
    claims="patentcpc.kinds.causal_lm.model:claims",
    model="patentcpc.kinds.causal_lm.model:CausalLMCPCModel",
    trainer="patentcpc.kinds.causal_lm.trainer:train_causal_lm",
    config=("data", "transformer", "llm", "lora", "calibration", "explain"),
    capabilities={"resume": True, "merge": True, "explain_index": True, "member": True, "device": True,
                  "embedding_backbone": "patentcpc.kinds.causal_lm.model:embedding_backbone"},
    description="a decoder-only LLM with a classification head (LoRA) or instruction-tuned",
)
