"""Training decoder-only LLM classifiers (the ``causal_lm`` model kind).

* ``llm.mode=head``: the transformer trainer (:class:`patentcpc.training.finetune.Trainer`) with a
  :class:`~patentcpc.kinds.causal_lm.model.CausalLMCPCModel` in place of the encoder classifier: the
  same losses, probe head start, checkpoints, early stopping, head re-fit and threshold tuning;
  only the LoRA adapters and the head have gradients (the base is frozen).
* ``llm.mode=instruction``: :func:`train_instruction`, a plain loop (AdamW, linear schedule with
  warm-up, gradient accumulation, clipping, bf16 autocast on a GPU) on the causal LM loss of the
  response tokens; the thresholds of the codes' sequence probabilities are tuned on validation
  data, and the same metrics as the head mode are reported.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from patentcpc.config import TrainConfig, to_dict
from patentcpc.errors import ConfigError
from patentcpc.kinds.causal_lm import KIND
from patentcpc.kinds.causal_lm.model import LLM_ARCH_PRESETS, CausalLMCPCModel, check_quantization

log = logging.getLogger(__name__)


def train_causal_lm(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                    output: str | os.PathLike | None = None, resume: bool = False, callbacks: list | None = None):
    """Train a decoder classifier as ``cfg.llm.mode`` says; returns a TrainResult."""
    if cfg.model in LLM_ARCH_PRESETS and not cfg.transformer.arch:  # --model llama-tiny means the preset
        cfg = dataclasses.replace(cfg, transformer=dataclasses.replace(cfg.transformer, arch=cfg.model))
    check_quantization(cfg.llm.load_in)
    if cfg.llm.mode == "instruction":
        if cfg.transformer.recipe == "probe":
            raise ConfigError("transformer.recipe probe (probe:MODEL) trains a head on frozen embeddings: it needs "
                              "llm.mode=head, not instruction")
        if resume:
            raise ConfigError("--resume is not supported for llm.mode=instruction")
        return train_instruction(cfg, data, eval_data, output)
    from patentcpc.training.finetune import Trainer

    def factory(labels, model=None, arch=None, tokenizer=None, pooling=None, max_length=512, dropout=0.1,
                manifest_fields=None, attn_implementation=None, views="one"):  # decoders always load with sdpa
        return CausalLMCPCModel.create(labels, model=model, arch=arch, tokenizer=tokenizer, llm_cfg=cfg.llm,
                                       lora_cfg=cfg.lora, max_length=max_length, dropout=dropout,
                                       precision=cfg.transformer.precision, manifest_fields=manifest_fields)

    return Trainer(cfg, data, eval_data, output, resume, callbacks, model_factory=factory,
                   config_sections=KIND.config, views=("one",)).run()


def _batches(n: int, batch_size: int, seed: int):
    """Endless shuffled batches of row indices (a new permutation every epoch)."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            yield order[start : start + batch_size]


def collate_lm(examples: list[tuple[list[int], list[int]]], pad: int) -> dict:
    """Right-padded prompt+response ids; ``labels`` are -100 except on the response tokens."""
    width = max(len(p) + len(r) for p, r in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, (p, r) in enumerate(examples):
        seq = p + r
        ids[i, : len(seq)] = torch.as_tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(p) : len(seq)] = torch.as_tensor(r)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train_instruction(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                      output: str | os.PathLike | None = None):
    """Instruction tuning: prompt -> `` C1, C2`` <eos>, loss on the response tokens."""
    from transformers import get_linear_schedule_with_warmup, set_seed

    from patentcpc.cpc import LabelVocab
    from patentcpc.metrics import evaluate_scores, tune_global_threshold, tune_label_thresholds
    from patentcpc.models.artifact import atomic_dir, write_manifest
    from patentcpc.results import TrainResult
    from patentcpc.training.batches import load_train_eval
    from patentcpc.training.finetune import use_bf16

    tcfg = cfg.transformer
    if output is None:
        raise ConfigError("--output is required to train an LLM")
    set_seed(cfg.seed)
    train, valid = load_train_eval(cfg, data, eval_data)
    vocab = LabelVocab.from_label_lists(train.labels + ([] if eval_data else valid.labels), cfg.data.level)
    if len(vocab) == 0:
        raise ConfigError(f"{data}: no labels to learn")
    train_info = {"source": str(data), "n_docs": len(train), "fingerprint": train.fingerprint(),
                  "n_skipped": train.n_skipped, "eval_source": str(eval_data) if eval_data else "split",
                  "n_eval_docs": len(valid)}
    model = CausalLMCPCModel.create(
        vocab.labels, model=None if tcfg.arch else cfg.model, arch=tcfg.arch, tokenizer=tcfg.tokenizer,
        llm_cfg=cfg.llm, lora_cfg=cfg.lora, max_length=tcfg.max_length, dropout=tcfg.dropout,
        precision=tcfg.precision,
        manifest_fields={"label_level": cfg.data.level, "text_view": train.text_view, "training_data": train_info,
                         "config": to_dict(cfg, KIND.config), "extra": {"model_name": tcfg.arch or cfg.model}})
    examples = [(model.prompt_ids(t), model.response_ids(labels)) for t, labels in zip(train.texts, train.labels,
                                                                                       strict=True)]
    net = model.network
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("nothing to train: the model has no trainable parameters")
    opt = torch.optim.AdamW(params, lr=tcfg.lr, weight_decay=tcfg.weight_decay, betas=(0.9, 0.98), eps=1e-6)
    per_epoch = math.ceil(len(examples) / (tcfg.batch_size * tcfg.grad_accum))
    steps = tcfg.max_steps or max(1, math.ceil(tcfg.epochs * per_epoch))
    sched = get_linear_schedule_with_warmup(opt, int(tcfg.warmup_ratio * steps), steps)
    bf16 = use_bf16(tcfg)
    pad = model.tokenizer.pad_token_id or 0
    batches = _batches(len(examples), tcfg.batch_size, cfg.seed)
    records = []
    device = model.device
    for step in range(1, steps + 1):
        total = 0.0
        for _ in range(tcfg.grad_accum):
            batch = {k: v.to(device) for k, v in collate_lm([examples[i] for i in next(batches)], pad).items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = net(**batch).loss / tcfg.grad_accum
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(params, tcfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % max(1, min(50, steps // 10 or 1)) == 0 or step == steps:
            records.append({"step": step, "epoch": step / per_epoch, "loss": total,
                            "learning_rate": sched.get_last_lr()[0]})
            log.info("step %d/%d loss %.4f", step, steps, total)
    net.eval()
    gold = valid.labels
    scores = model.scores(valid.texts)
    threshold, _ = tune_global_threshold(scores, gold, vocab.labels)
    model.manifest.threshold = threshold
    per_label = tune_label_thresholds(scores, gold, vocab.labels, threshold, tcfg.threshold_min_support)
    model.manifest.label_thresholds = per_label.tolist()
    metrics = evaluate_scores(scores, gold, vocab.labels, model.thresholds)
    model.manifest.metrics = {"eval_data": str(eval_data) if eval_data else "validation split",
                              "thresholds_tuned_on_this_data": True, **metrics}
    model.manifest.extra["training"] = {"global_steps": steps, "epochs": steps / per_epoch,
                                        "final_loss": records[-1]["loss"] if records else None}
    from patentcpc.predictions import set_abstention
    from patentcpc.training.guard import check_model

    set_abstention(model, scores, gold)  # the same "no code assigned" rule as every kind
    if model.manifest.extra.get("mode") != "instruction":  # generated codes: an empty row means "none fits"
        check_model(model, None, gold, None, cfg.guard, what="the validation data", scores=scores)  # flat scores
    with atomic_dir(output) as tmp:
        model.save_weights(tmp)
        write_manifest(tmp, model.manifest)
        (tmp / "logs").mkdir()
        (tmp / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return TrainResult(model, metrics, str(Path(output)))
