"""Decoder-only (causal) LLM classifiers: configuration (:mod:`patentcpc.llm.config`) and training
(:mod:`patentcpc.llm.training`). The model kind itself is :mod:`patentcpc.models.causal_lm`; the
router that sends uncertain documents to an LLM is :mod:`patentcpc.models.router`."""
