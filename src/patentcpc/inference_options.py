"""How a model batches and runs its forward passes: :class:`InferenceOptions`, a plain options record
that every kind may receive through ``CPCModel.predict_scores(..., options=)`` (the kinds that batch
a network read it: the transformer's engine, :mod:`patentcpc.kinds.transformer.engine`, and the ONNX
kind; the others ignore it). It imports nothing but the errors, so the CLI, the service and the
distributed batch build it without loading a model kind."""

from __future__ import annotations

from dataclasses import dataclass

from patentcpc.errors import ConfigError

AUTOCAST_MODES = ("auto", "bf16", "fp16", "off")
PADDING_FREE_MODES = ("auto", "on", "off")


@dataclass
class InferenceOptions:
    """How :func:`~patentcpc.kinds.transformer.engine.predict_logits` batches and runs a transformer.

    ``batch_size`` caps the documents of a batch, ``token_budget`` its padded tokens (rows x the
    longest row). ``autocast``: ``auto`` is bf16 on a GPU that has it and fp32 on a CPU.
    ``padding_free``: ``auto`` runs ModernBERT batches unpadded on a CUDA GPU where a
    variable-length attention kernel exists for the compute dtype (bf16/fp16; see
    :mod:`patentcpc.kinds.transformer.unpadded`), padded otherwise; ``on`` forces it (with no such kernel, e.g. on a
    CPU or in fp32, the layers run unpadded and attention alone is re-padded for SDPA: exact,
    a test path there, not a fast one); ``off``: padded batches. ``cls_last_layer``: with ``cls``
    pooling on ModernBERT (SDPA or eager attention, padded batches), the last layer computes only the [CLS] row
    (queries, attention output and MLP of one token; keys and values of all), which is all the head
    reads; off by default (it calls private transformers internals, and only with the versions
    :data:`~patentcpc.kinds.transformer.engine.CLS_SHORTCUT_TRANSFORMERS` names).
    """

    batch_size: int = 64
    token_budget: int = 16384
    autocast: str = "auto"
    compile: bool = False
    padding_free: str = "auto"
    cls_last_layer: bool = False  # private ModernBERT internals: opt in (see engine.cls_shortcut_supported)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, not {self.batch_size}")
        if self.token_budget < 1:
            raise ConfigError(f"token_budget must be >= 1, not {self.token_budget}")
        if self.autocast not in AUTOCAST_MODES:
            raise ConfigError(f"autocast must be one of {', '.join(AUTOCAST_MODES)}, not '{self.autocast}'")
        if self.padding_free not in PADDING_FREE_MODES:
            raise ConfigError(f"padding_free must be one of {', '.join(PADDING_FREE_MODES)}, "
                              f"not '{self.padding_free}'")
