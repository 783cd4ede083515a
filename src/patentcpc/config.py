"""Typed configuration: dataclasses validated in ``__post_init__``, loadable from YAML and
overridable from the command line (``--set linear.C=0.5``). The resolved configuration is saved
with every model (``config.yaml`` and the manifest)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import re
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from patentcpc.cpc import LEVELS
from patentcpc.errors import ConfigError

T = TypeVar("T")

CALIBRATION_METHODS = ("platt", "platt-gap", "temperature", "isotonic", "none")
CALIBRATION_SCOPES = ("shared", "per_label")
SEED_MAX = 2**32 - 1  # NumPy's and scikit-learn's random_state range


def check_seed(seed: object, where: str = "seed") -> int:
    """``seed`` if it is an integer in 0..2**32-1 (what NumPy and scikit-learn accept), else a
    :class:`ConfigError` (before any work, not a library's parameter error half-way through)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ConfigError(f"{where} must be an integer in 0..{SEED_MAX}, not {seed!r}")
    return seed


@dataclass
class DataConfig:
    """How records are read.

    Args:
        text_fields: fields joined into the text view, in order (default: ``text``, else
            ``title,abstract``, whatever exists).
        label_field: the label column (default: auto-detected: cpc_ids, labels, cpc, ...).
        id_field: the id column (default: auto-detected, else the row number).
        level: CPC level of the labels: section, class, subclass or group.
        on_bad_row: ``error`` stops at the first bad row, ``skip`` drops and counts bad rows.
        hf_split: the split to read from a Hugging Face dataset.
    """

    text_fields: list[str] | None = None
    label_field: str | None = None
    id_field: str | None = None
    level: str = "subclass"
    on_bad_row: str = "error"
    hf_split: str = "train"

    def __post_init__(self) -> None:
        if isinstance(self.text_fields, str):
            self.text_fields = [f.strip() for f in self.text_fields.split(",") if f.strip()]
        if self.level not in LEVELS:
            raise ConfigError(f"data.level must be one of {', '.join(LEVELS)}, not '{self.level}'")
        if self.on_bad_row not in ("error", "skip"):
            raise ConfigError(f"data.on_bad_row must be 'error' or 'skip', not '{self.on_bad_row}'")

    def load_kwargs(self) -> dict:
        return {"text_fields": self.text_fields, "label_field": self.label_field, "id_field": self.id_field,
                "level": self.level, "on_bad_row": self.on_bad_row, "split": self.hf_split}


@dataclass
class LinearConfig:
    """TF-IDF + one-vs-rest linear classifier.

    Args:
        classifier: ``svc`` (LinearSVC, margins) or ``logreg`` (logistic regression, probabilities).
        C: inverse regularization strength (null: chosen for the model kind, 1 for ``tfidf`` and
            0.02 for ``scheme``, see benchmarks/accuracy.md and benchmarks/cold_start.md).
        ngram_max: word n-grams from 1 to this.
        stemmer: the Snowball stemmer the words go through before counting (PyStemmer's algorithm
            names: ``english``, ``german``, ``french``, ...), or null (``none``): words as written.
            Default ``english`` (benchmarks/accuracy.md: +0.015 to +0.04 F1@1 on the shared
            abstracts); the model folder records it and prediction stems the same way.
        title_weight: how many times the terms of a text's first line (the title of a
            ``title\\nabstract`` text) are counted; 1: like every other line. A text of one line has
            no title to weight, nor has one whose first line is longer than a title can be (500
            characters, the US limit). Null: chosen for the model kind when the training texts start with
            a title (their first field is a title or a whole ``text`` column: the default view),
            10 for ``tfidf`` (and its label trees) and 1 for ``scheme``, whose training documents
            have no titles; 1 for texts that start with another field, e.g. ``--text-fields
            abstract,claims`` (benchmarks/accuracy.md, benchmarks/cold_start.md, session 32). The
            model folder records it and prediction weights the first line of a text the same way
            (a row whose title is empty starts with its next field: that field's first line is
            then weighted, in training as in prediction).
        min_df: minimum document frequency of a term.
        max_features: vocabulary cap (None: no cap).
        sublinear_tf: use 1 + log(tf).
        class_weight: None or ``balanced``.
        learner: ``ovr`` (one-vs-rest ``classifier``, one binary problem a label), ``omikuji``
            (Omikuji's partitioned label trees, Parabel-style) or ``auto`` (default: ``ovr`` below
            ``tree_min_docs`` training documents, where it is the more accurate, ``omikuji`` from
            there, where one-vs-rest is too slow); benchmarks/scale.md compares them.
        tree_min_docs: the size from which ``learner: auto`` trains label trees.
        n_jobs: threads for the one-vs-rest fits and Omikuji (-1: every core); the one-vs-rest
            fits use threads only from ``parallel_min_docs`` training documents.
        label_docs: the IPC scheme's text about each label as extra training documents (one per
            subclass title and one per main group with its subgroup titles, the cold-start
            model's documents), each weighted ``label_docs_weight``: ``seen`` (the labels of the
            training patents), ``all`` (every subclass of the scheme: labels never seen in training
            can be predicted), ``none``, or ``auto`` (default: ``seen`` for a one-vs-rest TF-IDF
            model at section/class/subclass level when the IPC scheme is installed, else ``none``;
            benchmarks/accuracy.md).
        label_docs_weight: the sample weight of each label document (a patent weighs 1).
    """

    classifier: str = "svc"
    C: float | None = None
    ngram_max: int = 1
    stemmer: str | None = "english"
    title_weight: int | None = None
    min_df: int = 1
    max_features: int | None = 500_000
    sublinear_tf: bool = True
    class_weight: str | None = "balanced"
    learner: str = "auto"
    n_jobs: int = -1
    parallel_min_docs: int = 5_000
    tree_min_docs: int = 10_000
    label_docs: str = "auto"
    label_docs_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.label_docs not in ("auto", "none", "seen", "all"):
            raise ConfigError(f"linear.label_docs must be 'auto', 'none', 'seen' or 'all', not '{self.label_docs}'")
        if isinstance(self.label_docs_weight, bool) or not 0 < self.label_docs_weight <= 100:
            raise ConfigError(f"linear.label_docs_weight must be > 0 (and <= 100), not {self.label_docs_weight}")
        if self.tree_min_docs < 0:
            raise ConfigError(f"linear.tree_min_docs must be >= 0, not {self.tree_min_docs}")
        if self.learner not in ("auto", "ovr", "omikuji"):
            raise ConfigError(f"linear.learner must be 'auto', 'ovr' or 'omikuji', not '{self.learner}'")
        if self.classifier not in ("svc", "logreg"):
            raise ConfigError(f"linear.classifier must be 'svc' or 'logreg', not '{self.classifier}'")
        if self.C is not None and self.C <= 0:
            raise ConfigError(f"linear.C must be > 0, not {self.C}")
        if self.ngram_max < 1 or self.min_df < 1:
            raise ConfigError("linear.ngram_max and linear.min_df must be >= 1")
        if isinstance(self.stemmer, str):
            self.stemmer = self.stemmer.strip().lower()
            if self.stemmer in ("", "none", "null"):
                self.stemmer = None
        from patentcpc.words import MAX_TITLE_WEIGHT, known_stemmer, stemmer_names

        if not known_stemmer(self.stemmer):
            raise ConfigError(f"linear.stemmer must be none or one of {', '.join(stemmer_names())}, "
                              f"not '{self.stemmer}'")
        if self.title_weight is not None and (isinstance(self.title_weight, bool) or not isinstance(
                self.title_weight, int) or not 1 <= self.title_weight <= MAX_TITLE_WEIGHT):
            raise ConfigError(f"linear.title_weight must be a whole number from 1 to {MAX_TITLE_WEIGHT}, "
                              f"not {self.title_weight!r}")
        if self.max_features is not None and self.max_features < 1:
            raise ConfigError(f"linear.max_features must be >= 1 or null, not {self.max_features}")
        if self.n_jobs == 0 or not -1024 <= self.n_jobs <= 1024:
            raise ConfigError(f"linear.n_jobs must be -1 (every core) or 1..1024, not {self.n_jobs}")
        if self.parallel_min_docs < 0:
            raise ConfigError(f"linear.parallel_min_docs must be >= 0, not {self.parallel_min_docs}")
        if self.class_weight not in (None, "balanced"):
            raise ConfigError(f"linear.class_weight must be null or 'balanced', not '{self.class_weight}'")


@dataclass
class TransformerConfig:
    """Transformer classifier training (``patentcpc train --model <hub id | folder>`` or ``--arch``).

    Args:
        arch: random-init preset (modernbert-tiny|small|base, bert-tiny|base); wins over ``model``.
        tokenizer: tokenizer folder or id for ``arch`` models (default: the model's own / MiniLM's).
        pooling: ``mean`` (default) or ``cls``.
        views: what the head reads. ``one``: the text's pooled vector. ``first_line``: the text's
            first line (the title, in the ``title\nabstract`` view) and its rest are embedded
            apart, and the head reads both pooled vectors, each L2-normalised, side by side (a
            text of one line: its vector twice); no ONNX export or padding-free inference.
            ``auto`` (default): ``first_line`` for the ``probe`` recipe (where it was measured:
            F1@1 +0.022 / +0.013 for the frozen-MiniLM probe on 5 random / 5 stratified splits,
            benchmarks/accuracy.md), else ``one``.
        max_length: tokens per document (128-8192 for ModernBERT; at least 8).
        loss: ``bce``, ``weighted`` (class-weighted BCE), ``focal`` or ``hierarchical``.
        class_weight: for ``weighted``: ``balanced`` (sklearn compute_class_weight) or ``inv_sqrt``.
        focal_gamma, focal_alpha: focal loss parameters (alpha null: no alpha weighting).
        hierarchy_weight: weight of the tree-distance penalty of the ``hierarchical`` loss.
        head_init: ``probe`` (fit the head on frozen embeddings first: LP-FT), ``prior`` (zero
            weights, bias = log label prior) or ``random``.
        probe_C: inverse L2 strength of that probe (and of WiSE-FT's start); probe_class_weight:
            null or ``balanced`` (per label, positives and negatives weigh the same in total, as
            scikit-learn's ``class_weight="balanced"`` for each one-vs-rest problem).
        refit_head: after fine-tuning (and WiSE-FT), re-fit the head as a probe on the final
            embeddings of the training part (not the validation data, which tunes the
            thresholds): decoupled classifier re-training (Kang et al., ICLR 2020). Default on;
            refit_C, refit_class_weight: that probe's inverse L2 strength and class weighting
            (null or ``balanced``), default 1 and balanced (benchmarks/training.md); refit_on:
            ``train`` (the training part only) or ``all`` (default): once the thresholds are tuned
            with the training-part head, re-fit it again on the training and validation parts (a
            validation split of the training file only, never ``--eval-data``), keeping them.
        probe_max_docs: every probe (start, WiSE-FT start, re-fit) is fitted on at most this many
            training documents (a seeded random subset; null: all), which bounds its memory.
        label_docs: ``seen``: every probe (start, WiSE-FT start, re-fit) also learns from the IPC
            scheme's text about each training label (the cold-start model's documents, ~12 a
            subclass: :func:`patentcpc.scheme.label_documents`), embedded by the encoder being
            trained, each row weighing ``label_docs_weight`` (default 0.1) against a patent's 1;
            ``none``: patents only; ``auto`` (default): ``seen`` where a probe is fitted (the
            few-shot recipe) on CPC labels of one level with the scheme installed, else ``none``
            (benchmarks/accuracy.md, item 1: the encoder).
        wise_alpha: after fine-tuning, interpolate the weights between the starting point
            (pretrained encoder + probe head) and the fine-tuned ones, ``(1 - a) * start + a *
            fine-tuned`` (WiSE-FT, Wortsman et al., CVPR 2022); default 0.5, null or 1: off. Pretrained
            models only (benchmarks/training.md).
        lr: peak learning rate of the encoder; head_lr: of the head (null: same as lr).
        epochs, batch_size, grad_accum, warmup_ratio, weight_decay: the usual; AdamW with betas
            (0.9, 0.98), eps 1e-6, linear schedule with warm-up.
        max_steps: stop after this many optimizer steps (null: epochs decide).
        eval_steps: evaluate (and checkpoint) every N steps (null: every epoch).
        patience: early stopping after this many evaluations without a better f1@1 (0: off).
        group_by_length: batch documents of similar length together.
        precision: ``auto`` (bf16 on a GPU that has it, else fp32), ``bf16`` or ``fp32``.
        threshold_min_support: validation positives a label needs for its own threshold.
        valid_fraction: share of the training data held out for validation when no eval data.
        tensorboard: also log to TensorBoard (needs the tensorboard package).
        recipe: ``auto`` (default): the few-shot settings (LP-FT probe start, WiSE-FT, class-balanced
            head re-fit, lr 1e-4, batch 16, 3 epochs) for a pretrained model up to
            ``few_shot_max_docs`` training documents, the ``reference`` recipe above and for every
            random-init ``arch`` encoder (its probes would fit noise); ``reference``: USPTO-3M's reference run
            (BCE, lr 8e-5, batch 32, 2 epochs, bf16 on a GPU, no probe start / WiSE-FT / re-fit;
            the head's bias starts at the label priors); ``few-shot``: always the few-shot
            settings; ``probe``: no fine-tuning (linear probing): the pretrained encoder is saved as
            it is, with the head re-fit's probe (``refit_C``, ``refit_class_weight``, the label
            documents of ``label_docs``) on its frozen embeddings, calibrated and thresholded on the
            validation split, then (``refit_on: all``) re-fitted on all the training data. ``--model
            probe:ENCODER`` (or the ensemble member ``probe:ENCODER``) is ``--model ENCODER`` with this
            recipe (benchmarks/accuracy.md, item 2). The recipe replaces only fields left at their
            defaults (benchmarks/scale.md).
        few_shot_max_docs: the size (training documents) up to which ``auto`` uses the few-shot
            settings (default 20,000).
        keep_checkpoints: keep ``checkpoints/`` in the model folder after training.
        attn_implementation: ``sdpa`` (default), ``eager`` (with precision fp32: pins fp32 eager
            attention) or a flash-attention implementation.
        gradient_checkpointing: recompute each encoder layer's activations in the backward pass
            instead of keeping them (the same loss and gradients; a step keeps one layer's
            activations, not all: on a CPU, where attention dropout keeps every layer's attention
            matrices, MiniLM's longest batch of 16 abstracts peaked at 1.9 GB instead of 4.0 GB and
            took half as long again, benchmarks/tour.md). null (default): on when training
            on a CPU, off on a GPU; true / false: always / never.
        attn_check: before training, compare the encoder's attention as used (implementation and
            bf16) with fp32 eager attention on one batch and warn when the relative difference of
            the hidden states exceeds ``attn_check_tol`` (the Flash-Attention-2 + bf16 collapse).
    """

    arch: str | None = None
    tokenizer: str | None = None
    pooling: str = "mean"
    views: str = "auto"
    max_length: int = 512
    dropout: float = 0.1
    loss: str = "bce"
    class_weight: str = "balanced"
    focal_gamma: float = 2.0
    focal_alpha: float | None = None
    hierarchy_weight: float = 1.0
    head_init: str = "probe"
    probe_C: float = 10.0
    probe_class_weight: str | None = None
    refit_head: bool = True
    refit_C: float = 1.0
    refit_class_weight: str | None = "balanced"
    refit_on: str = "all"
    probe_max_docs: int | None = 20_000
    label_docs: str = "auto"
    label_docs_weight: float = 0.1
    wise_alpha: float | None = 0.5
    lr: float = 1e-4
    head_lr: float | None = 1e-3
    epochs: float = 3.0
    batch_size: int = 16
    eval_batch_size: int = 64
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_steps: int | None = None
    eval_steps: int | None = None
    patience: int = 3
    group_by_length: bool = True
    precision: str = "auto"
    threshold_min_support: int = 50
    valid_fraction: float = 0.1
    tensorboard: bool = False
    recipe: str = "auto"
    few_shot_max_docs: int = 20_000
    keep_checkpoints: bool = False
    save_total_limit: int = 2
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool | None = None
    attn_check: bool = True
    attn_check_tol: float = 0.05

    def __post_init__(self) -> None:
        choices = {"pooling": ("cls", "mean"), "loss": ("bce", "weighted", "focal", "hierarchical"),
                   "class_weight": ("balanced", "inv_sqrt"), "head_init": ("probe", "prior", "random"),
                   "probe_class_weight": (None, "balanced"), "refit_class_weight": (None, "balanced"),
                   "refit_on": ("train", "all"), "recipe": ("auto", "reference", "few-shot", "probe"),
                   "precision": ("auto", "bf16", "fp32"), "label_docs": ("auto", "none", "seen"),
                   "views": ("auto", "one", "first_line")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                names = ", ".join("null" if a is None else a for a in allowed)
                raise ConfigError(f"transformer.{name} must be one of {names}, not '{getattr(self, name)}'")
        if not 8 <= self.max_length <= 8192:
            raise ConfigError(f"transformer.max_length must be in 8..8192, not {self.max_length}")
        for name in ("lr", "epochs", "batch_size", "eval_batch_size", "grad_accum", "probe_C", "refit_C",
                     "label_docs_weight"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"transformer.{name} must be > 0, not {getattr(self, name)}")
        if self.head_lr is not None and self.head_lr <= 0:
            raise ConfigError(f"transformer.head_lr must be > 0, not {self.head_lr}")
        if not 0 <= self.warmup_ratio < 1 or not 0 <= self.dropout < 1:
            raise ConfigError("transformer.warmup_ratio and transformer.dropout must be in [0, 1)")
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"transformer.valid_fraction must be in (0, 1), not {self.valid_fraction}")
        if self.focal_gamma < 0 or self.hierarchy_weight < 0 or self.weight_decay < 0 or self.patience < 0:
            raise ConfigError("transformer.focal_gamma, hierarchy_weight, weight_decay and patience must be >= 0")
        if self.wise_alpha is not None and not 0 < self.wise_alpha <= 1:
            raise ConfigError(f"transformer.wise_alpha must be in (0, 1] or null, not {self.wise_alpha}")
        if self.focal_alpha is not None and not 0 < self.focal_alpha < 1:
            raise ConfigError(f"transformer.focal_alpha must be in (0, 1) or null, not {self.focal_alpha}")
        for name in ("max_steps", "eval_steps", "probe_max_docs"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"transformer.{name} must be >= 1 or null")


@dataclass
class CalibrationConfig:
    """Calibrated probabilities (:mod:`patentcpc.calibration`), fitted at training time on
    validation scores: ``--eval-data``, else out-of-fold scores of ``cv_folds`` folds (linear
    models up to ``cv_max_docs`` training documents; above, ``holdout_docs`` documents (at most a
    tenth) are held out of the fit and calibrate it, so large runs fit once) or the validation split
    (transformers). ``method``: platt, platt-gap (Platt on the
    score and its lead over the best other label), temperature, isotonic or none; ``scope``:
    shared or per_label; ``fit_on``: top (the ``top_k`` best codes of every document) or all
    label/document pairs. The out-of-fold folds are stratified like evaluation splits;
    ``known_only``: fit only on documents with at least one gold label the scoring model knew.
    Defaults measured in benchmarks/calibration.md."""

    method: str = "platt-gap"
    scope: str = "shared"
    fit_on: str = "top"
    top_k: int = 5
    cv_folds: int = 5
    min_support: int = 10
    cv_max_docs: int = 20_000
    holdout_docs: int = 10_000
    known_only: bool = True

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ConfigError(f"calibration.method must be one of {', '.join(CALIBRATION_METHODS)}, "
                              f"not '{self.method}'")
        if self.scope not in CALIBRATION_SCOPES:
            raise ConfigError(f"calibration.scope must be one of {', '.join(CALIBRATION_SCOPES)}, not '{self.scope}'")
        if self.fit_on not in ("top", "all"):
            raise ConfigError(f"calibration.fit_on must be 'top' or 'all', not '{self.fit_on}'")
        if self.cv_max_docs < 0:
            raise ConfigError(f"calibration.cv_max_docs must be >= 0, not {self.cv_max_docs}")
        if self.top_k < 1 or self.cv_folds < 2 or self.min_support < 1 or self.holdout_docs < 1:
            raise ConfigError("calibration.top_k, min_support and holdout_docs must be >= 1, cv_folds >= 2")


@dataclass
class ExplainConfig:
    """``index``: save a BM25 index of the training texts (ids + snippets) with the model, for
    ``predict --explain``; ``snippet_chars``: characters of each stored text."""

    index: bool = False
    snippet_chars: int = 300

    def __post_init__(self) -> None:
        if self.snippet_chars < 20:
            raise ConfigError("explain.snippet_chars must be >= 20")


@dataclass
class EnsembleConfig:
    """``--model ensemble`` (benchmarks/ensemble.md).

    Args:
        members: what ``--model`` accepts, e.g. ``tfidf``, an encoder folder (fine-tuned) or
            ``probe:`` and an encoder folder (frozen, with a probe head); at least two.
        folds: cross-fitting: each member is trained ``folds`` times, each time without one fold,
            and the weights, calibrator and thresholds are tuned on its predictions for the
            documents left out (all of the data, each predicted by a model that did not see it);
            then the members are trained once more on all the data. 0 or 1: one held-out part
            (``valid_fraction``) instead, the members re-fitted on all the data afterwards when
            ``refit``. With ``--eval-data``, that file is the held-out part and the members are
            trained once, on all of ``--data``.
        crossfit_max_docs: above this many documents a held-out part is used even when ``folds``
            asks for cross-fitting (each fold is a full training run).
        bagging: with cross-fitting, keep each member's fold models: the saved member is then the
            mean of its fold models' and its all-data model's probabilities (a *bag*, itself an
            equal-weight ensemble folder), which costs ``folds + 1`` times the member's inference
            time and disk space. Off by default: over four held-out splits it lowered the
            ensemble's F1@1 (0.518 against 0.522) and its calibration (benchmarks/ensemble.md).
        neighbours: add each encoder member's neighbour vote (the codes of the ``neighbours_k``
            most similar training documents in its embedding space, softmax-weighted with
            ``neighbours_temperature`` over cosine similarity) as one more weighted input; the
            training documents' embeddings are stored with the ensemble (a seeded subset of at
            most ``neighbours_max_docs``). Off by default: it helped on cross-fitted predictions
            but lowered F1@1 on held-out splits (benchmarks/ensemble.md).
        weight_step: grid step of the weights (coarser when the grid would be too large).
        fusion: how the inputs are combined: ``weights`` (their weighted mean, the weights tuned
            on the grid) or ``stack`` (a logistic regression on each input's probability, rank and
            gap to the best other code, and the code's training count, fitted on the same
            cross-fitted or held-out inputs, at most 50,000 documents;
            :mod:`patentcpc.kinds.ensemble.stacking`; its calibrator is fitted on its own
            cross-fitted output). Default ``stack``: over 5 held-out splits it beat the weighted
            mean of TF-IDF + MiniLM (F1@1 0.500 against 0.493; ECE@1 0.051 against 0.048;
            benchmarks/ensemble.md, session 28) and of TF-IDF + the frozen-MiniLM probe
            (``--members tfidf,probe:MINILM``, session 29's documented ensemble: 0.507 against 0.503;
            session 29). On new-patent-like (random) splits the weighted mean of TF-IDF + the probe
            did better (F1@1 0.475 against 0.466, ECE@1 0.040 against 0.068; session 30), so the
            documented ensemble sets ``fusion: weights``. A weighted mean needs members that give
            probabilities; an uncalibrated member (the cold-start ``scheme`` model's margins) is
            read by a stacker as features.
        stack_top_k: the stacker is fitted on each document's candidates, the union of every
            input's ``stack_top_k`` best codes.
        stack_c: inverse L2 strength of the stacker's logistic regression (standardised features).
    """

    members: list[str] = field(default_factory=list)
    folds: int = 5
    crossfit_max_docs: int = 20_000
    bagging: bool = False
    valid_fraction: float = 0.2
    refit: bool = True
    neighbours: bool = False
    neighbours_k: int = 20
    neighbours_temperature: float = 0.05
    neighbours_max_docs: int = 100_000
    weight_step: float = 0.05
    fusion: str = "stack"
    stack_top_k: int = 20
    stack_c: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.valid_fraction < 1:
            raise ConfigError(f"ensemble.valid_fraction must be in (0, 1), not {self.valid_fraction}")
        if not 0 < self.weight_step <= 0.5:
            raise ConfigError(f"ensemble.weight_step must be in (0, 0.5], not {self.weight_step}")
        if not 0 <= self.folds <= 20:
            raise ConfigError(f"ensemble.folds must be 0-20, not {self.folds}")
        for name in ("crossfit_max_docs", "neighbours_k", "neighbours_max_docs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ensemble.{name} must be at least 1, not {getattr(self, name)}")
        if not self.neighbours_temperature > 0:
            raise ConfigError(f"ensemble.neighbours_temperature must be > 0, not {self.neighbours_temperature}")
        if self.fusion not in ("weights", "stack"):
            raise ConfigError(f"ensemble.fusion must be weights or stack, not '{self.fusion}'")
        if self.stack_top_k < 1:
            raise ConfigError(f"ensemble.stack_top_k must be at least 1, not {self.stack_top_k}")
        if not (isinstance(self.stack_c, int | float) and 0 < self.stack_c < float("inf")):
            raise ConfigError(f"ensemble.stack_c must be a positive number, not {self.stack_c}")
        if self.bagging and self.neighbours:
            raise ConfigError("ensemble.bagging and ensemble.neighbours cannot be combined (a bag has no embeddings)")


# ----------------------------------------------------------------------------- LLM classifiers and the router


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
            :data:`patentcpc.kinds.causal_lm.model.LORA_TARGETS`; ``all-linear`` is accepted).
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


PROBE_PREFIX = "probe:"  # --model probe:ENCODER: that encoder, frozen, with a probe head (recipe probe)


@dataclass
class TrainConfig:
    """Everything ``patentcpc train`` needs. ``model`` is ``tfidf``, ``scheme`` (cold start from
    the IPC scheme) or a transformer (hub id or local folder, default ModernBERT-base);
    ``probe:ENCODER`` is the transformer ``ENCODER`` with ``transformer.recipe: probe`` (a head on
    its frozen embeddings): the prefix is taken off ``model`` and saved as the recipe."""

    model: str = "answerdotai/ModernBERT-base"
    data: DataConfig = field(default_factory=DataConfig)
    linear: LinearConfig = field(default_factory=LinearConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    router: RouterConfig = field(default_factory=RouterConfig)
    # the settings of a model kind from another package (the ``patentcpc.kinds`` entry points), read
    # and validated by that kind: ``--set options.temperature=0.1`` or ``options:`` in the YAML file
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 42
    # before saving, the model is checked on the run's validation data (patentcpc.training.guard):
    # ``error`` refuses a model worse than reported, with flat scores or a decreasing calibrator; ``warn`` saves it
    guard: str = "error"

    def __post_init__(self) -> None:
        if isinstance(self.model, str) and self.model.startswith(PROBE_PREFIX):
            self.model = self.model[len(PROBE_PREFIX):].strip()
            if not self.model:
                raise ConfigError(f"model '{PROBE_PREFIX}' needs an encoder after it (a folder or a hub id)")
            if self.transformer.recipe not in ("auto", "probe"):
                logging.getLogger(__name__).warning(
                    "model probe:%s: transformer.recipe %s is replaced by probe", self.model, self.transformer.recipe)
            self.transformer = dataclasses.replace(self.transformer, recipe="probe")
        if not self.model:
            raise ConfigError("model must not be empty")
        check_seed(self.seed)
        if self.guard not in ("error", "warn"):
            raise ConfigError(f"guard must be 'error' or 'warn', not '{self.guard}'")


# --------------------------------------------------------------------------- generic helpers


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _split_commas(value: Any) -> Any:
    """``title,abstract`` (from ``--set`` or a CLI flag) is the list ``[title, abstract]``."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _schema_type(tp: Any) -> Any:
    """The pydantic type that validates a config field annotated ``tp``: ints bounded to 64 bits,
    floats finite, lists also from a comma-separated string."""
    from typing import Annotated

    from pydantic import BeforeValidator, Field

    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return typing.Union[tuple(_schema_type(a) for a in typing.get_args(tp))]  # noqa: UP007
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return Annotated[list[_schema_type(item)], BeforeValidator(_split_commas)]
    if tp is int:
        return Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
    if tp is float:
        return Annotated[float, BeforeValidator(_yaml_float), Field(allow_inf_nan=False)]
    return tp


_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


def _yaml_float(value: Any) -> Any:
    """YAML 1.1 reads ``5e-3`` (no dot) as a string: take it as the number it spells."""
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
        return float(value)
    return value


@functools.cache
def _field_adapter(cls: type, name: str):
    from pydantic import ConfigDict, TypeAdapter

    tp = typing.get_type_hints(cls)[name]
    return TypeAdapter(_schema_type(tp), config=ConfigDict(strict=True, allow_inf_nan=False))


def _allowed(tp: Any) -> str:
    """What a field takes, in words, for error messages."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_allowed(a) for a in typing.get_args(tp))
    if origin is list:
        return "a list"
    if origin is dict:
        return "a mapping"
    return {int: f"an integer in {INT64_MIN}..{INT64_MAX}", float: "a finite number", bool: "true or false",
            str: "a string", type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _validate_field(cls: type, name: str, value: Any, where: str) -> Any:
    from pydantic import ValidationError

    tp = typing.get_type_hints(cls)[name]
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping of options (known: "
                              f"{', '.join(f.name for f in dataclasses.fields(tp))}), not {value!r}")
        return from_dict(tp, value, where)
    if value is None and type(None) not in typing.get_args(tp):
        raise ConfigError(f"{where} must not be empty (it takes {_allowed(tp)})")
    try:
        return _field_adapter(cls, name).validate_python(value)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(f"{where} must be {_allowed(tp)} ({err['msg'].lower()}), not {shown}") from None


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from a nested mapping, every value checked against its field's type
    by pydantic (64-bit ints, finite floats, no silent type changes); unknown keys are an error."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, not {data!r}")
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        bad = ", ".join(sorted(map(str, unknown)))
        raise ConfigError(f"{where}: unknown option(s) {bad} (known: {', '.join(sorted(names))})")
    kwargs = {k: _validate_field(cls, k, v, f"{where}.{k}" if where != "config" else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def to_dict(obj: Any, sections: Sequence[str] | None = None) -> dict:
    """The dataclass ``obj`` as plain data. ``sections``: keep only these of its dataclass-valued
    fields (a model saves the run-wide settings and the sections its kind reads, ``Kind.config``)."""
    data = dataclasses.asdict(obj)
    if sections is None:
        return data
    nested = {f.name for f in dataclasses.fields(obj) if dataclasses.is_dataclass(getattr(obj, f.name))}
    if "options" in data and "options" not in sections and not data["options"]:
        nested.add("options")  # a third-party kind's settings: saved only by a kind that reads them
    return {k: v for k, v in data.items() if k not in nested or k in sections}


MAX_CONFIG_BYTES = 1_000_000


def load_yaml(path: str | os.PathLike) -> dict:
    """The mapping of a YAML config file; a :class:`ConfigError` naming the file for anything else
    (missing, a folder, unreadable, over 1 MB, not UTF-8, not YAML, nested too deeply)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: config file not found")
    if p.is_dir():
        raise ConfigError(f"{p}: is a folder, not a YAML config file")
    if not p.is_file():  # a FIFO or device would block or never end
        raise ConfigError(f"{p}: not a regular file (a YAML config file is)")
    try:
        with open(p, "rb") as fh:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror or exc})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_CONFIG_BYTES:,} bytes: not a config file")
    try:
        data = yaml.safe_load(raw.decode("utf-8-sig")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: bytes that are not UTF-8 at byte offset {exc.start}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{p}: not valid YAML (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping")
    return data


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply ``a.b=value`` strings (value parsed as YAML) to a nested mapping (a copy)."""
    import copy

    out = copy.deepcopy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value, not '{item}'")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        except RecursionError:
            raise ConfigError(f"--set {key.strip()}: the value is nested too deeply") from None
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
        node[parts[-1]] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    """Recursive dict merge (``extra`` wins); None values in ``extra`` are ignored."""
    out = dict(base)
    for k, v in extra.items():
        if v is None:
            continue
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve(cls: type[T], config_file: str | None = None, cli: dict | None = None,
            overrides: list[str] | None = None) -> T:
    """Defaults <- YAML file <- explicit CLI flags <- ``--set`` overrides."""
    data: dict = load_yaml(config_file) if config_file else {}
    data = merge(data, cli or {})
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)
