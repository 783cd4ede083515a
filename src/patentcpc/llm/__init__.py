"""Decoder-only (causal) LLM classifiers: training (:mod:`patentcpc.llm.training`; the ``llm.``,
``lora.`` and ``router.`` settings are in :mod:`patentcpc.config`). The model kind itself is
:mod:`patentcpc.models.causal_lm`; the router that sends uncertain documents to an LLM is
:mod:`patentcpc.models.router`."""
