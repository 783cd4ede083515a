"""Typed configuration of LLM classifiers (``llm.``), their LoRA adapters (``lora.``) and of the
router model kind (``router.``); part of :class:`patentcpc.config.TrainConfig`, overridable with
``--set lora.r=16``."""

from __future__ import annotations

from dataclasses import dataclass

from patentcpc.errors import ConfigError


@dataclass
class LLMConfig:
    """Decoder-only LLM classifiers (``--model <decoder hub id | folder>`` or ``--arch llama-tiny``).

    Args:
        mode: ``head`` (last-token / mean pooled hidden state + a multi-label linear head, trained
            with every patentcpc loss) or ``instruction`` (prompt -> "CPC: H04L, H04W", causal LM
            loss on the response; scores are the codes' sequence probabilities, decoding is
            constrained to the label set).
        pooling: ``last`` (the last non-padding token) or ``mean`` (head mode).
        gradient_checkpointing: recompute activations in the backward pass (less memory).
        load_in: ``none``, ``4bit`` (QLoRA, NF4) or ``8bit``: bitsandbytes quantized base, CUDA only.
        lora: train LoRA adapters (false: the whole backbone is trained, no adapters).
        max_codes: most codes constrained decoding emits per document (instruction mode).
        prompt: the instruction prompt, ``{text}`` is replaced by the document (instruction mode).
        score_chunk: labels scored together per forward pass (instruction mode).
    """

    mode: str = "head"
    pooling: str = "last"
    gradient_checkpointing: bool = False
    load_in: str = "none"
    lora: bool = True
    max_codes: int = 5
    prompt: str = "Assign CPC codes to this patent.\nPatent: {text}\nCPC:"
    score_chunk: int = 256

    def __post_init__(self) -> None:
        for name, allowed in {"mode": ("head", "instruction"), "pooling": ("last", "mean"),
                              "load_in": ("none", "4bit", "8bit")}.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"llm.{name} must be one of {', '.join(allowed)}, not '{getattr(self, name)}'")
        if "{text}" not in self.prompt:
            raise ConfigError("llm.prompt must contain {text}")
        if self.max_codes < 1 or self.score_chunk < 1:
            raise ConfigError("llm.max_codes and llm.score_chunk must be >= 1")


@dataclass
class LoRAConfig:
    """LoRA adapters (``peft``).

    Args:
        r: rank; alpha: scaling numerator (scale = alpha / r); dropout: on the adapter input.
        target_modules: module names to adapt (null: the family's default, see
            :data:`patentcpc.models.causal_lm.LORA_TARGETS`; ``all-linear`` is accepted).
    """

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: list[str] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.target_modules, str):
            self.target_modules = [m.strip() for m in self.target_modules.split(",") if m.strip()]
        if self.r < 1:
            raise ConfigError(f"lora.r must be >= 1, not {self.r}")
        if self.alpha <= 0:
            raise ConfigError(f"lora.alpha must be > 0, not {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"lora.dropout must be in [0, 1), not {self.dropout}")
        if self.target_modules is not None and not self.target_modules:
            raise ConfigError("lora.target_modules must name at least one module (or be null)")


@dataclass
class RouterConfig:
    """The router model kind (``--model router --members ENCODER,LLM``).

    Args:
        members: the two member specs (as ``--model`` takes them, or trained model folders).
        share: target share of documents sent to the second member, tuned on validation data.
        rare_count: a document whose top label of the first member has fewer training documents
            than this is always routed (0: off).
        valid_fraction: share of the training data held out to tune the routing threshold.
    """

    members: list[str] | None = None
    share: float = 0.2
    rare_count: int = 5
    valid_fraction: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.members, str):
            self.members = [m.strip() for m in self.members.split(",") if m.strip()]
        if self.members is not None and len(self.members) != 2:
            raise ConfigError(f"router.members must name two models (ENCODER,LLM), not {self.members}")
        if not 0 <= self.share <= 1:
            raise ConfigError(f"router.share must be in [0, 1], not {self.share}")
        if self.rare_count < 0:
            raise ConfigError(f"router.rare_count must be >= 0, not {self.rare_count}")
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"router.valid_fraction must be in (0, 1), not {self.valid_fraction}")
