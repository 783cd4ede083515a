"""Domain-adaptive pretraining: masked-language modelling on patent text with the HF Trainer.

``patentcpc pretrain --model M --data F --output DIR`` continues MLM training of a pretrained
encoder (or of a random-init ``--arch`` preset with ``--tokenizer``) on the texts of ``F`` and
saves a Hugging Face model folder (``config.json`` + ``model.safetensors`` + tokenizer files)
that ``patentcpc train --model DIR`` fine-tunes. ModernBERT models mask 30% of the tokens (as
ModernBERT was trained), other models 15%. Training stops with an error on a NaN/inf loss rather
than saving a broken model; gradients are clipped and CPU training runs in fp32.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from patentcpc.errors import ConfigError, ModelError


@dataclass
class PretrainConfig:
    """MLM options. ``mlm_probability`` null: 0.3 for ModernBERT, else 0.15."""

    model: str | None = None
    arch: str | None = None
    tokenizer: str | None = None
    max_length: int = 512
    mlm_probability: float | None = None
    lr: float = 5e-5
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    seed: int = 42

    def __post_init__(self) -> None:
        if not self.model and not self.arch:
            raise ConfigError("pretrain needs --model (hub id or folder) or --arch (random init)")
        if self.mlm_probability is not None and not 0 < self.mlm_probability < 1:
            raise ConfigError(f"--mlm-probability must be in (0, 1), not {self.mlm_probability}")
        if not 8 <= self.max_length <= 8192:
            raise ConfigError(f"--max-length must be in 8..8192, not {self.max_length}")
        if self.lr <= 0 or self.epochs <= 0 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("--lr, --epochs, --batch-size and --grad-accum must be positive")


def build_mlm_model(cfg: PretrainConfig):
    """(masked-LM model, tokenizer): pretrained ``cfg.model`` or random-init ``cfg.arch``."""
    from transformers import AutoModelForMaskedLM

    from patentcpc.kinds.transformer.model import build_encoder_from_arch, default_tokenizer_path, load_tokenizer

    if cfg.arch:
        tok = load_tokenizer(cfg.tokenizer or default_tokenizer_path())
        config = build_encoder_from_arch(cfg.arch, tok, max(cfg.max_length, 512)).config
        return AutoModelForMaskedLM.from_config(config), tok
    tok = load_tokenizer(cfg.tokenizer or cfg.model)
    try:
        model = AutoModelForMaskedLM.from_pretrained(cfg.model, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load '{cfg.model}' as a masked language model: {str(exc).splitlines()[0]}") from None
    return model, tok


def _nan_guard():
    from transformers import TrainerCallback

    class NaNGuard(TrainerCallback):
        """Stop on a NaN/inf training loss (fp16 overflow, a bad learning rate)."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise ModelError(f"MLM loss is {loss} at step {state.global_step}: lower --lr or check the data")

    return NaNGuard()


def pretrain(cfg: PretrainConfig, data, output: str | os.PathLike) -> dict:
    """Run MLM on the texts of ``data`` (a PatentData) and save the model folder to ``output``.
    Returns a summary (steps, final loss, masking rate)."""
    from transformers import set_seed

    from patentcpc.io import atomic_dir, check_output_dir

    out = check_output_dir(output, "encoder")
    set_seed(cfg.seed)
    model, tok = build_mlm_model(cfg)
    if tok.mask_token is None:
        raise ModelError("the tokenizer has no mask token: it cannot be used for masked-language modelling")
    prob = cfg.mlm_probability or (0.3 if model.config.model_type == "modernbert" else 0.15)
    ds = data.dataset.map(lambda b: tok(b["text"], truncation=True, max_length=cfg.max_length,
                                        return_special_tokens_mask=True),
                          batched=True, remove_columns=data.dataset.column_names, desc="tokenizing")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.pretrain-work-"))
    try:
        return _run_mlm(cfg, model, tok, ds, prob, out, work, atomic_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_mlm(cfg: PretrainConfig, model, tok, ds, prob: float, out: Path, work: Path, atomic_dir) -> dict:
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=str(work), seed=cfg.seed, learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
        adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, lr_scheduler_type="linear",
        warmup_steps=cfg.warmup_ratio, num_train_epochs=cfg.epochs, max_steps=cfg.max_steps or -1,
        per_device_train_batch_size=cfg.batch_size, gradient_accumulation_steps=cfg.grad_accum,
        max_grad_norm=1.0, bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to="none",
        logging_steps=10, dataloader_num_workers=0, train_sampling_strategy="group_by_length",
    )
    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=prob)
    trainer = Trainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                      processing_class=tok, callbacks=[_nan_guard()])
    result = trainer.train()
    loss = float(result.training_loss)
    if not math.isfinite(loss):
        raise ModelError(f"MLM training loss is {loss}: the model was not saved")
    if trainer.is_world_process_zero():
        with atomic_dir(out, kind="encoder") as tmp:
            trainer.model.save_pretrained(str(tmp), safe_serialization=True)
            tok.save_pretrained(str(tmp))
    return {"output": str(out), "steps": trainer.state.global_step, "train_loss": loss,
            "mlm_probability": prob, "n_docs": len(ds), "model_type": model.config.model_type}
