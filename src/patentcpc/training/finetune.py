"""The fine-tuning loop shared by the encoder + head kinds (``transformer``, ``causal_lm``), on the
Hugging Face :class:`~transformers.Trainer`. A kind's trainer runs :class:`Trainer` with its own
``model_factory`` (:func:`patentcpc.kinds.transformer.trainer.train_transformer` is what
``patentcpc train --model <hub id | folder>`` or ``--arch`` runs). What happens, in order:

1. data: the training file, and validation data (``--eval-data``, else a stratified
   ``transformer.valid_fraction`` of the training file); the label vocabulary is the training
   labels;
2. model: the kind's ``model_factory`` (the transformer kind's ``TransformerCPCModel.create``: a
   pretrained encoder, or a random-init ``arch`` preset), then the head is initialized
   (``head_init``): ``probe`` fits it as a one-vs-rest logistic regression on the frozen pooled
   embeddings before fine-tuning ("LP-FT", Kumar et al., ICLR 2022), which works much better than a
   random head on a few hundred documents;
3. training: ``Trainer`` with AdamW (betas 0.9/0.98, eps 1e-6, weight decay, a larger learning
   rate for the head), a linear schedule with warm-up, gradient accumulation, length-grouped
   batches, bf16 on a GPU and fp32 on CPU, a fixed seed; evaluation every epoch (or N steps) with
   :func:`patentcpc.metrics.evaluate_scores`, the best checkpoint by f1@1, early stopping;
4. after training: WiSE-FT weight interpolation with the start (``wise_alpha``, pretrained models)
   and a class-balanced probe re-fitted as the head on the final embeddings of the training part
   (``refit_head``);
5. the decision thresholds (global and per label) are tuned on the validation data; with
   ``refit_on: all`` the head is then re-fitted on training + validation split, keeping them; the
   model folder is written atomically with ``logs/metrics.jsonl`` and ``logs/curves.png``.

The ``probe`` recipe (``--model probe:ENCODER``) skips 2's head start and 3-4: the head is the
re-fit's class-balanced probe on the frozen pretrained encoder (linear probing); 5 is the same,
without training curves (there are no steps to log).

Each step is a method of :class:`Trainer` (which owns the run); the head fits are in
:mod:`patentcpc.training.head`, the tokenized data in :mod:`patentcpc.training.batches`, the run
folder in :mod:`patentcpc.training.checkpoints`.

Checkpoints live in ``<output>/checkpoints/checkpoint-<step>``; a checkpoint counts only once its
``COMMITTED`` marker is written (after everything else), so a run killed while saving resumes from
the previous one. ``--resume`` restores weights, optimizer, scheduler, RNG states and the position
in the data, so it ends where an uninterrupted run would. Under ``accelerate launch`` (DDP) the
same code runs in every process and only the main process writes the model folder.
"""


from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from patentcpc.config import TrainConfig, TransformerConfig, to_dict
from patentcpc.cpc import LabelVocab
from patentcpc.errors import ConfigError
from patentcpc.losses import build_loss
from patentcpc.metrics import evaluate_scores, tune_global_threshold, tune_label_thresholds
from patentcpc.numeric import sigmoid
from patentcpc.results import TrainResult
from patentcpc.training import checkpoints
from patentcpc.training.batches import MultiLabelCollator, encode, load_train_eval, sparse_labels
from patentcpc.training.checkpoints import CHECKPOINTS, LOGS, prepare_run_dir, write_model_folder, write_run_config
from patentcpc.training.guard import Phases, check_model, noise
from patentcpc.training.head import fit_head, init_head, remember_embeddings, wise_interpolate

log = logging.getLogger(__name__)


def _show_phases() -> bool:
    return os.environ.get("PATENTCPC_PROGRESS", "1") == "1"


# ----------------------------------------------------------------------------- recipe

# USPTO-3M's reference fine-tuning run (BCE, lr 8e-5, batch 32, 2 epochs, bf16 on a GPU: the
# ``precision: auto`` default); no few-shot machinery: no probe fit, no WiSE-FT, no re-fit.
REFERENCE_RECIPE: dict[str, object] = {
    "loss": "bce", "lr": 8e-5, "head_lr": None, "batch_size": 32, "epochs": 2.0,
    "head_init": "prior", "wise_alpha": None, "refit_head": False,
}


def resolve_recipe(tcfg: TransformerConfig, n_train: int) -> tuple[TransformerConfig, str]:
    """The settings to train with and the recipe's name (``few-shot``, ``reference`` or ``probe``:
    no fine-tuning, pretrained encoders only).

    ``auto`` is ``few-shot`` up to ``few_shot_max_docs`` training documents (where
    benchmarks/training.md measured the probe start, WiSE-FT and the re-fit to help, on a few
    hundred documents) and ``reference`` above (where those fits cost more than the optimizer steps,
    benchmarks/scale.md). A random-init ``arch`` encoder always gets ``reference`` under ``auto``:
    the few-shot machinery fits probes on the embeddings of a pretrained encoder, and on a random
    one they are noise (issue 29: a re-fitted head scoring every code alike, f1@1 0.065 -> 0.000).
    The reference recipe replaces only fields left at their defaults."""

    name = tcfg.recipe
    if name == "probe" and tcfg.arch:
        raise ConfigError(f"transformer.recipe probe needs a pretrained encoder: a random-init '{tcfg.arch}' "
                          "encoder's embeddings are noise")
    if name == "auto":
        name = "few-shot" if n_train <= tcfg.few_shot_max_docs and not tcfg.arch else "reference"
    if name in ("few-shot", "probe"):
        return tcfg, name
    defaults = TransformerConfig()
    changes = {k: v for k, v in REFERENCE_RECIPE.items() if getattr(tcfg, k) == getattr(defaults, k)}
    return dataclasses.replace(tcfg, **changes), name


def resolve_views(tcfg: TransformerConfig, recipe: str, allowed: Sequence[str] = ("one", "first_line")) -> str:
    """``transformer.views`` resolved: ``auto`` is ``first_line`` for the ``probe`` recipe (the
    frozen encoder's title and rest embedded apart, benchmarks/accuracy.md) where the model builds
    it (``allowed``), else ``one``."""
    if tcfg.views == "auto":
        return "first_line" if recipe == "probe" and "first_line" in allowed else "one"
    if tcfg.views not in allowed:
        raise ConfigError(f"transformer.views {tcfg.views}: this model kind reads its whole text "
                          f"(use transformer.views={allowed[0]})")
    return tcfg.views


def resolve_label_docs(tcfg: TransformerConfig, labels, level: str) -> str:
    """``transformer.label_docs`` resolved: ``auto`` is ``seen`` where a head is fitted as a probe
    (``head_init: probe`` or ``refit_head``: the few-shot recipe; the ``probe`` recipe) on CPC
    labels of one level (section, class or subclass) with the IPC scheme installed, else ``none``."""
    if tcfg.label_docs != "auto":
        return tcfg.label_docs
    from patentcpc.cpc import ipc_scheme_path
    from patentcpc.scheme import labels_level

    probes = tcfg.head_init == "probe" or tcfg.refit_head or tcfg.recipe == "probe"
    usable = level != "group" and labels_level(labels) is not None and ipc_scheme_path() is not None
    return "seen" if probes and usable else "none"


# ----------------------------------------------------------------------------- Hugging Face Trainer pieces


def _make_trainer_class():
    from transformers import Trainer

    class CPCTrainer(Trainer):
        """Trainer with a multi-label loss and a larger learning rate for the head."""

        loss_is_scaled_for_ga = False

        def __init__(self, *args, loss_fn=None, head_lr: float | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_fn = loss_fn
            self.head_lr = head_lr

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            logits = model(inputs["input_ids"], inputs["attention_mask"])
            loss = self.loss_fn.to(logits.device)(logits, labels)
            return (loss, {"logits": logits}) if return_outputs else loss

        def _get_train_sampler(self, train_dataset=None):
            ds = self.train_dataset if train_dataset is None else train_dataset
            name = self.args.length_column_name
            if self.args.train_sampling_strategy == "group_by_length" and name in getattr(ds, "column_names", ()):
                from transformers.trainer_pt_utils import LengthGroupedSampler

                # the lengths as one list: transformers passes datasets' lazy Column, which the sampler
                # then reads one row at a time (128 s before the first step at 300k documents)
                return LengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps,
                                            dataset=ds, lengths=list(ds[name][:]))
            return super()._get_train_sampler(train_dataset)

        def _get_eval_sampler(self, eval_dataset):
            # keep the validation order (compute_metrics matches rows to the gold label lists)
            if self.args.world_size <= 1:
                return torch.utils.data.SequentialSampler(eval_dataset)
            return None

        def create_optimizer(self, model=None):
            if self.optimizer is not None:
                return self.optimizer
            net = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(net))
            groups: dict[tuple[bool, bool], list] = {}
            for name, p in net.named_parameters():
                if p.requires_grad:
                    groups.setdefault((name.startswith("head."), name in decay), []).append(p)
            head_lr = self.head_lr or self.args.learning_rate
            params = [{"params": ps, "weight_decay": self.args.weight_decay if dec else 0.0,
                       "lr": head_lr if is_head else self.args.learning_rate}
                      for (is_head, dec), ps in groups.items()]
            self.optimizer = torch.optim.AdamW(params, lr=self.args.learning_rate,
                                               betas=(self.args.adam_beta1, self.args.adam_beta2),
                                               eps=self.args.adam_epsilon)
            return self.optimizer

    return CPCTrainer


def use_bf16(tcfg: TransformerConfig) -> bool:
    """Whether to train in bf16."""
    if tcfg.precision == "fp32":
        return False
    has_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if tcfg.precision == "bf16" and not has_bf16:
        raise ConfigError("transformer.precision bf16 needs a GPU with bf16 support")
    return has_bf16


def gradient_checkpointing(tcfg: TransformerConfig, encoder) -> bool:
    """Whether to recompute ``encoder``'s activations in the backward pass
    (``tcfg.gradient_checkpointing``; null: on a CPU, where attention dropout sends SDPA down its
    math path, which keeps every layer's attention matrices for the backward pass: 4.0 GB for
    MiniLM's longest batch of 16 abstracts, 1.9 GB checkpointed, benchmarks/tour.md). An encoder
    that cannot is an error when asked for, skipped under null."""
    on = tcfg.gradient_checkpointing
    able = bool(getattr(encoder, "supports_gradient_checkpointing", False))
    if on and not able:
        raise ConfigError(f"transformer.gradient_checkpointing: {type(encoder).__name__} does not support it")
    return able if on is None and not torch.cuda.is_available() else bool(on)


def training_arguments(tcfg: TransformerConfig, output_dir: Path, seed: int, has_eval: bool = True):
    from transformers import TrainingArguments

    strategy = "steps" if tcfg.eval_steps else "epoch"
    report = ["tensorboard"] if tcfg.tensorboard else "none"
    if tcfg.tensorboard:
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(output_dir.parent / LOGS / "tensorboard"))
    return TrainingArguments(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        learning_rate=tcfg.lr, weight_decay=tcfg.weight_decay, adam_beta1=0.9, adam_beta2=0.98,
        adam_epsilon=1e-6, lr_scheduler_type="linear", warmup_steps=tcfg.warmup_ratio,
        max_grad_norm=tcfg.max_grad_norm, num_train_epochs=tcfg.epochs,
        max_steps=tcfg.max_steps or -1, per_device_train_batch_size=tcfg.batch_size,
        per_device_eval_batch_size=tcfg.eval_batch_size, gradient_accumulation_steps=tcfg.grad_accum,
        bf16=use_bf16(tcfg), use_cpu=not torch.cuda.is_available(),
        train_sampling_strategy="group_by_length" if tcfg.group_by_length else "random",
        length_column_name="length",
        eval_strategy=strategy if has_eval else "no", save_strategy=strategy, eval_steps=tcfg.eval_steps,
        save_steps=tcfg.eval_steps, logging_strategy="steps",
        logging_steps=max(1, min(50, tcfg.eval_steps or 50)),
        load_best_model_at_end=has_eval, metric_for_best_model="f1@1", greater_is_better=True,
        save_total_limit=tcfg.save_total_limit, report_to=report,
        remove_unused_columns=False, label_names=["labels"], dataloader_num_workers=0,
        ddp_find_unused_parameters=False,
        disable_tqdm=os.environ.get("PATENTCPC_PROGRESS", "1") != "1",
    )


# ----------------------------------------------------------------------------- the run


class Trainer:
    """One fine-tuning run of ``cfg.model`` (or a random-init ``cfg.transformer.arch``) on ``data``,
    written to ``output``; :meth:`run` does the steps of the module docstring in order.
    ``config_sections``: the configuration sections saved with the model (its kind's; all if None).
    ``model_factory``: what builds the model, the kind's ``create`` classmethod (a
    :class:`~patentcpc.models.network.PooledHeadModel`): its hooks ``check_attention``,
    ``config_checkpointing`` and ``wise_ft`` say what the loop may do with it. ``views``: the
    ``transformer.views`` it builds (a decoder: ``one`` only)."""

    def __init__(self, cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                 output: str | os.PathLike | None = None, resume: bool = False,
                 callbacks: list | None = None, *, model_factory,
                 config_sections: Sequence[str] | None = None, views: Sequence[str] = ("one", "first_line")):
        self.cfg, self.data, self.eval_data, self.output = cfg, data, eval_data, output
        self.resume = resume
        self.extra_callbacks = list(callbacks or [])
        self.model_factory = model_factory
        self.views = tuple(views)
        self.config_sections = config_sections  # the kind's sections of the config, saved with the model
        self.main = int(os.environ.get("RANK", "0")) == 0  # the process that writes (DDP)
        self.overlap = None
        self.phases = Phases()  # the timed steps around the optimizer steps (the end report lists them)

    @property
    def tcfg(self) -> TransformerConfig:
        return self.cfg.transformer

    def run(self) -> TrainResult:
        """Train, tune, save; returns a :class:`~patentcpc.results.TrainResult`."""
        from transformers import set_seed

        self.check_output()
        try:
            set_seed(self.cfg.seed)
            self.load_data()
            self.build_model()
            self.encode_data()
            with remember_embeddings():  # the head fits embed the same rows with the same encoder
                ckpt = self.prepare_run()
                if self.recipe == "probe":  # no optimizer steps: the head is a probe on the frozen encoder
                    return self.finish(None) if self.main else TrainResult(self.model, {}, None)
                trainer = self.fit(ckpt)
                if not trainer.is_world_process_zero():
                    return TrainResult(self.model, {}, None)
                return self.finish(trainer)
        except BaseException:
            self.discard_run()
            raise

    # ----------------------------------------------------------------- before training
    def check_output(self) -> None:
        """Never into a folder we did not write. The run folder (checkpoints, logs) is the output itself
        for a new run or ``--resume``; a run that replaces a model is built in a staging folder beside
        it, so the old one stays byte-identical until the new one is complete."""
        if self.output is None:
            raise ConfigError("--output is required to train a transformer (checkpoints are written there)")
        from patentcpc.io import check_output_dir

        self.output_dir = check_output_dir(self.output, "model", [self.data, self.eval_data])
        self.staged = checkpoints.needs_staging(self.output_dir, self.resume)
        # a new run into nothing (or an empty folder): what it leaves when it stops early is its own
        self.new_run = not self.staged and not self.resume and not (
            self.output_dir.is_dir() and any(self.output_dir.iterdir()))
        self.output_existed = self.output_dir.exists()
        self.run_dir = checkpoints.staging_dir(self.output_dir, self.main) if self.staged else self.output_dir

    def discard_run(self) -> None:
        """After an error or Ctrl-C: the staging folder goes; a new run's folder goes too unless it
        holds a committed checkpoint to ``--resume`` from. The output is otherwise as it was."""
        import shutil

        if not self.main or not hasattr(self, "run_dir"):
            return
        if self.staged:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        elif self.new_run:
            checkpoints.discard_run(self.run_dir, self.output_existed)

    def load_data(self) -> None:
        """Training and validation data, the recipe for their size, the label vocabulary."""
        cfg, data, eval_data = self.cfg, self.data, self.eval_data
        self.train, self.valid = load_train_eval(cfg, data, eval_data)
        tcfg, self.recipe = resolve_recipe(cfg.transformer, len(self.train))
        self.cfg = dataclasses.replace(cfg, transformer=tcfg)
        log.info("recipe: %s (%d training documents)", self.recipe, len(self.train))
        if eval_data:  # shared documents make the validation scores (and tuned thresholds) optimistic
            from patentcpc.overlap import find_overlap

            self.overlap = find_overlap(self.train, self.valid)
            if self.overlap.any:
                log.warning("%s", self.overlap.message(str(data), str(eval_data)))
        # a validation split is part of the training data: its labels belong to the vocabulary
        labels = self.train.labels + ([] if eval_data else self.valid.labels)
        self.vocab = LabelVocab.from_label_lists(labels, cfg.data.level)
        if len(self.vocab) == 0:
            raise ConfigError(f"{data}: no labels to learn")
        tcfg = self.cfg.transformer  # transformer.label_docs and views resolved (and saved so)
        self.cfg = dataclasses.replace(self.cfg, transformer=dataclasses.replace(
            tcfg, label_docs=resolve_label_docs(tcfg, self.vocab.labels, cfg.data.level),
            views=resolve_views(tcfg, self.recipe, self.views)))

    def train_info(self) -> dict:
        """The manifest's ``training_data``."""
        return {"source": str(self.data), "n_docs": len(self.train), "fingerprint": self.train.fingerprint(),
                "n_skipped": self.train.n_skipped, "eval_source": str(self.eval_data) if self.eval_data else "split",
                "n_eval_docs": len(self.valid)}

    def build_model(self) -> None:
        """The model to fine-tune (pretrained or random-init), its manifest filled in."""
        cfg, tcfg = self.cfg, self.tcfg
        self.model = self.model_factory(
            self.vocab.labels, model=None if tcfg.arch else cfg.model, arch=tcfg.arch, tokenizer=tcfg.tokenizer,
            pooling=tcfg.pooling, max_length=tcfg.max_length, dropout=tcfg.dropout,
            attn_implementation=tcfg.attn_implementation, views=tcfg.views,
            manifest_fields={"label_level": cfg.data.level, "text_view": self.train.text_view,
                             "training_data": self.train_info(),
                             "config": to_dict(cfg, self.config_sections),
                             "extra": {"model_name": cfg.model if not tcfg.arch else tcfg.arch,
                                       "recipe": self.recipe}})
        max_pos = self.model.max_positions()
        if max_pos and tcfg.max_length > max_pos:
            raise ConfigError(f"transformer.max_length {tcfg.max_length} is longer than the model allows ({max_pos})")

    def encode_data(self) -> None:
        """Tokenized training and validation sets, the training label matrix (sparse)."""
        self.train_ds = encode(self.model, self.train, self.vocab)
        self.valid_ds = encode(self.model, self.valid, self.vocab)
        self.y_train = sparse_labels(self.train_ds, len(self.vocab))
        self.label_docs = self.encode_label_docs()
        if self.tcfg.attn_check:  # once: does the attention in use (sdpa/flash, bf16) match fp32 eager?
            self.model.check_attention(self.train_ds[:8]["input_ids"], self.pad_token_id,
                                       bf16=use_bf16(self.tcfg), tol=self.tcfg.attn_check_tol)

    def encode_label_docs(self):
        """``(dataset, labels)`` of the scheme's documents about the training labels for every head
        fit (``transformer.label_docs: seen``), else None."""
        if self.tcfg.label_docs == "none":
            return None
        from types import SimpleNamespace

        from datasets import Dataset

        from patentcpc.errors import PatentCPCError
        from patentcpc.scheme import label_documents

        try:
            texts, labels = label_documents(self.vocab.labels, "seen")
        except PatentCPCError as exc:
            raise ConfigError(f"transformer.label_docs={self.tcfg.label_docs}: {exc}") from None
        if not texts:
            raise ConfigError(f"transformer.label_docs={self.tcfg.label_docs}: the IPC scheme has no text for "
                              "these labels (pip install 'patentcpc[scheme]')")
        ds = encode(self.model, SimpleNamespace(dataset=Dataset.from_dict({"text": texts, "labels": labels})),
                    self.vocab, num_proc=1)
        self.model.manifest.extra["label_docs"] = {"scope": self.tcfg.label_docs, "n_docs": len(texts),
                                                   "weight": self.tcfg.label_docs_weight}
        return ds, sparse_labels(ds, len(self.vocab))

    @property
    def pad_token_id(self) -> int:
        return self.model.tokenizer.pad_token_id or 0

    def prepare_run(self) -> Path | None:
        """Clean (or check, with ``resume``) the run folder; the head start on a fresh run. Returns
        the checkpoint to resume from."""
        run_config = to_dict(self.cfg) | {"data": str(self.data), "eval_data": str(self.eval_data)}
        ckpt = prepare_run_dir(self.run_dir, self.resume, run_config, self.main)
        if ckpt is None and self.recipe != "probe":
            with self.phases(f"head start ({self.tcfg.head_init})"):
                init_head(self.model, self.train_ds, self.y_train, self.tcfg, extra=self.label_docs)
        if self.main:
            write_run_config(self.run_dir, run_config)
        return ckpt

    # ----------------------------------------------------------------- training
    def compute_metrics(self, pred) -> dict:
        """Validation metrics of the Hugging Face Trainer's predictions (rows in validation order)."""
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        scores = sigmoid(np.asarray(logits, dtype=np.float64))
        return evaluate_scores(scores, self.valid.labels[: len(scores)], self.vocab.labels, 0.5)

    def callbacks(self) -> list:
        from transformers import EarlyStoppingCallback

        cbs = checkpoints.callbacks(self.run_dir) + self.extra_callbacks
        if self.tcfg.patience:
            cbs.append(EarlyStoppingCallback(early_stopping_patience=self.tcfg.patience))
        return cbs

    def hf_trainer(self):
        """The Hugging Face Trainer of this run (loss, optimizer groups, arguments, callbacks)."""
        tcfg, vocab = self.tcfg, self.vocab
        loss_fn = build_loss(tcfg.loss, vocab.labels, self.y_train, class_weight=tcfg.class_weight,
                             focal_gamma=tcfg.focal_gamma, focal_alpha=tcfg.focal_alpha,
                             hierarchy_weight=tcfg.hierarchy_weight)
        return _make_trainer_class()(
            model=self.model.network, args=training_arguments(tcfg, self.run_dir / CHECKPOINTS, self.cfg.seed),
            train_dataset=self.train_ds, eval_dataset=self.valid_ds,
            data_collator=MultiLabelCollator(self.pad_token_id, len(vocab)),
            compute_metrics=self.compute_metrics, callbacks=self.callbacks(), loss_fn=loss_fn, head_lr=tcfg.head_lr)

    def fit(self, ckpt: Path | None):
        """Run the optimizer steps (from ``ckpt`` when resuming); returns the Hugging Face Trainer."""
        trainer = self.hf_trainer()
        encoder = self.model.network.encoder
        checkpointed = self.model.config_checkpointing and gradient_checkpointing(self.tcfg, encoder)
        use_cache = checkpointed and getattr(encoder.config, "use_cache", None)
        if checkpointed:  # the same gradients (dropout's RNG state is replayed), one layer's activations
            if hasattr(encoder, "activation_checkpointing_enable"):  # transformers >= 5.x's name
                encoder.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            if use_cache:  # an encoder caches nothing; transformers would warn that it turns the cache off
                encoder.config.use_cache = False
        try:
            trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
        finally:
            if checkpointed:
                getattr(encoder, "activation_checkpointing_disable", encoder.gradient_checkpointing_disable)()
                if use_cache:
                    encoder.config.use_cache = use_cache
        return trainer

    # ----------------------------------------------------------------- after training
    def finish(self, trainer) -> TrainResult:
        """Head re-training, thresholds on the validation data, final metrics, the check before
        saving (:func:`patentcpc.training.guard.check_model`), the model folder; each step timed.
        ``trainer`` None: the ``probe`` recipe, whose head is the re-fit's probe on the frozen
        pretrained encoder (no optimizer steps)."""
        model, tcfg, phases = self.model, self.tcfg, self.phases
        model.for_inference()
        if trainer is None:
            with phases("head fit (probe on the frozen encoder)"):
                fit_head(model, self.train_ds, self.y_train, tcfg, refit=True, extra=self.label_docs)
            self.refit_kept = True
        with phases("validation scores"):
            scores = self.valid_scores()
        if trainer is not None:
            scores = self.adapt_head(scores)
        with phases("calibration and thresholds"):
            scores = self.calibrate(scores)
        if self.cfg.explain.index:
            with phases("explain index"):
                self.build_explain_index()
        metrics = evaluate_scores(scores, self.valid.labels, self.vocab.labels, model.thresholds)
        if tcfg.refit_on == "all" and not self.eval_data and self.refit_kept:  # a re-fit head (or the probe's)
            with phases("head re-fit on all"):
                self.refit_on_all()
            scores = None  # the saved head is not the measured one: the check scores it again
        with phases("check before saving"):
            check_model(model, self.valid.texts, self.valid.labels, self.reported_f1(trainer), self.cfg.guard,
                        what=self.valid_name, scores=scores, reported_as="by the Trainer's evaluation")
        self.record(trainer, metrics)
        with phases("saving"):
            write_model_folder(model, self.run_dir, tcfg.keep_checkpoints, self.output_dir)
        return TrainResult(model, metrics, str(self.output_dir), self.overlap, phases=dict(phases.times),
                           measured_on=self.valid_name + " (the thresholds and calibration were tuned on it: "
                                                         "optimistic)")

    @property
    def valid_name(self) -> str:
        return str(self.eval_data) if self.eval_data else "the validation split"

    @staticmethod
    def reported_f1(trainer) -> float | None:
        """The f1@1 the Trainer's evaluation reported for the model it kept (its best checkpoint)."""
        best = None if trainer is None else trainer.state.best_metric
        return None if best is None or math.isinf(best) else float(best)

    def valid_scores(self) -> np.ndarray:
        """The model's raw scores of the validation documents (progress bar)."""
        return self.model.raw_scores(self.valid.texts, batch_size=self.tcfg.eval_batch_size, progress=_show_phases())

    def valid_f1(self, scores: np.ndarray) -> float:
        return float(evaluate_scores(scores, self.valid.labels, self.vocab.labels, 0.5, ks=(1,))["f1@1"])

    def adapt_head(self, scores: np.ndarray) -> np.ndarray:
        """WiSE-FT with the start (pretrained models, ``wise_alpha`` < 1), then the head re-fit on the
        training part (the validation data stays clean for the thresholds). Each step is kept only
        when the validation f1@1 does not drop by more than one standard error (a step that makes
        the model worse than the Trainer's own is undone, and said). Returns the validation scores
        of the model kept."""
        tcfg, model, phases = self.tcfg, self.model, self.phases
        self.refit_kept = False
        steps = []
        if tcfg.wise_alpha is not None and tcfg.wise_alpha < 1 and not tcfg.arch and model.wise_ft:
            steps.append(("WiSE-FT",
                          lambda: wise_interpolate(model, self.cfg.model, self.train_ds, self.y_train, tcfg,
                                                   self.label_docs)))
        if tcfg.refit_head:
            steps.append(("head re-fit", lambda: fit_head(model, self.train_ds, self.y_train, tcfg, refit=True,
                                                          extra=self.label_docs)))
        if not steps:
            return scores
        f1 = self.valid_f1(scores)
        adapted = model.manifest.extra.setdefault("head_steps", {})
        for name, step in steps:
            with phases(name):
                saved = model.network_state()
                step()
                new_scores = self.valid_scores()
                new_f1 = self.valid_f1(new_scores)
                keep = new_f1 >= f1 - noise(f1, len(self.valid)) / 2
                adapted[name] = {"f1@1_before": f1, "f1@1_after": new_f1, "kept": keep}
                if keep:
                    scores, f1 = new_scores, new_f1
                    self.refit_kept = self.refit_kept or name == "head re-fit"
                else:
                    log.warning("%s undone: validation f1@1 %.4f -> %.4f", name, f1, new_f1)
                    if _show_phases():
                        print(f"{name} undone: it lowered validation f1@1 from {f1:.4f} to {new_f1:.4f}",
                              flush=True)
                    model.load_network_state(saved)
                del saved
        return scores

    def calibrate(self, scores: np.ndarray | None = None) -> np.ndarray:
        """Calibrator (``calibration.method``) and thresholds tuned on the validation data
        (``scores``: the model's raw validation scores, computed if None); returns the validation
        scores on the model's output scale."""
        model, tcfg, gold = self.model, self.tcfg, self.valid.labels
        if scores is None:
            scores = self.valid_scores()
        if self.cfg.calibration.method != "none":  # probabilities, then thresholds on that scale
            from patentcpc.calibration import calibrate_model

            return calibrate_model(model, scores, gold, self.cfg.calibration, "probability",
                                   tcfg.threshold_min_support)
        threshold, _ = tune_global_threshold(scores, gold, self.vocab.labels)
        model.manifest.threshold = threshold
        per_label = tune_label_thresholds(scores, gold, self.vocab.labels, threshold, tcfg.threshold_min_support)
        model.manifest.label_thresholds = per_label.tolist()
        from patentcpc.predictions import set_abstention

        set_abstention(model, scores, gold)
        return scores

    def build_explain_index(self) -> None:
        from patentcpc.data import load_data
        from patentcpc.explain import ExplainIndex

        full = load_data(self.data, **self.cfg.data.load_kwargs()) if not self.eval_data else self.train
        self.model.explain_index = ExplainIndex.build(full, self.cfg.explain.snippet_chars)

    def refit_on_all(self) -> None:
        """The thresholds (and metrics) come from the training-part head; the final head also learns
        from the validation split (a separate --eval-data never joins)."""
        from datasets import concatenate_datasets

        both = concatenate_datasets([self.train_ds, self.valid_ds])
        fit_head(self.model, both, sparse_labels(both, len(self.vocab)), self.tcfg, refit=True, extra=self.label_docs)

    def record(self, trainer, metrics: dict) -> None:
        """Metrics and the training summary into the manifest."""
        from types import SimpleNamespace

        manifest = self.model.manifest
        state = trainer.state if trainer is not None else SimpleNamespace(  # the probe recipe: no steps
            best_metric=None, global_step=0, epoch=0.0, best_model_checkpoint=None)
        best = state.best_metric
        manifest.metrics = {"eval_data": str(self.eval_data) if self.eval_data else "validation split",
                            "thresholds_tuned_on_this_data": True, **metrics}
        manifest.extra["training"] = {
            "global_steps": state.global_step, "epochs": state.epoch,
            "best_checkpoint_f1@1": None if best is None or math.isinf(best) else float(best),
            "best_checkpoint": Path(state.best_model_checkpoint).name if state.best_model_checkpoint else None,
            "phases_s": dict(self.phases.times)}
