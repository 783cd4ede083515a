"""Fine-tuning transformer classifiers with the Hugging Face :class:`~transformers.Trainer`.

:func:`train_transformer` is what ``patentcpc train --model <hub id | folder>`` (or ``--arch``)
runs. What happens, in order:

1. data: the training file, and validation data (``--eval-data``, else a stratified
   ``transformer.valid_fraction`` of the training file); the label vocabulary is the training
   labels;
2. model: :meth:`TransformerCPCModel.create` (pretrained encoder, or a random-init ``arch``
   preset), then the head is initialized (``head_init``): ``probe`` fits it as a one-vs-rest
   logistic regression on the frozen pooled embeddings before fine-tuning ("LP-FT", Kumar et al.,
   ICLR 2022), which works much better than a random head on a few hundred documents;
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

Checkpoints live in ``<output>/checkpoints/checkpoint-<step>``; a checkpoint counts only once its
``COMMITTED`` marker is written (after everything else), so a run killed while saving resumes from
the previous one. ``--resume`` restores weights, optimizer, scheduler, RNG states and the position
in the data, so it ends where an uninterrupted run would. Under ``accelerate launch`` (DDP) the
same code runs in every process and only the main process writes the model folder.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from patentcpc.config import TrainConfig, TransformerConfig, to_dict
from patentcpc.cpc import LabelVocab
from patentcpc.data import PatentData, load_data, split_data
from patentcpc.errors import ConfigError
from patentcpc.losses import build_loss
from patentcpc.metrics import evaluate_scores, tune_global_threshold, tune_label_thresholds
from patentcpc.models.transformer import TransformerCPCModel
from patentcpc.numeric import sigmoid
from patentcpc.results import TrainResult

log = logging.getLogger(__name__)

CHECKPOINTS = "checkpoints"
LOGS = "logs"
METRICS_LOG = "metrics.jsonl"
COMMITTED = "COMMITTED"
RUN_CONFIG = "run_config.json"


# ----------------------------------------------------------------------------- data


def load_train_eval(cfg: TrainConfig, data: str | None, eval_data: str | None) -> tuple[PatentData, PatentData]:
    """Training data and validation data (``eval_data`` or a stratified split of ``data``)."""
    if not data:
        raise ConfigError("--data is required to train a transformer")
    train = load_data(data, **cfg.data.load_kwargs())
    if len(train) < 2:
        raise ConfigError(f"{data}: need at least 2 labelled documents to train")
    if eval_data:  # the training text view, where the eval data has those fields
        return train, load_data(eval_data, **cfg.data.load_kwargs(), preferred_text_fields=train.text_fields)
    frac = cfg.transformer.valid_fraction
    train_part, valid = split_data(train, (1 - frac, frac), cfg.seed)
    train_part.n_skipped = train.n_skipped
    return train_part, valid


TOKENIZE_PROCS_MIN_ROWS = 200_000  # tokenize in several processes from this many documents


def encode(model: TransformerCPCModel, data: PatentData, vocab: LabelVocab, num_proc: int | None = None):
    """A ``datasets.Dataset`` with input_ids, attention_mask, length and label_ids: tokenized in
    batches of 1,000 (the fast tokenizer's own threads), in up to ``num_proc`` processes (default:
    the cores, from :data:`TOKENIZE_PROCS_MIN_ROWS` documents); a memory-mapped source caches the
    result beside its Arrow files."""
    index = vocab.index

    def fn(batch: dict) -> dict:
        enc = model.tokenize(batch["text"])
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "length": [len(x) for x in enc["input_ids"]],
                "label_ids": [[index[c] for c in labels if c in index] for labels in batch["labels"]]}

    kwargs = {}
    if not data.dataset.cache_files:  # in memory, nothing to cache: skip hashing fn (dill-pickles the tokenizer,
        import uuid  # noqa: PLC0415  # seconds per call)

        kwargs["new_fingerprint"] = uuid.uuid4().hex
    if num_proc is None and len(data) >= TOKENIZE_PROCS_MIN_ROWS:
        num_proc = min(os.cpu_count() or 1, 8)
    ds = data.dataset.map(fn, batched=True, batch_size=1000, remove_columns=data.dataset.column_names,
                          num_proc=num_proc if num_proc and num_proc > 1 else None, desc="tokenizing", **kwargs)
    return ds


class MultiLabelCollator:
    """Pads a batch and turns label index lists into a float multi-hot ``labels`` tensor."""

    def __init__(self, pad_token_id: int, n_labels: int):
        self.pad, self.n_labels = pad_token_id, n_labels

    def __call__(self, features: list[dict]) -> dict:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        labels = torch.zeros((len(features), self.n_labels), dtype=torch.float32)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            ids[r, :n] = torch.as_tensor(f["input_ids"])
            mask[r, :n] = 1
            labels[r, list(f["label_ids"])] = 1.0
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def multi_hot(label_ids: list[list[int]], n_labels: int) -> np.ndarray:
    y = np.zeros((len(label_ids), n_labels), dtype=np.float32)
    for i, cols in enumerate(label_ids):
        y[i, cols] = 1.0
    return y


def sparse_labels(ds, n_labels: int, batch_size: int = 100_000):
    """The ``label_ids`` column of an encoded dataset as a CSR float32 matrix (read in batches;
    never a dense documents x labels matrix)."""
    from scipy import sparse  # noqa: PLC0415

    indptr, indices = [np.zeros(1, dtype=np.int64)], []
    offset = 0
    for batch in ds.select_columns(["label_ids"]).iter(batch_size=batch_size):
        rows = batch["label_ids"]
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr.append(offset + np.cumsum(lengths))
        offset += int(lengths.sum())
        indices.append(np.fromiter((c for r in rows for c in r), dtype=np.int64, count=int(lengths.sum())))
    idx = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    y = sparse.csr_matrix((np.ones(len(idx), dtype=np.float32), idx, np.concatenate(indptr)),
                          shape=(len(ds), n_labels))
    y.sum_duplicates()
    y.data[:] = 1.0
    return y


def _dense_rows(y, rows: np.ndarray | None = None) -> np.ndarray:
    """Rows of a dense or sparse label matrix, dense float32."""
    if rows is not None:
        y = y[rows]
    return y.toarray().astype(np.float32) if hasattr(y, "toarray") else np.asarray(y, dtype=np.float32)


# ----------------------------------------------------------------------------- head initialization


@torch.no_grad()
def pooled_embeddings(model: TransformerCPCModel, ds, batch_size: int = 64) -> torch.Tensor:
    """Frozen pooled encoder output of every row of an encoded dataset (in order)."""
    net = model.network
    was_training = net.training
    net.eval()
    collate = MultiLabelCollator(model.tokenizer.pad_token_id or 0, len(model.labels))
    order = np.argsort(np.asarray(ds["length"][:]), kind="stable")
    out = torch.zeros(len(ds), net.head.in_features)
    device = next(net.parameters()).device
    cols = ds.select_columns(["input_ids", "label_ids"])
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = cols[idx.tolist()]  # one batched read, not row by row
        batch = collate([{"input_ids": a, "label_ids": b} for a, b in zip(rows["input_ids"], rows["label_ids"],
                                                                           strict=True)])
        emb = net.embed(batch["input_ids"].to(device), batch["attention_mask"].to(device))
        out[torch.as_tensor(idx)] = emb.float().cpu()
    net.train(was_training)
    return out


def fit_probe(x: torch.Tensor, y: torch.Tensor, C: float = 10.0, max_iter: int = 200,
              balanced: bool = False, dtype: torch.dtype = torch.float32,
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-vs-rest L2 logistic regression ``sum(weight * logloss) + ||W||^2 / (2C)`` fitted with
    L-BFGS (deterministic); weight 1, or with ``balanced`` ``n / (2 n_pos)`` on a label's positives
    and ``n / (2 n_neg)`` on its negatives (scikit-learn's ``class_weight="balanced"``). In
    ``dtype`` (float32: half the memory and time of float64) on ``device`` (default: x's).
    Returns (weight (L, H), bias (L,)) float32 on the CPU."""
    n, h = x.shape
    device = torch.device(device) if device is not None else x.device
    xd, yd = x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)
    w = torch.zeros(y.shape[1], h, dtype=dtype, device=device, requires_grad=True)
    prior = yd.mean(0).clamp(1e-4, 1 - 1e-4)
    b = torch.log(prior / (1 - prior)).clone().requires_grad_(True)
    sample_w = None
    if balanced:
        n_pos = yd.sum(0).clamp(min=1)
        sample_w = torch.where(yd > 0, n / (2 * n_pos), n / (2 * (n - n_pos).clamp(min=1)))
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        logits = xd @ w.T + b
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, yd, weight=sample_w, reduction="sum")
                + (w * w).sum() / (2 * C)) / n
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().float().cpu(), b.detach().float().cpu()


def fit_head(model: TransformerCPCModel, ds, y, tcfg: TransformerConfig, refit: bool = False) -> None:
    """Fit the head as a logistic-regression probe on the (frozen) pooled embeddings of ``ds``: with
    ``probe_C`` / ``probe_class_weight``, or for the re-fit after fine-tuning (``refit``) with
    ``refit_C`` / ``refit_class_weight``; on at most ``probe_max_docs`` documents, float32, on the
    model's device. ``y``: the labels of ``ds``, dense or SciPy sparse (made dense for the sample)."""
    head = model.network.head
    rows = None
    if tcfg.probe_max_docs and len(ds) > tcfg.probe_max_docs:  # bounded memory on large corpora
        rows = np.sort(np.random.default_rng(0).choice(len(ds), tcfg.probe_max_docs, replace=False))
        ds = ds.select(rows)
    y = _dense_rows(y, rows)
    x = pooled_embeddings(model, ds, tcfg.eval_batch_size)
    C, weight = (tcfg.refit_C, tcfg.refit_class_weight) if refit else (tcfg.probe_C, tcfg.probe_class_weight)
    w, b = fit_probe(x, torch.as_tensor(y), C, balanced=weight == "balanced", device=head.weight.device)
    with torch.no_grad():
        head.weight.copy_(w.to(head.weight.device))
        head.bias.copy_(b.to(head.bias.device))


def wise_start(model: TransformerCPCModel, base_model: str, ds, y: np.ndarray,
               tcfg: TransformerConfig) -> dict[str, torch.Tensor]:
    """Load WiSE-FT's starting point into ``model`` and return a copy of its weights: the pretrained
    encoder ``base_model`` with a probe head fitted on its frozen embeddings of ``ds`` (the LP-FT start)."""
    from patentcpc.models.transformer import load_encoder  # noqa: PLC0415

    model.network.encoder.load_state_dict(load_encoder(base_model).state_dict())
    fit_head(model, ds, y, tcfg)
    return {k: v.detach().clone() for k, v in model.network.state_dict().items()}


def interpolate_weights(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor],
                        alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * start + alpha * tuned`` for every floating-point tensor (others from ``tuned``)."""
    return {k: ((1 - alpha) * start[k] + alpha * v) if v.is_floating_point() else v for k, v in tuned.items()}


def wise_interpolate(model: TransformerCPCModel, base_model: str, ds, y: np.ndarray, tcfg: TransformerConfig) -> None:
    """WiSE-FT (Wortsman et al., CVPR 2022): replace the fine-tuned weights by
    ``(1 - a) * start + a * fine-tuned`` (:func:`wise_start`), ``a = tcfg.wise_alpha``."""
    tuned = {k: v.detach().clone() for k, v in model.network.state_dict().items()}
    start = wise_start(model, base_model, ds, y, tcfg)
    model.network.load_state_dict(interpolate_weights(start, tuned, tcfg.wise_alpha))


def init_head(model: TransformerCPCModel, ds, y: np.ndarray, tcfg: TransformerConfig) -> None:
    """Initialize the classification head as ``tcfg.head_init`` says."""
    head = model.network.head
    if tcfg.head_init == "random":
        return
    if tcfg.head_init == "prior":
        prior = torch.as_tensor(np.asarray(y.mean(0), dtype=np.float32).ravel()).clamp(1e-4, 1 - 1e-4)
        with torch.no_grad():
            head.bias.copy_(torch.log(prior / (1 - prior)))
        return
    fit_head(model, ds, y, tcfg)


# ----------------------------------------------------------------------------- recipe

# USPTO-3M's reference fine-tuning run (BCE, lr 8e-5, batch 32, 2 epochs, bf16 on a GPU: the
# ``precision: auto`` default); no few-shot machinery: no probe fit, no WiSE-FT, no re-fit.
REFERENCE_RECIPE: dict[str, object] = {
    "loss": "bce", "lr": 8e-5, "head_lr": None, "batch_size": 32, "epochs": 2.0,
    "head_init": "prior", "wise_alpha": None, "refit_head": False,
}


def resolve_recipe(tcfg: TransformerConfig, n_train: int) -> tuple[TransformerConfig, str]:
    """The settings to train with and the recipe's name (``few-shot`` or ``reference``).

    ``auto`` is ``few-shot`` up to ``few_shot_max_docs`` training documents (where
    benchmarks/training.md measured the probe start, WiSE-FT and the re-fit to help, on a few
    hundred documents) and ``reference`` above (where those fits cost more than the optimizer steps,
    benchmarks/scale.md). The reference recipe replaces only fields left at their defaults."""

    name = tcfg.recipe
    if name == "auto":
        name = "few-shot" if n_train <= tcfg.few_shot_max_docs else "reference"
    if name == "few-shot":
        return tcfg, name
    defaults = TransformerConfig()
    changes = {k: v for k, v in REFERENCE_RECIPE.items() if getattr(tcfg, k) == getattr(defaults, k)}
    return dataclasses.replace(tcfg, **changes), name


# ----------------------------------------------------------------------------- trainer pieces


def _make_trainer_class():
    from transformers import Trainer  # noqa: PLC0415

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


def _callbacks(run_dir: Path):
    from transformers import TrainerCallback  # noqa: PLC0415

    class JsonlLogger(TrainerCallback):
        """Every log record (training loss, evaluation metrics) as one JSON line."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            path = run_dir / LOGS / METRICS_LOG
            path.parent.mkdir(parents=True, exist_ok=True)
            rec = {"step": state.global_step, "epoch": state.epoch, **logs}
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, default=float) + "\n")

    class CommitCheckpoint(TrainerCallback):
        """Mark a checkpoint complete once the Trainer has written all of it."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                from patentcpc.models.artifact import atomic_write_text  # noqa: PLC0415

                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.is_dir():
                    atomic_write_text(ckpt / COMMITTED, f"{state.global_step}\n")

    return [JsonlLogger(), CommitCheckpoint()]


def last_checkpoint(folder: Path) -> Path | None:
    """The committed checkpoint with the highest step in ``folder`` (None if there is none)."""
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if (p / COMMITTED).exists() and p.name[11:].isdigit()]
    return max(done, key=lambda p: int(p.name[11:]), default=None)


def _prepare_run_dir(run_dir: Path, resume: bool, run_config: dict, main: bool) -> Path | None:
    """Clean or check ``run_dir`` (checkpoints + logs); returns the checkpoint to resume from."""
    ckpt_dir = run_dir / CHECKPOINTS
    if not resume:
        if main:
            shutil.rmtree(ckpt_dir, ignore_errors=True)
            shutil.rmtree(run_dir / LOGS, ignore_errors=True)
        return None
    ckpt = last_checkpoint(ckpt_dir)
    if ckpt is None:
        log.warning("--resume: no committed checkpoint in %s, starting from scratch", ckpt_dir)
        return None
    saved = ckpt_dir / RUN_CONFIG
    if saved.exists() and json.loads(saved.read_text()) != run_config:
        raise ConfigError(f"--resume: the configuration differs from the one {ckpt_dir} was trained with")
    if main:
        step = int(ckpt.name[11:])
        for p in ckpt_dir.glob("checkpoint-*"):  # partial checkpoints written after the last commit
            if p.name[11:].isdigit() and int(p.name[11:]) > step:
                shutil.rmtree(p, ignore_errors=True)
        _truncate_log(run_dir / LOGS / METRICS_LOG, step)
    return ckpt


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines written after ``step`` by a run that was killed."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    from patentcpc.models.artifact import atomic_write_text  # noqa: PLC0415

    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _precision(tcfg: TransformerConfig) -> bool:
    """Whether to train in bf16."""
    if tcfg.precision == "fp32":
        return False
    has_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if tcfg.precision == "bf16" and not has_bf16:
        raise ConfigError("transformer.precision bf16 needs a GPU with bf16 support")
    return has_bf16


def training_arguments(tcfg: TransformerConfig, output_dir: Path, seed: int, has_eval: bool = True):
    from transformers import TrainingArguments  # noqa: PLC0415

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
        bf16=_precision(tcfg), use_cpu=not torch.cuda.is_available(),
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


# ----------------------------------------------------------------------------- entry point


def train_transformer(cfg: TrainConfig, data: str | None, eval_data: str | None = None,
                      output: str | os.PathLike | None = None, resume: bool = False,
                      callbacks: list | None = None, model_factory=None):
    """Fine-tune ``cfg.model`` (or a random-init ``cfg.transformer.arch``) on ``data``; see the
    module docstring. Returns a :class:`~patentcpc.results.TrainResult`."""
    from datasets import concatenate_datasets  # noqa: PLC0415
    from transformers import EarlyStoppingCallback, set_seed  # noqa: PLC0415

    if output is None:
        raise ConfigError("--output is required to train a transformer (checkpoints are written there)")
    from patentcpc.io import check_output_dir  # noqa: PLC0415

    # checkpoints go into the model folder itself (for --resume): never into a folder we did not write
    run_dir = check_output_dir(output, "model", [data, eval_data])
    set_seed(cfg.seed)
    train, valid = load_train_eval(cfg, data, eval_data)
    tcfg, recipe = resolve_recipe(cfg.transformer, len(train))
    cfg = dataclasses.replace(cfg, transformer=tcfg)
    log.info("recipe: %s (%d training documents)", recipe, len(train))
    overlap = None
    if eval_data:  # shared documents make the validation scores (and tuned thresholds) optimistic
        from patentcpc.overlap import find_overlap  # noqa: PLC0415

        overlap = find_overlap(train, valid)
        if overlap.any:
            log.warning("%s", overlap.message(str(data), str(eval_data)))
    # a validation split is part of the training data: its labels belong to the vocabulary
    vocab = LabelVocab.from_label_lists(train.labels + ([] if eval_data else valid.labels), cfg.data.level)
    if len(vocab) == 0:
        raise ConfigError(f"{data}: no labels to learn")
    train_info = {"source": str(data), "n_docs": len(train), "fingerprint": train.fingerprint(),
                  "n_skipped": train.n_skipped, "eval_source": str(eval_data) if eval_data else "split",
                  "n_eval_docs": len(valid)}
    create = model_factory or TransformerCPCModel.create  # model_factory: e.g. the causal_lm kind's
    model = create(
        vocab.labels, model=None if tcfg.arch else cfg.model, arch=tcfg.arch, tokenizer=tcfg.tokenizer,
        pooling=tcfg.pooling, max_length=tcfg.max_length, dropout=tcfg.dropout,
        attn_implementation=tcfg.attn_implementation,
        manifest_fields={"label_level": cfg.data.level, "text_view": train.text_view,
                         "training_data": train_info, "config": to_dict(cfg),
                         "extra": {"model_name": cfg.model if not tcfg.arch else tcfg.arch, "recipe": recipe}})
    max_pos = getattr(model.network.encoder.config, "max_position_embeddings", None)
    if max_pos and tcfg.max_length > max_pos:
        raise ConfigError(f"transformer.max_length {tcfg.max_length} is longer than the model allows ({max_pos})")
    train_ds, valid_ds = encode(model, train, vocab), encode(model, valid, vocab)
    y_train = sparse_labels(train_ds, len(vocab))
    if tcfg.attn_check:  # once: does the attention in use (sdpa/flash, bf16) match fp32 eager?
        from patentcpc.models.transformer import check_attention  # noqa: PLC0415

        check_attention(model.network.encoder, train_ds[:8]["input_ids"], model.tokenizer.pad_token_id or 0,
                        bf16=_precision(tcfg), tol=tcfg.attn_check_tol)

    run_config = to_dict(cfg) | {"data": str(data), "eval_data": str(eval_data)}
    main = int(os.environ.get("RANK", "0")) == 0
    ckpt = _prepare_run_dir(run_dir, resume, run_config, main)
    if ckpt is None:
        init_head(model, train_ds, y_train, tcfg)
    if main:
        from patentcpc.io import MARKER, atomic_write_text, write_marker  # noqa: PLC0415

        if not (run_dir / MARKER).exists():  # an unfinished run is a model folder too (--resume)
            write_marker(run_dir, "model")
        atomic_write_text(run_dir / CHECKPOINTS / RUN_CONFIG, json.dumps(run_config, default=str))

    gold = valid.labels

    def compute_metrics(pred) -> dict:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        scores = sigmoid(np.asarray(logits, dtype=np.float64))
        return evaluate_scores(scores, gold[: len(scores)], vocab.labels, 0.5)

    loss_fn = build_loss(tcfg.loss, vocab.labels, y_train, class_weight=tcfg.class_weight,
                         focal_gamma=tcfg.focal_gamma, focal_alpha=tcfg.focal_alpha,
                         hierarchy_weight=tcfg.hierarchy_weight)
    cbs = _callbacks(run_dir) + list(callbacks or [])
    if tcfg.patience:
        cbs.append(EarlyStoppingCallback(early_stopping_patience=tcfg.patience))
    trainer = _make_trainer_class()(
        model=model.network, args=training_arguments(tcfg, run_dir / CHECKPOINTS, cfg.seed),
        train_dataset=train_ds, eval_dataset=valid_ds,
        data_collator=MultiLabelCollator(model.tokenizer.pad_token_id or 0, len(vocab)),
        compute_metrics=compute_metrics, callbacks=cbs, loss_fn=loss_fn, head_lr=tcfg.head_lr)
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
    if not trainer.is_world_process_zero():
        return TrainResult(model, {}, None)

    # head re-training, thresholds on the validation data, final metrics, the model folder
    model.network.eval()
    model.device = next(model.network.parameters()).device
    if tcfg.wise_alpha is not None and tcfg.wise_alpha < 1 and not tcfg.arch and model.kind == "transformer":
        wise_interpolate(model, cfg.model, train_ds, y_train, tcfg)
    if tcfg.refit_head:  # on the training part first: the validation data stays clean for the thresholds
        fit_head(model, train_ds, y_train, tcfg, refit=True)
    scores = model.raw_scores(valid.texts, batch_size=tcfg.eval_batch_size)
    if cfg.calibration.method != "none":  # probabilities, then thresholds on that scale
        from patentcpc.calibration import calibrate_model  # noqa: PLC0415

        scores = calibrate_model(model, scores, gold, cfg.calibration, "probability", tcfg.threshold_min_support)
    else:
        threshold, _ = tune_global_threshold(scores, gold, vocab.labels)
        model.manifest.threshold = threshold
        per_label = tune_label_thresholds(scores, gold, vocab.labels, threshold, tcfg.threshold_min_support)
        model.manifest.label_thresholds = per_label.tolist()
    if cfg.explain.index:
        from patentcpc.explain import ExplainIndex  # noqa: PLC0415

        full = load_data(data, **cfg.data.load_kwargs()) if not eval_data else train
        model.explain_index = ExplainIndex.build(full, cfg.explain.snippet_chars)
    metrics = evaluate_scores(scores, gold, vocab.labels, model.thresholds)
    if tcfg.refit_head and tcfg.refit_on == "all" and not eval_data:
        # the thresholds (and metrics) above come from the training-part head; the final head also
        # learns from the validation split (a separate --eval-data never joins)
        both = concatenate_datasets([train_ds, valid_ds])
        fit_head(model, both, sparse_labels(both, len(vocab)), tcfg, refit=True)
    best = trainer.state.best_metric
    model.manifest.metrics = {"eval_data": str(eval_data) if eval_data else "validation split",
                              "thresholds_tuned_on_this_data": True, **metrics}
    model.manifest.extra["training"] = {
        "global_steps": trainer.state.global_step, "epochs": trainer.state.epoch,
        "best_checkpoint_f1@1": None if best is None or math.isinf(best) else float(best),
        "best_checkpoint": Path(trainer.state.best_model_checkpoint).name
        if trainer.state.best_model_checkpoint else None}
    _write_model_folder(model, run_dir, tcfg.keep_checkpoints)
    return TrainResult(model, metrics, str(run_dir), overlap)


def _write_model_folder(model: TransformerCPCModel, run_dir: Path, keep_checkpoints: bool) -> None:
    """Save atomically: weights + manifest + logs (+ curves PNG), checkpoints only if asked."""
    from patentcpc.explain import save_index  # noqa: PLC0415
    from patentcpc.models.artifact import atomic_dir, write_manifest  # noqa: PLC0415

    logs = run_dir / LOGS
    with atomic_dir(run_dir, kind="model") as tmp:
        model._save_weights(tmp)
        save_index(model, tmp)
        write_manifest(tmp, model.manifest)
        if logs.is_dir():
            shutil.copytree(logs, tmp / LOGS)
            try:
                from patentcpc.plots import plot_training_curves  # noqa: PLC0415

                plot_training_curves(tmp / LOGS / METRICS_LOG, tmp / LOGS / "curves.png")
            except (ImportError, ValueError) as exc:  # plotting is optional
                log.warning("no training curves: %s", exc)
        if keep_checkpoints and (run_dir / CHECKPOINTS).is_dir():
            shutil.copytree(run_dir / CHECKPOINTS, tmp / CHECKPOINTS)
